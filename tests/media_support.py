"""Real media for tests and benchmarks: what a hosted model would return."""

from __future__ import annotations

from pathlib import Path

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def small_mp4(directory: Path) -> bytes:
    """A real 1-second 480p H.264 MP4 (and its thumbnail, beside it) rendered from examples/square.jpg."""
    from shared.providers.local.engine.render import render_video

    render_video(
        (EXAMPLES / "square.jpg").read_bytes(),
        "zoom in",
        resolution="480p",
        duration=1,
        out_path=directory / "v.mp4",
        thumb_path=directory / "t.jpg",
    )
    return (directory / "v.mp4").read_bytes()
