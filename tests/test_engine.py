"""The local engine: real renders decoded with PyAV, plus unit tests of the prompt → motion mapping."""

from __future__ import annotations

import io
import itertools
from pathlib import Path
from typing import Any

import av
import cv2
import numpy as np
import pytest
from PIL import Image

from shared.providers.local.engine import ImageDecodeError, RenderResult, render_video
from shared.providers.local.engine.motion import MOVES, plan_for, plan_motion, view_corners
from shared.providers.local.engine.render import output_size

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
LANDSCAPE = (EXAMPLES / "landscape.jpg").read_bytes()  # 1600x1067
SQUARE = (EXAMPLES / "square.jpg").read_bytes()  # 1200x1200


def _render(
    tmp_path: Path, prompt: str = "", image: bytes = LANDSCAPE, **kwargs: object
) -> tuple[RenderResult, Path, Path]:
    """Render into ``tmp_path`` at 480p, 1 s, 12 fps unless overridden."""
    options: dict[str, Any] = {"resolution": "480p", "aspect_ratio": "16:9", "duration": 1, "fps": 12}
    options.update(kwargs)
    out, thumb = tmp_path / "out.mp4", tmp_path / "thumb.jpg"
    result = render_video(image, prompt, out_path=out, thumb_path=thumb, **options)
    return result, out, thumb


def _frames(path: Path) -> list[np.ndarray]:
    """Every decoded frame of ``path`` as a BGR array."""
    with av.open(str(path)) as container:
        return [frame.to_ndarray(format="bgr24") for frame in container.decode(video=0)]


def _gray(frame: np.ndarray) -> np.ndarray:
    """A float32 grayscale copy for registration."""
    return cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY).astype(np.float32)


def _similarity(a: np.ndarray, b: np.ndarray) -> tuple[float, float, float, float]:
    """Scale, rotation (degrees), dx, dy of the similarity transform taking frame ``a`` to frame ``b``."""
    ga, gb = cv2.cvtColor(a, cv2.COLOR_BGR2GRAY), cv2.cvtColor(b, cv2.COLOR_BGR2GRAY)
    points = cv2.goodFeaturesToTrack(ga, maxCorners=400, qualityLevel=0.01, minDistance=8)
    moved, status, _ = cv2.calcOpticalFlowPyrLK(ga, gb, points, None, winSize=(31, 31), maxLevel=4)  # type: ignore[call-overload]
    keep = status.ravel() == 1
    matrix, _ = cv2.estimateAffinePartial2D(points[keep], moved[keep], method=cv2.RANSAC)
    scale = float(np.hypot(matrix[0, 0], matrix[1, 0]))
    angle = float(np.degrees(np.arctan2(matrix[1, 0], matrix[0, 0])))
    return scale, angle, float(matrix[0, 2]), float(matrix[1, 2])


def _mad(a: np.ndarray, b: np.ndarray) -> float:
    """Mean absolute difference of two frames."""
    return float(np.mean(cv2.absdiff(a, b)))


# --- output format ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("image", "resolution", "aspect", "size"),
    [
        (LANDSCAPE, "480p", "16:9", (854, 480)),
        (LANDSCAPE, "480p", "9:16", (480, 854)),
        (LANDSCAPE, "480p", "1:1", (480, 480)),
        (LANDSCAPE, "720p", "16:9", (1280, 720)),
        (LANDSCAPE, "auto", "auto", (1080, 720)),
        (SQUARE, "auto", "auto", (1080, 1080)),
    ],
)
def test_output_is_h264_yuv420p_of_requested_size_and_duration(
    tmp_path: Path, image: bytes, resolution: str, aspect: str, size: tuple[int, int]
) -> None:
    """The MP4 decodes as H.264 yuv420p at the requested size, with exactly duration*fps frames."""
    result, out, _ = _render(
        tmp_path, "zoom in", image, resolution=resolution, aspect_ratio=aspect, duration=1
    )
    with av.open(str(out)) as container:
        stream = container.streams.video[0]
        assert stream.codec_context.name == "h264"
        assert stream.format.name == "yuv420p"
        assert (stream.width, stream.height) == size
        assert container.duration is not None
        assert abs(container.duration / av.time_base - 1.0) <= 1 / 12
        count = sum(1 for _ in container.decode(stream))
    assert count == 12
    assert (result.width, result.height, result.fps, result.frames, result.duration_s) == (*size, 12, 12, 1.0)


def test_thumbnail_is_a_jpeg_of_the_output_size(tmp_path: Path) -> None:
    """The thumbnail is a JPEG with the video's width and height."""
    _, _, thumb = _render(tmp_path, "pan right", aspect_ratio="9:16")
    with Image.open(thumb) as image:
        assert image.format == "JPEG"
        assert image.size == (480, 854)


