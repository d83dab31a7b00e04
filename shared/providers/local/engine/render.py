"""Render one still image and a prompt into an H.264 MP4 and a JPEG thumbnail, with no model involved.

Frames are drawn in YUV 4:2:0 by :mod:`~shared.providers.local.engine.frames` (sub-pixel camera, one warp
per plane) and encoded with libx264 through PyAV. A worker thread draws the next frames while the calling
thread encodes the current one; OpenCV and x264 both work outside the GIL, so the two overlap.
"""

from __future__ import annotations

import io
import os
import uuid
import warnings
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import cast

import av
import cv2
import numpy as np
from PIL import Image

from shared.providers.local.engine.frames import (
    Frame,
    YuvSource,
    camera_matrix,
    draw_frame,
    new_i420,
    planes,
    prepare_source,
    to_bgr,
    to_yuv,
)
from shared.providers.local.engine.motion import MotionPlan, plan_motion

__all__ = [
    "ImageDecodeError",
    "RenderResult",
    "RenderStopped",
    "camera_matrix",
    "decode_image",
    "output_size",
    "prepare_source",
    "render_frame",
    "render_video",
]

#: Output short side for each named resolution.
RESOLUTIONS: dict[str, int] = {"480p": 480, "720p": 720, "1080p": 1080}
#: Width / height for each named aspect ratio.
ASPECT_RATIOS: dict[str, float] = {"16:9": 16 / 9, "9:16": 9 / 16, "1:1": 1.0}
#: Images larger than this many pixels are refused before they are decoded.
MAX_PIXELS = 50_000_000
#: "auto" aspect follows the image but stays within 9:21 .. 21:9.
AUTO_ASPECT_RANGE = (9 / 21, 21 / 9)
MIN_DURATION_S, MAX_DURATION_S = 1, 10
MIN_FPS, MAX_FPS = 1, 60
PROGRESS_EVERY = 8  # frames between progress callbacks
PREFETCH = 2  # frames the drawing thread may run ahead of the encoder
THUMB_QUALITY = 85

# libx264 settings; colour tags match frames.to_yuv (BT.601 matrix, limited range). x264's defaults
# otherwise, mb-tree included, as ffmpeg uses them. The frames handed to the encoder are a pure function of
# the inputs, but x264 with mb-tree does not always write the same bitstream for them: reruns decode to the
# same pictures within the encoder's own noise (about 45 dB PSNR), not to identical bytes.
_X264_OPTIONS = {"preset": "veryfast", "crf": "20"}
_AVCOL_SPC_SMPTE170M = 6
_AVCOL_RANGE_MPEG = 1


class ImageDecodeError(ValueError):
    """The bytes are not an image this engine can decode, or the image is too large."""


class RenderStopped(Exception):
    """The render was asked to stop (``should_stop``) before it finished; nothing was written."""

    def __init__(self, frame: int, frames: int) -> None:
        super().__init__(f"stopped at frame {frame} of {frames}")
        self.frame = frame
        self.frames = frames


@dataclass(frozen=True)
class RenderResult:
    """What :func:`render_video` wrote: output size, frame rate, frame count, duration and motion name."""

    width: int
    height: int
    fps: int
    frames: int
    duration_s: float
    motion: str


def _even(value: float) -> int:
    """``value`` rounded to the nearest even integer, at least 2."""
    return max(2, 2 * round(value / 2))


def output_size(
    image_w: int, image_h: int, resolution: str = "auto", aspect_ratio: str = "auto"
) -> tuple[int, int]:
    """Output ``(width, height)`` for an image of ``image_w`` x ``image_h``; both are even.

    ``resolution`` names the short side ("auto": the largest of 480/720/1080 not above the image's short
    side, at least 480); ``aspect_ratio`` is "16:9", "9:16", "1:1" or "auto" (the image's own aspect).
    """
    if resolution == "auto":
        short = max([s for s in sorted(RESOLUTIONS.values()) if s <= min(image_w, image_h)], default=480)
    elif resolution in RESOLUTIONS:
        short = RESOLUTIONS[resolution]
    else:
        raise ValueError(f"resolution must be one of auto, {', '.join(RESOLUTIONS)}; got {resolution!r}")
    if aspect_ratio == "auto":
        lo, hi = AUTO_ASPECT_RANGE
        aspect = min(hi, max(lo, image_w / image_h))
    elif aspect_ratio in ASPECT_RATIOS:
        aspect = ASPECT_RATIOS[aspect_ratio]
    else:
        raise ValueError(
            f"aspect_ratio must be one of auto, {', '.join(ASPECT_RATIOS)}; got {aspect_ratio!r}"
        )
    if aspect >= 1:
        return _even(short * aspect), short
    return short, _even(short / aspect)


