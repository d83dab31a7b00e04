"""Prompt → camera-motion plan for the local engine.

A plan is a start and an end :class:`Camera` plus an optional fade-in from black. The camera looks at a
prepared source image that has the output's aspect ratio; its parameters are relative to that source:

* ``zoom`` — 1.0 shows the whole source, 1.2 shows the central 1/1.2 of it in each dimension;
* ``cx``, ``cy`` — offset of the view centre from the source centre, as a fraction of the source's
  width and height (``+x`` right, ``+y`` down);
* ``angle`` — roll of the view, in degrees.

Every plan keeps the (rotated) view inside the source for any aspect ratio between 9:21 and 21:9, so no
border is ever visible; ``tests/test_engine.py`` checks this.

Motion words (case-insensitive, first one in the prompt wins): "zoom in"/"push in"/"dolly in",
"zoom out"/"pull out"/"pull back"/"dolly out", "pan left", "pan right", "pan up"/"tilt up",
"pan down"/"tilt down", "orbit"/"parallax"/"arc". "fade" adds a fade-in from black to any move. With no
move word the plan is a gentle zoom-in (Ken Burns), whose drift direction varies with ``seed``.
"""

from __future__ import annotations

import math
import random
import re
from dataclasses import dataclass

#: The largest zoom any plan uses; the renderer prepares its source this much larger than the output.
MAX_ZOOM = 1.2

#: Longest fade-in, in seconds; shorter clips fade over :data:`FADE_FRACTION` of their length.
FADE_SECONDS = 1.0
FADE_FRACTION = 0.3

_VERB = r"(?:s|es|ed|ing)?[\s_-]+"
_MOVE_PATTERNS: tuple[tuple[str, str], ...] = (
    ("zoom-in", rf"\b(?:zoom|push|dolly){_VERB}in\b"),
    ("zoom-out", rf"\b(?:(?:zoom|pull|dolly){_VERB}out|pull{_VERB}back)\b"),
    ("pan-left", rf"\bpan(?:n)?{_VERB}left\b"),
    ("pan-right", rf"\bpan(?:n)?{_VERB}right\b"),
    ("pan-up", rf"\b(?:pan(?:n)?|tilt){_VERB}up\b"),
    ("pan-down", rf"\b(?:pan(?:n)?|tilt){_VERB}down\b"),
    ("orbit", r"\b(?:orbit(?:s|ed|ing)?|parallax|arc(?:s|ed|ing)?)\b"),
)
_FADE_PATTERN = re.compile(r"\bfad(?:e|es|ed|ing)\b", re.IGNORECASE)
_COMPILED = tuple((name, re.compile(pattern, re.IGNORECASE)) for name, pattern in _MOVE_PATTERNS)

#: Every move a plan can have, in the order the prompt patterns are tried on ties.
MOVES: tuple[str, ...] = (*(name for name, _ in _MOVE_PATTERNS), "ken-burns")

_PAN_ZOOM = 1.15
_PAN_REACH = 0.9 * (1 - 1 / _PAN_ZOOM) / 2  # 90% of the margin the pan zoom leaves on each side


@dataclass(frozen=True)
class Camera:
    """Where the virtual camera looks at one instant (see the module docstring for the units)."""

    zoom: float = 1.0
    cx: float = 0.0
    cy: float = 0.0
    angle: float = 0.0


@dataclass(frozen=True)
class MotionPlan:
    """A camera move from ``start`` to ``end``, eased over the whole clip, optionally fading in."""

    move: str
    start: Camera
    end: Camera
    fade: bool = False

    @property
    def name(self) -> str:
        """Human-readable plan name, e.g. ``"zoom-in"`` or ``"pan-left+fade-in"``."""
        return f"{self.move}+fade-in" if self.fade else self.move

    def camera_at(self, t: float) -> Camera:
        """The camera at clip progress ``t`` in [0, 1] (eased; zoom is interpolated geometrically)."""
        e = ease(t)
        a, b = self.start, self.end
        return Camera(
            zoom=a.zoom * (b.zoom / a.zoom) ** e,
            cx=a.cx + (b.cx - a.cx) * e,
            cy=a.cy + (b.cy - a.cy) * e,
            angle=a.angle + (b.angle - a.angle) * e,
        )

    def brightness_at(self, seconds: float, duration_s: float) -> float:
        """Brightness multiplier in [0, 1] at ``seconds`` into a clip of ``duration_s`` seconds."""
        if not self.fade:
            return 1.0
        span = min(FADE_SECONDS, FADE_FRACTION * duration_s)
        return ease(seconds / span) if span > 0 else 1.0


