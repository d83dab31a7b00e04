"""The local engine's YUV frame drawing and its pipelined encoder: fidelity, stopping, determinism."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import av
import cv2
import numpy as np
import pytest

from shared.providers.local.engine import RenderStopped, render, render_video
from shared.providers.local.engine.frames import camera_matrix, draw_frame, prepare_source, to_bgr, to_yuv
from shared.providers.local.engine.motion import plan_for, plan_motion
from shared.providers.local.engine.render import PREFETCH, decode_image

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
SQUARE = (EXAMPLES / "square.jpg").read_bytes()


@pytest.mark.parametrize(
    ("move", "size"), [("zoom-in", (640, 360)), ("orbit", (360, 640)), ("pan-left", (480, 480))]
)
def test_yuv_frames_match_a_direct_bicubic_warp(move: str, size: tuple[int, int]) -> None:
    """Frames drawn plane by plane in YUV match one bicubic BGR warp of the source (PSNR over 35 dB)."""
    source = prepare_source(decode_image(SQUARE), *size)
    yuv, plan = to_yuv(source), plan_for(move, seed=3)
    for index in (0, 11, 23):
        ours = to_bgr(draw_frame(yuv, plan, index, 24, 24, size))
        matrix = camera_matrix(plan.camera_at(index / 23), (source.shape[1], source.shape[0]), size)
        flags = cv2.INTER_CUBIC | cv2.WARP_INVERSE_MAP
        reference = cv2.warpAffine(source, matrix, size, flags=flags, borderMode=cv2.BORDER_REFLECT)
        assert ours.shape == reference.shape
        assert cv2.PSNR(ours, reference) > 35  # a one-pixel misalignment scores about 32


def test_fade_starts_from_video_black() -> None:
    """The first frame of a fade is limited-range black: Y at 16, chroma neutral at 128."""
    size = (320, 180)
    yuv = to_yuv(prepare_source(decode_image(SQUARE), *size))
    frame = draw_frame(yuv, plan_for("zoom-in", fade=True), 0, 24, 24, size)
    assert np.all(frame[:180] == 16)
    assert np.all(frame[180:] == 128)


def test_should_stop_ends_the_render_within_a_few_frames(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A stop request raises RenderStopped at that frame, having drawn at most PREFETCH frames beyond it,
    and leaves no file behind."""
    drawn: list[int] = []

    def counting_draw(*args: Any, **kwargs: Any) -> Any:
        drawn.append(args[2])
        return draw_frame(*args, **kwargs)

    monkeypatch.setattr(render, "draw_frame", counting_draw)
    asked: list[int] = []

    def should_stop() -> bool:
        asked.append(1)
        return len(asked) > 5

    with pytest.raises(RenderStopped) as stopped:
        render_video(
            SQUARE,
            "zoom in",
            resolution="480p",
            aspect_ratio="1:1",
            duration=4,
            out_path=tmp_path / "v.mp4",
            thumb_path=tmp_path / "t.jpg",
            should_stop=should_stop,
        )
    assert (stopped.value.frame, stopped.value.frames) == (5, 96)
    assert max(drawn) < 5 + PREFETCH
    assert list(tmp_path.iterdir()) == []


def _luma(path: Path) -> list[np.ndarray]:
    """The Y plane of every decoded frame of ``path``, as float arrays."""
    with av.open(str(path)) as container:
        return [
            frame.to_ndarray(format="yuv420p")[: frame.height].astype(np.float64)
            for frame in container.decode(video=0)
        ]


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    """Peak signal-to-noise ratio of two 8-bit planes, in dB (capped at 100 for identical planes)."""
    mse = float(np.mean((a - b) ** 2))
    return 100.0 if mse == 0 else 10 * float(np.log10(255**2 / mse))


def test_reruns_under_different_timing_encode_the_same_frames_in_order(tmp_path: Path) -> None:
    """However the drawing thread and the encoder interleave, the video holds the pure function's frames in
    order: every decoded frame matches its own drawn frame (over 40 dB) better than its neighbours."""
    size, total, fps = (480, 854), 24, 24
    plan = plan_motion("orbit", 0)
    source = to_yuv(prepare_source(decode_image(SQUARE), *size))
    drawn = [
        draw_frame(source, plan, index, total, fps, size)[: size[1]].astype(np.float64)
        for index in range(total)
    ]
    assert np.array_equal(drawn[5], draw_frame(source, plan, 5, total, fps, size)[: size[1]])

    def slow_progress(_: float) -> None:
        time.sleep(0.03)  # holds the encoder back so the drawing thread runs ahead

    videos = []
    for run, progress in (("quick", None), ("slow", slow_progress)):
        out = tmp_path / run / "v.mp4"
        render_video(
            SQUARE,
            "orbit",
            resolution="480p",
            aspect_ratio="9:16",
            duration=1,
            fps=fps,
            out_path=out,
            thumb_path=tmp_path / run / "t.jpg",
            progress=progress,
        )
        videos.append(_luma(out))
    for video in videos:
        assert len(video) == total
        for index, frame in enumerate(video):
            own = _psnr(frame, drawn[index])
            assert own > 40, (index, own)
            for other in (index - 1, index + 1):
                if 0 <= other < total:
                    assert own > _psnr(frame, drawn[other]), (index, other)
    assert min(_psnr(a, b) for a, b in zip(*videos, strict=True)) > 40