def test_no_temporary_files_are_left_and_a_failed_render_leaves_nothing(tmp_path: Path) -> None:
    """Only the MP4 and thumbnail remain after success; an aborted render leaves no file at all."""
    _render(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.mp4", "thumb.jpg"]

    def abort(fraction: float) -> None:
        if fraction > 0.3:
            raise RuntimeError("cancelled")

    failed = tmp_path / "failed"
    with pytest.raises(RuntimeError, match="cancelled"):
        render_video(
            LANDSCAPE,
            "",
            resolution="480p",
            duration=2,
            out_path=failed / "o.mp4",
            thumb_path=failed / "t.jpg",
            progress=abort,
        )
    assert list(failed.iterdir()) == []


def test_progress_is_reported_in_order_and_ends_at_one(tmp_path: Path) -> None:
    """progress() gets increasing fractions in [0, 1], finishing with 1.0."""
    seen: list[float] = []
    _render(tmp_path, duration=2, progress=seen.append)
    assert len(seen) >= 3
    assert seen == sorted(seen)
    assert seen[0] >= 0.0
    assert seen[-1] == 1.0


# --- motion ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "prompt", ["zoom in", "zoom out", "pan left", "pan right", "tilt up", "pan down", "orbit", "a quiet lake"]
)
def test_every_motion_family_moves_the_picture(tmp_path: Path, prompt: str) -> None:
    """First and last frames differ clearly, and every consecutive pair of frames differs."""
    _, out, _ = _render(tmp_path, prompt, duration=1, fps=12)
    frames = _frames(out)
    assert _mad(frames[0], frames[-1]) > 4.0
    for a, b in itertools.pairwise(frames):
        assert _mad(a, b) > 0.3


@pytest.mark.parametrize(
    ("prompt", "sign_x", "sign_y"),
    [("pan left", 1, 0), ("pan right", -1, 0), ("tilt up", 0, 1), ("pan down", 0, -1)],
)
def test_pans_move_the_content_the_right_way(tmp_path: Path, prompt: str, sign_x: int, sign_y: int) -> None:
    """Panning the camera left moves the content right (phase correlation), and so on for each direction."""
    _, out, _ = _render(tmp_path, prompt, duration=1, fps=12)
    frames = _frames(out)
    a, b = _gray(frames[3]), _gray(frames[8])
    window = cv2.createHanningWindow(a.shape[::-1], cv2.CV_32F)
    (dx, dy), _ = cv2.phaseCorrelate(a, b, window)
    for shift, sign in ((dx, sign_x), (dy, sign_y)):
        if sign:
            assert shift * sign > 5.0
        else:
            assert abs(shift) < 1.0


@pytest.mark.parametrize(("prompt", "grows"), [("slow push in", True), ("pull back to reveal", False)])
def test_zooms_scale_the_content_the_right_way(tmp_path: Path, prompt: str, grows: bool) -> None:
    """Zoom-in magnifies the content over the clip, zoom-out shrinks it, both about the centre."""
    _, out, _ = _render(tmp_path, prompt)
    frames = _frames(out)
    scale, angle, _, _ = _similarity(frames[0], frames[-1])
    assert (scale > 1.15) if grows else (scale < 1 / 1.15)
    assert abs(angle) < 0.2


def test_orbit_rolls_and_moves_the_camera(tmp_path: Path) -> None:
    """The orbit move combines a visible roll with a zoom."""
    _, out, _ = _render(tmp_path, "orbit around the lighthouse")
    frames = _frames(out)
    scale, angle, _, _ = _similarity(frames[0], frames[-1])
    assert scale > 1.03
    assert abs(angle) > 1.0


def test_fade_starts_from_black(tmp_path: Path) -> None:
    """With "fade" the first frame is black and the last is the full picture."""
    _, out, _ = _render(tmp_path, "fade in while we zoom out", duration=2)
    frames = _frames(out)
    assert frames[0].mean() < 20
    assert frames[-1].mean() > 80


def test_same_inputs_give_the_same_frames_and_seed_varies_the_default_move(tmp_path: Path) -> None:
    """Rendering twice gives the same pictures (every frame over 40 dB apart, the encoder's own noise);
    another seed changes the default move far beyond that."""

    def frames(sub: str, seed: int) -> list[np.ndarray]:
        (tmp_path / sub).mkdir()
        _, out, _ = _render(tmp_path / sub, "a calm scene", seed=seed)
        return [_gray(frame) for frame in _frames(out)]

    def psnr(a: np.ndarray, b: np.ndarray) -> float:
        return 10 * float(np.log10(255**2 / max(float(np.mean((a - b) ** 2)), 1e-10)))

    first, again, other = frames("a", 0), frames("b", 0), frames("c", 7)
    assert len(first) == len(again) == len(other)
    assert min(psnr(a, b) for a, b in zip(first, again, strict=True)) > 40
    assert psnr(first[-1], other[-1]) < 30