def decode_image(data: bytes) -> Frame:
    """Decode JPEG/PNG/WebP bytes to a BGR array; :class:`ImageDecodeError` when that is impossible."""
    if not data:
        raise ImageDecodeError("the image is empty")
    try:  # PIL reads only the header here, so huge images are refused before any pixel is decoded
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as probe:
                width, height = probe.size
    except Image.DecompressionBombError as exc:
        raise ImageDecodeError(f"the image is larger than {MAX_PIXELS // 1_000_000} megapixels") from exc
    except Exception:  # noqa: S110 - a format PIL cannot identify may still be one cv2 decodes
        pass
    else:
        _check_pixels(width, height)
    try:
        image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    except cv2.error as exc:
        raise ImageDecodeError("the bytes are not a decodable image (JPEG, PNG or WebP)") from exc
    if image is None or image.size == 0:
        raise ImageDecodeError("the bytes are not a decodable image (JPEG, PNG or WebP)")
    _check_pixels(image.shape[1], image.shape[0])
    return cast(Frame, image)


def _check_pixels(width: int, height: int) -> None:
    """Refuse images over :data:`MAX_PIXELS`."""
    if width * height > MAX_PIXELS:
        raise ImageDecodeError(
            f"the image is {width}x{height} ({width * height / 1e6:.1f} MP); "
            f"the limit is {MAX_PIXELS // 1_000_000} megapixels"
        )


def render_frame(
    source: Frame, plan: MotionPlan, index: int, frames: int, fps: int, out_size: tuple[int, int]
) -> Frame:
    """Frame ``index`` of ``frames`` as a BGR array of ``out_size`` (width, height), from a BGR source.

    A convenience for inspection; :func:`render_video` keeps frames in YUV from source to encoder.
    """
    return to_bgr(draw_frame(to_yuv(source), plan, index, frames, fps, out_size))


def _temp_path(final: Path) -> Path:
    """A hidden, unique temporary path next to ``final``, so ``os.replace`` is atomic."""
    return final.with_name(f".{final.name}.{uuid.uuid4().hex[:12]}.tmp")


def _check_args(duration: int, fps: int) -> None:
    """Refuse durations and frame rates outside the supported ranges."""
    if isinstance(duration, bool) or not isinstance(duration, int):
        raise ValueError(f"duration must be a whole number of seconds; got {duration!r}")
    if not MIN_DURATION_S <= duration <= MAX_DURATION_S:
        raise ValueError(f"duration must be {MIN_DURATION_S}..{MAX_DURATION_S} seconds; got {duration}")
    if isinstance(fps, bool) or not isinstance(fps, int) or not MIN_FPS <= fps <= MAX_FPS:
        raise ValueError(f"fps must be a whole number {MIN_FPS}..{MAX_FPS}; got {fps!r}")