def ease(t: float) -> float:
    """Smoothstep ease-in-out: 0 → 0, 1 → 1, zero velocity at both ends; ``t`` is clamped to [0, 1]."""
    t = min(1.0, max(0.0, t))
    return t * t * (3.0 - 2.0 * t)


def _move_camera(move: str, seed: int) -> tuple[Camera, Camera]:
    """Start and end cameras for one named move."""
    if move == "zoom-in":
        return Camera(1.0), Camera(MAX_ZOOM)
    if move == "zoom-out":
        return Camera(MAX_ZOOM), Camera(1.0)
    if move in ("pan-left", "pan-right"):
        sign = -1.0 if move == "pan-left" else 1.0  # panning left moves the view centre left
        return Camera(_PAN_ZOOM, cx=-sign * _PAN_REACH), Camera(_PAN_ZOOM, cx=sign * _PAN_REACH)
    if move in ("pan-up", "pan-down"):
        sign = -1.0 if move == "pan-up" else 1.0  # image y grows downwards
        return Camera(_PAN_ZOOM, cy=-sign * _PAN_REACH), Camera(_PAN_ZOOM, cy=sign * _PAN_REACH)
    if move == "orbit":
        return Camera(1.14, cx=-0.03, cy=0.005, angle=-1.0), Camera(MAX_ZOOM, cx=0.03, cy=-0.005, angle=1.0)
    if move == "ken-burns":
        # Zoom 1.0 → 1.15 toward a point up to 0.05 off centre: the view's margin grows faster than
        # the drift, so the view never leaves the source. Seed 0 zooms straight into the centre.
        if seed == 0:
            return Camera(1.0), Camera(1.15)
        heading = random.Random(seed).uniform(0.0, 2.0 * math.pi)
        end = Camera(1.15, cx=0.05 * math.cos(heading), cy=0.05 * math.sin(heading))
        return Camera(1.0), end
    raise ValueError(f"unknown move {move!r}; expected one of {', '.join(MOVES)}")


def plan_for(move: str, *, fade: bool = False, seed: int = 0) -> MotionPlan:
    """The plan for a named move (one of :data:`MOVES`)."""
    start, end = _move_camera(move, seed)
    return MotionPlan(move=move, start=start, end=end, fade=fade)


def detect_move(prompt: str) -> str | None:
    """The first move word in ``prompt`` (by position), or None when it names no camera move."""
    best: tuple[int, int, str] | None = None
    for order, (name, pattern) in enumerate(_COMPILED):
        match = pattern.search(prompt)
        if match and (best is None or (match.start(), order) < best[:2]):
            best = (match.start(), order, name)
    return best[2] if best else None


def plan_motion(prompt: str, seed: int = 0) -> MotionPlan:
    """Choose the camera plan for ``prompt``; deterministic for a given prompt and seed."""
    move = detect_move(prompt) or "ken-burns"
    return plan_for(move, fade=bool(_FADE_PATTERN.search(prompt)), seed=seed)


def view_corners(camera: Camera, aspect: float) -> list[tuple[float, float]]:
    """Corners of the camera's view in source coordinates normalised to [0, 1] (``aspect`` = w / h).

    All four lie inside the unit square exactly when the output shows no pixel from outside the source.
    """
    half_w, half_h = 0.5 / camera.zoom, 0.5 / camera.zoom  # in units of source width / height
    rad = math.radians(camera.angle)
    cos, sin = math.cos(rad), math.sin(rad)
    corners = []
    for sx, sy in ((-1, -1), (1, -1), (1, 1), (-1, 1)):
        # Rotate in pixel-proportional units (x scaled by aspect), then normalise back.
        x, y = sx * half_w * aspect, sy * half_h
        rx, ry = x * cos + y * sin, -x * sin + y * cos
        corners.append((0.5 + camera.cx + rx / aspect, 0.5 + camera.cy + ry))
    return corners