@pytest.mark.parametrize(
    ("prompt", "name"),
    [
        ("Zoom In on the sun", "zoom-in"),
        ("slow push-in", "zoom-in"),
        ("dolly in toward the door", "zoom-in"),
        ("ZOOM OUT", "zoom-out"),
        ("pull out slowly", "zoom-out"),
        ("camera pulls back", "zoom-out"),
        ("dolly out", "zoom-out"),
        ("pan left across the hills", "pan-left"),
        ("panning right", "pan-right"),
        ("pan up", "pan-up"),
        ("tilt up to the sky", "pan-up"),
        ("pan down", "pan-down"),
        ("tilt down", "pan-down"),
        ("orbit the tower", "orbit"),
        ("subtle parallax", "orbit"),
        ("a slow arc", "orbit"),
        ("an old archway at dusk", "ken-burns"),
        ("", "ken-burns"),
        ("fade in", "ken-burns+fade-in"),
        ("Fading in, pan left", "pan-left+fade-in"),
        ("pan left, then zoom in", "pan-left"),
        ("zoom in, then pan left", "zoom-in"),
    ],
)
def test_motion_words_map_to_plans(prompt: str, name: str) -> None:
    """Motion words pick the plan (case-insensitive, first one wins); fade combines; default is Ken Burns."""
    assert plan_motion(prompt).name == name


def test_plans_are_deterministic() -> None:
    """The same prompt and seed always give the same plan."""
    assert plan_motion("a lake", seed=3) == plan_motion("a lake", seed=3)
    assert plan_motion("a lake", seed=3) != plan_motion("a lake", seed=4)


@pytest.mark.parametrize("move", MOVES)
@pytest.mark.parametrize("aspect", [9 / 21, 9 / 16, 1.0, 16 / 9, 21 / 9])
def test_the_camera_never_looks_outside_the_source(move: str, aspect: float) -> None:
    """At every instant of every move (and several seeds) the view stays inside the source image."""
    for seed in range(6):
        plan = plan_for(move, seed=seed)
        for t in np.linspace(0.0, 1.0, 41):
            for x, y in view_corners(plan.camera_at(float(t)), aspect):
                assert -1e-9 <= x <= 1 + 1e-9
                assert -1e-9 <= y <= 1 + 1e-9


def test_output_size_rules() -> None:
    """Named resolutions set the short side, "auto" follows the image, and sizes are always even."""
    assert output_size(1600, 1067, "720p", "16:9") == (1280, 720)
    assert output_size(1600, 1067, "720p", "9:16") == (720, 1280)
    assert output_size(1600, 1067, "720p", "1:1") == (720, 720)
    assert output_size(1600, 1067, "1080p", "16:9") == (1920, 1080)
    assert output_size(1600, 1067, "auto", "auto") == (1080, 720)
    assert output_size(300, 200, "auto", "auto") == (720, 480)
    assert output_size(2000, 4000, "auto", "auto") == (1080, 2160)
    w, h = output_size(1001, 999, "480p", "auto")
    assert w % 2 == 0 and h % 2 == 0


# --- refusals --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("data", [b"", b"not an image at all", b"\xff\xd8\xff\xe0" + b"\x00" * 64])
def test_undecodable_bytes_raise_image_decode_error(tmp_path: Path, data: bytes) -> None:
    """Bytes that are not an image raise ImageDecodeError (a ValueError) and write nothing."""
    with pytest.raises(ImageDecodeError, match="image"):
        _render(tmp_path, image=data)
    assert issubclass(ImageDecodeError, ValueError)
    assert list(tmp_path.iterdir()) == []


def test_images_over_50_megapixels_are_refused(tmp_path: Path) -> None:
    """A 51-megapixel image is refused from its header, before it is decoded."""
    buffer = io.BytesIO()
    Image.new("1", (10_000, 5_100)).save(buffer, format="PNG")
    with pytest.raises(ImageDecodeError, match="megapixels"):
        _render(tmp_path, image=buffer.getvalue())


@pytest.mark.parametrize(
    "options",
    [
        {"duration": 0},
        {"duration": 11},
        {"duration": 2.5},
        {"fps": 0},
        {"resolution": "4k"},
        {"aspect_ratio": "4:3"},
    ],
)
def test_out_of_range_options_raise_value_error(tmp_path: Path, options: dict[str, Any]) -> None:
    """Durations outside 1..10 s, bad fps, unknown resolutions or aspect ratios raise ValueError."""
    with pytest.raises(ValueError, match="must be"):
        _render(tmp_path, **options)