def render_video(
    image: bytes,
    prompt: str,
    *,
    resolution: str = "auto",
    aspect_ratio: str = "auto",
    duration: int = 4,
    fps: int = 24,
    out_path: Path,
    thumb_path: Path,
    progress: Callable[[float], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
    seed: int = 0,
) -> RenderResult:
    """Render ``image`` with the camera move ``prompt`` asks for to ``out_path`` (MP4) and ``thumb_path``.

    Writes exactly ``duration * fps`` frames of H.264 (yuv420p, CRF 20, faststart) and a JPEG of the middle
    frame. Both files appear atomically. ``progress`` is called with the fraction done every few frames.
    ``should_stop`` is asked before every frame; when it answers true the render stops, its partial files are
    deleted and :class:`RenderStopped` is raised.
    Raises :class:`ImageDecodeError` for undecodable or oversized images and ``ValueError`` for bad options.
    """
    _check_args(duration, fps)
    decoded = decode_image(image)
    width, height = output_size(decoded.shape[1], decoded.shape[0], resolution, aspect_ratio)
    plan = plan_motion(prompt, seed)
    source = to_yuv(prepare_source(decoded, width, height))
    del decoded
    total = duration * fps
    out_path, thumb_path = Path(out_path), Path(thumb_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    thumb_path.parent.mkdir(parents=True, exist_ok=True)
    tmp_video, tmp_thumb = _temp_path(out_path), _temp_path(thumb_path)
    try:
        thumb = _encode(source, plan, total, fps, (width, height), tmp_video, progress, should_stop)
        ok, jpeg = cv2.imencode(".jpg", thumb, [cv2.IMWRITE_JPEG_QUALITY, THUMB_QUALITY])
        if not ok:
            raise RuntimeError("could not encode the thumbnail")
        tmp_thumb.write_bytes(jpeg.tobytes())
        os.replace(tmp_thumb, thumb_path)
        os.replace(tmp_video, out_path)
    finally:
        tmp_video.unlink(missing_ok=True)
        tmp_thumb.unlink(missing_ok=True)
    if progress is not None:
        progress(1.0)
    return RenderResult(width, height, fps, total, total / fps, plan.name)


def _open_stream(container: av.container.OutputContainer, fps: int, size: tuple[int, int]) -> av.VideoStream:
    """Add the H.264 stream: yuv420p, BT.601 limited range, frame-threaded libx264."""
    stream = container.add_stream("libx264", rate=fps, options=dict(_X264_OPTIONS))
    stream.width, stream.height = size
    stream.pix_fmt = "yuv420p"
    stream.time_base = Fraction(1, fps)
    codec = stream.codec_context
    codec.time_base = Fraction(1, fps)
    codec.thread_type = "FRAME"
    codec.colorspace = _AVCOL_SPC_SMPTE170M
    codec.color_range = _AVCOL_RANGE_MPEG
    return stream


def _video_frame(i420: Frame, size: tuple[int, int], index: int, fps: int) -> av.VideoFrame:
    """Copy an I420 array into a new PyAV frame, filling each row's padding with its last pixel.

    x264 copies rows in aligned blocks and so reads a little of that padding; filling it keeps
    uninitialised memory out of the encoder.
    """
    frame = av.VideoFrame(size[0], size[1], "yuv420p")
    for plane, data in zip(frame.planes, planes(i420, size), strict=True):
        rows = np.frombuffer(memoryview(plane), np.uint8).reshape(plane.height, plane.line_size)
        rows[:, : plane.width] = data
        rows[:, plane.width :] = data[:, -1:]
    frame.pts = index
    frame.time_base = Fraction(1, fps)
    return frame


def _encode(
    source: YuvSource,
    plan: MotionPlan,
    total: int,
    fps: int,
    size: tuple[int, int],
    path: Path,
    progress: Callable[[float], None] | None,
    should_stop: Callable[[], bool] | None = None,
) -> Frame:
    """Draw and encode ``total`` frames to ``path``; returns the middle frame (BGR) for the thumbnail.

    One worker thread draws up to :data:`PREFETCH` frames ahead (into its own buffer, copied into a fresh
    PyAV frame) while this thread encodes; ``should_stop`` is still asked before every frame.
    """
    middle = total // 2
    thumb: Frame | None = None
    buffer = new_i420(size)

    def draw(index: int) -> tuple[av.VideoFrame, Frame | None]:
        i420 = draw_frame(source, plan, index, total, fps, size, out=buffer)
        return _video_frame(i420, size, index, fps), (to_bgr(i420) if index == middle else None)

    pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="engine-draw")
    cv_threads = cv2.getNumThreads()
    cv2.setNumThreads(1)  # the drawing thread is the parallelism; OpenCV's own pool only adds stalls
    try:
        pending = deque(pool.submit(draw, index) for index in range(min(PREFETCH, total)))
        with av.open(str(path), mode="w", format="mp4", options={"movflags": "+faststart"}) as container:
            stream = _open_stream(container, fps, size)
            for index in range(total):
                if should_stop is not None and should_stop():
                    raise RenderStopped(index, total)
                frame, bgr = pending.popleft().result()
                if index + PREFETCH < total:
                    pending.append(pool.submit(draw, index + PREFETCH))
                thumb = bgr if bgr is not None else thumb
                container.mux(stream.encode(frame))
                if progress is not None and index % PROGRESS_EVERY == 0:
                    progress(index / total)
            container.mux(stream.encode(None))
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
        cv2.setNumThreads(cv_threads)
    assert thumb is not None
    return thumb
