"""The local engine: an honest camera-motion renderer for one still image, and a title-card image model.

It turns an image and a prompt into a real H.264 MP4 and a JPEG thumbnail by moving a virtual camera
over the picture (zoom, pan, tilt, a gentle orbit, optional fade-in), chosen from motion words in the
prompt. ``render_card`` (``local-card``) typesets a prompt as a title card. Neither is a generative
model; they stand in for hosted models when there are no API keys and no network.
"""

from shared.providers.local.engine.card import CardResult, render_card
from shared.providers.local.engine.motion import MotionPlan, plan_motion
from shared.providers.local.engine.render import ImageDecodeError, RenderResult, RenderStopped, render_video

__all__ = [
    "CardResult",
    "ImageDecodeError",
    "MotionPlan",
    "RenderResult",
    "RenderStopped",
    "plan_motion",
    "render_card",
    "render_video",
]
