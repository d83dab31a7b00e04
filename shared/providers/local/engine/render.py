"""Render one still image and a prompt into an H.264 MP4 and a JPEG thumbnail, with no model involved.

The image is cover-cropped to the output aspect and scaled once to :data:`~shared.providers.local.engine.motion.MAX_ZOOM`
times the output size. Each frame is then a single bicubic ``cv2.warpAffine`` of that source with a float 2x3
matrix straight to the output size, so the camera moves with sub-pixel precision and no integer-pixel
jitter. Frames are converted to BT.601 limited-range YUV 4:2:0 and encoded with libx264 through PyAV.
"""

from __future__ import annotations

import io
import math
import os
import uuid
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import cast

import av
import cv2
import numpy as np
import numpy.typing as npt
from PIL import Image

from shared.providers.local.engine.motion import MAX_ZOOM, Camera, MotionPlan, plan_motion

Frame = npt.NDArray[np.uint8]

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
THUMB_QUALITY = 85

# libx264 settings; colour tags match cv2's BGR→I420 conversion (BT.601 matrix, limited range).
# mb-tree is off: with it, identical runs at widths that are not a multiple of 64 (854, 1080, ...)
# occasionally produced different bitstreams; without it the output is bit-identical run to run.
_X264_OPTIONS = {"preset": "veryfast", "crf": "20", "x264-params": "mbtree=0"}
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


def prepare_source(image: Frame, width: int, height: int, zoom: float = MAX_ZOOM) -> Frame:
    """Centre-crop ``image`` to ``width``/``height``'s aspect and scale it to ``zoom`` times that size."""
    ih, iw = image.shape[:2]
    aspect = width / height
    if iw / ih > aspect:
        cw = max(1, min(iw, round(ih * aspect)))
        x0 = (iw - cw) // 2
        image = image[:, x0 : x0 + cw]
    else:
        ch = max(1, min(ih, round(iw / aspect)))
        y0 = (ih - ch) // 2
        image = image[y0 : y0 + ch]
    sw, sh = round(width * zoom), round(height * zoom)
    shrinking = image.shape[1] > sw
    interpolation = cv2.INTER_AREA if shrinking else cv2.INTER_CUBIC
    return cast(Frame, cv2.resize(image, (sw, sh), interpolation=interpolation))


def camera_matrix(
    camera: Camera, source_size: tuple[int, int], out_size: tuple[int, int]
) -> npt.NDArray[np.float64]:
    """The 2x3 matrix mapping output pixel (x, y) to the source point the camera sees there.

    Use it with ``cv2.WARP_INVERSE_MAP``. Pixel centres sit at integer coordinates (OpenCV's convention).
    """
    sw, sh = source_size
    w, h = out_size
    aspect = w / h
    rad = math.radians(camera.angle)
    cos, sin = math.cos(rad), math.sin(rad)
    to_unit = np.array([[1 / w, 0, 0.5 / w - 0.5], [0, 1 / h, 0.5 / h - 0.5], [0, 0, 1]])  # centred [-.5, .5]
    scale = np.diag([aspect / camera.zoom, 1 / camera.zoom, 1.0])  # view in source-height units
    rotate = np.array([[cos, sin, 0], [-sin, cos, 0], [0, 0, 1]])
    to_source = np.array([[1 / aspect, 0, 0.5 + camera.cx], [0, 1, 0.5 + camera.cy], [0, 0, 1]])
    to_pixels = np.array([[sw, 0, -0.5], [0, sh, -0.5], [0, 0, 1]])
    matrix: npt.NDArray[np.float64] = (to_pixels @ to_source @ rotate @ scale @ to_unit)[:2]
    return matrix


def render_frame(
    source: Frame, plan: MotionPlan, index: int, frames: int, fps: int, out_size: tuple[int, int]
) -> Frame:
    """Frame ``index`` of ``frames`` as a BGR array of ``out_size`` (width, height)."""
    t = index / (frames - 1) if frames > 1 else 0.0
    matrix = camera_matrix(plan.camera_at(t), (source.shape[1], source.shape[0]), out_size)
    flags = cv2.INTER_CUBIC | cv2.WARP_INVERSE_MAP
    frame = cast(Frame, cv2.warpAffine(source, matrix, out_size, flags=flags, borderMode=cv2.BORDER_REFLECT))
    gain = plan.brightness_at(index / fps, frames / fps)
    if gain < 1.0:
        frame = cast(Frame, cv2.convertScaleAbs(frame, alpha=gain))
    return frame


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
    source = prepare_source(decoded, width, height)
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


def _encode(
    source: Frame,
    plan: MotionPlan,
    total: int,
    fps: int,
    size: tuple[int, int],
    path: Path,
    progress: Callable[[float], None] | None,
    should_stop: Callable[[], bool] | None = None,
) -> Frame:
    """Render and encode ``total`` frames to ``path``; returns the middle frame (BGR) for the thumbnail."""
    middle = total // 2
    thumb: Frame | None = None
    with av.open(str(path), mode="w", format="mp4", options={"movflags": "+faststart"}) as container:
        stream = container.add_stream("libx264", rate=fps, options=dict(_X264_OPTIONS))
        stream.width, stream.height = size
        stream.pix_fmt = "yuv420p"
        stream.time_base = Fraction(1, fps)
        codec = stream.codec_context
        codec.time_base = Fraction(1, fps)
        codec.thread_type = "FRAME"
        codec.colorspace = _AVCOL_SPC_SMPTE170M
        codec.color_range = _AVCOL_RANGE_MPEG
        for index in range(total):
            if should_stop is not None and should_stop():
                raise RenderStopped(index, total)
            bgr = render_frame(source, plan, index, total, fps, size)
            if index == middle:
                thumb = bgr
            yuv = cast(Frame, cv2.cvtColor(bgr, cv2.COLOR_BGR2YUV_I420))
            frame = av.VideoFrame.from_ndarray(yuv, format="yuv420p")
            frame.pts = index
            frame.time_base = Fraction(1, fps)
            container.mux(stream.encode(frame))
            if progress is not None and index % PROGRESS_EVERY == 0:
                progress(index / total)
        container.mux(stream.encode(None))
    assert thumb is not None
    return thumb
