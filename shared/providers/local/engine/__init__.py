"""The local engine: an honest camera-motion renderer for one still image (no generative model).

It turns an image and a prompt into a real H.264 MP4 and a JPEG thumbnail by moving a virtual camera
over the picture (zoom, pan, tilt, a gentle orbit, optional fade-in), chosen from motion words in the
prompt. It stands in for hosted video models when there are no API keys and no network.
"""

from shared.providers.local.engine.motion import MotionPlan, plan_motion
from shared.providers.local.engine.render import ImageDecodeError, RenderResult, RenderStopped, render_video

__all__ = ["ImageDecodeError", "MotionPlan", "RenderResult", "RenderStopped", "plan_motion", "render_video"]
