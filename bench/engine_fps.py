"""Benchmark the local engine against ffmpeg's zoompan filter: speed and smoothness of a zoom-in.

    python bench/engine_fps.py [--out bench/results/engine.json] [--runs 5]

Both render ``examples/landscape.jpg`` as a 1280x720, 5 s, 24 fps zoom-in (1.0 → 1.2, the same smoothstep
curve) with libx264 veryfast, CRF 20, yuv420p. Speed is frames / wall time, the median of ``--runs`` runs,
each end to end (image decode to finished MP4); the renderers take turns, so both see the same background
load. CPU seconds (user + system, all threads) are reported beside wall time. Both use the same x264
settings (x264's defaults, mb-tree on, plus the preset and CRF above). Jitter: both outputs are decoded,
the similarity transform between every pair of consecutive frames is estimated (corner tracking + RANSAC), and each frame's motion
is expressed as the displacement of the four frame corners in pixels. A smooth camera changes that motion
only gradually, so the jitter reported is the standard deviation of the frame-to-frame change of the
per-frame motion (px); integer-pixel cropping shows up as a much larger value. The same measure on the
engine's frames before encoding is reported too: it separates the renderer from codec noise.

The ``local-card`` image model is timed as well: a 1024x576 PNG and JPEG of a one-sentence prompt.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import platform
import resource
import statistics
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import av
import cv2
import imageio_ffmpeg
import numpy as np

from shared.providers.local.engine import plan_motion, render_video
from shared.providers.local.engine.card import render_card
from shared.providers.local.engine.frames import draw_frame, to_yuv
from shared.providers.local.engine.render import decode_image, output_size, prepare_source

ROOT = Path(__file__).resolve().parent.parent
IMAGE = ROOT / "examples" / "landscape.jpg"
WIDTH, HEIGHT, DURATION, FPS = 1280, 720, 5, 24
FRAMES = DURATION * FPS
PROMPT = "slow zoom in"
CARD_PROMPT = "A lighthouse on a cliff at dusk, waves crashing below, slow zoom in"


def _cpu_model() -> str:
    """The CPU model name from /proc/cpuinfo, or the platform's processor string."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def machine_info(ffmpeg: str) -> dict[str, Any]:
    """Where the numbers were measured."""
    version = subprocess.run([ffmpeg, "-version"], capture_output=True, text=True, check=True).stdout
    return {
        "platform": platform.platform(),
        "cpu": _cpu_model(),
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
        "opencv": cv2.__version__,
        "pyav": av.__version__,
        "numpy": np.__version__,
        "ffmpeg": version.splitlines()[0],
    }


def run_ours(out: Path) -> float:
    """Render with the local engine; returns wall seconds."""
    start = time.perf_counter()
    render_video(
        IMAGE.read_bytes(),
        PROMPT,
        resolution="720p",
        aspect_ratio="16:9",
        duration=DURATION,
        fps=FPS,
        out_path=out,
        thumb_path=out.with_suffix(".jpg"),
    )
    return time.perf_counter() - start


def run_zoompan(ffmpeg: str, out: Path) -> float:
    """Render the same zoom with ffmpeg's crop + zoompan; wall seconds."""
    p = f"(on/{FRAMES - 1})"
    zoom = f"pow(1.2\\,3*{p}*{p}-2*{p}*{p}*{p})"  # the engine's smoothstep, geometric zoom 1.0 → 1.2
    graph = (
        f"crop=w='min(iw\\,ih*{WIDTH}/{HEIGHT})':h='min(ih\\,iw*{HEIGHT}/{WIDTH})',"
        f"zoompan=z='{zoom}':x='iw/2-(iw/zoom/2)':y='ih/2-(ih/zoom/2)':d={FRAMES}:s={WIDTH}x{HEIGHT}:fps={FPS}"
    )
    command = [
        ffmpeg,
        "-y",
        "-loglevel",
        "error",
        "-i",
        str(IMAGE),
        "-vf",
        graph,
        "-frames:v",
        str(FRAMES),
        "-c:v",
        "libx264",
        "-preset",
        "veryfast",
        "-crf",
        "20",
        "-pix_fmt",
        "yuv420p",
        "-movflags",
        "+faststart",
        str(out),
    ]
    start = time.perf_counter()
    subprocess.run(command, check=True)
    return time.perf_counter() - start


def _gray_frames(path: Path) -> list[np.ndarray]:
    """Every frame of ``path`` as 8-bit grayscale."""
    with av.open(str(path)) as container:
        return [frame.to_ndarray(format="gray") for frame in container.decode(video=0)]


def corner_motion(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Displacement (px) of the four frame corners under the similarity transform from ``a`` to ``b``."""
    points = cv2.goodFeaturesToTrack(a, maxCorners=600, qualityLevel=0.005, minDistance=7)
    moved, status, _ = cv2.calcOpticalFlowPyrLK(a, b, points, None, winSize=(21, 21), maxLevel=3)  # type: ignore[call-overload]
    keep = status.ravel() == 1
    matrix, _ = cv2.estimateAffinePartial2D(
        points[keep], moved[keep], method=cv2.RANSAC, ransacReprojThreshold=1.0
    )
    h, w = a.shape
    corners = np.array([[0, 0, 1], [w - 1, 0, 1], [w - 1, h - 1, 1], [0, h - 1, 1]], np.float64)
    return np.asarray((corners @ matrix.T - corners[:, :2]).ravel())


def _unencoded_frames() -> list[np.ndarray]:
    """The engine's frames for the same clip before encoding: their luma planes (the renderer on its own)."""
    image = decode_image(IMAGE.read_bytes())
    size = output_size(image.shape[1], image.shape[0], "720p", "16:9")
    source, plan = to_yuv(prepare_source(image, *size)), plan_motion(PROMPT)
    return [draw_frame(source, plan, i, FRAMES, FPS, size)[: size[1]].copy() for i in range(FRAMES)]


def _cpu_seconds() -> float:
    """User + system CPU time of this process and its finished children."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def _timed(run: Any) -> tuple[float, float]:
    """``run()``'s wall seconds (as it reports them) and the CPU seconds spent meanwhile."""
    before = _cpu_seconds()
    wall = float(run())
    return wall, _cpu_seconds() - before


def time_cards(tmp: Path, runs: int) -> dict[str, float]:
    """Median milliseconds to render the benchmark card as PNG and as JPEG (1024x576, 16:9)."""
    result: dict[str, float] = {}
    for fmt in ("png", "jpeg"):
        times = []
        for _ in range(runs):
            start = time.perf_counter()
            render_card(CARD_PROMPT, aspect_ratio="16:9", output_format=fmt, out_path=tmp / f"card.{fmt}")
            times.append(time.perf_counter() - start)
        result[f"{fmt}_ms"] = round(1000 * statistics.median(times), 1)
    return result


def jitter(frames: list[np.ndarray]) -> dict[str, float]:
    """Std-dev of the frame-to-frame change of per-frame corner motion, plus the mean motion, in px."""
    motion = np.array([corner_motion(a, b) for a, b in itertools.pairwise(frames)])
    deltas = np.diff(motion, axis=0)
    return {
        "jitter_px": round(float(deltas.std()), 4),
        "mean_motion_px": round(float(np.abs(motion).mean()), 3),
        "frames": len(frames),
    }


def _median_run(samples: list[tuple[float, float]]) -> dict[str, Any]:
    """fps and the median wall and CPU seconds of some runs."""
    wall = statistics.median(w for w, _ in samples)
    return {
        "fps": round(FRAMES / wall, 1),
        "seconds": round(wall, 3),
        "cpu_seconds": round(statistics.median(c for _, c in samples), 3),
        "runs_fps": [round(FRAMES / w, 1) for w, _ in samples],
    }


def main() -> None:
    """Run both renderers in turn, measure them, time the card and write the JSON report."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "engine.json")
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    ffmpeg = imageio_ffmpeg.get_ffmpeg_exe()
    load_before = os.getloadavg()
    samples: dict[str, list[tuple[float, float]]] = {"ours": [], "zoompan": []}
    with tempfile.TemporaryDirectory() as tmp:
        ours, theirs = Path(tmp) / "ours.mp4", Path(tmp) / "zoompan.mp4"
        for _ in range(args.runs):
            samples["ours"].append(_timed(lambda: run_ours(ours)))
            samples["zoompan"].append(_timed(lambda: run_zoompan(ffmpeg, theirs)))
        ours_j, theirs_j = jitter(_gray_frames(ours)), jitter(_gray_frames(theirs))
        cards = time_cards(Path(tmp), args.runs)
    raw_j = jitter(_unencoded_frames())
    runs = {name: _median_run(values) for name, values in samples.items()}
    report = {
        "machine": {**machine_info(ffmpeg), "load_average_1m": [load_before[0], os.getloadavg()[0]]},
        "ours_fps": runs["ours"]["fps"],
        "ffmpeg_zoompan_fps": runs["zoompan"]["fps"],
        "ratio_to_zoompan": round(runs["ours"]["fps"] / runs["zoompan"]["fps"], 2),
        "ours_jitter": ours_j["jitter_px"],
        "ffmpeg_jitter": theirs_j["jitter_px"],
        "card_ms": cards,
        "details": {
            "ours": {**runs["ours"], **ours_j},
            "ours_before_encoding": raw_j,
            "ffmpeg_zoompan": {**runs["zoompan"], **theirs_j},
        },
        "settings": {
            "image": str(IMAGE.relative_to(ROOT)),
            "prompt": PROMPT,
            "size": f"{WIDTH}x{HEIGHT}",
            "duration_s": DURATION,
            "fps": FPS,
            "frames": FRAMES,
            "zoom": "1.0 -> 1.2, smoothstep",
            "encoder": "libx264 preset=veryfast crf=20 pix_fmt=yuv420p movflags=+faststart",
            "runs": args.runs,
            "jitter": "std-dev of the frame-to-frame change of per-frame corner motion (px)",
            "card": {"prompt": CARD_PROMPT, "size": "1024x576"},
        },
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    for name, label in (("ours", "engine"), ("zoompan", "zoompan")):
        run = runs[name]
        print(f"{label:17s} {run['fps']:6.1f} fps  {run['cpu_seconds']:.2f} CPU s")
    print(f"ratio {report['ratio_to_zoompan']}")
    print(f"jitter: engine {report['ours_jitter']:.3f} px, zoompan {report['ffmpeg_jitter']:.3f} px")
    print(f"card: {cards['png_ms']} ms PNG, {cards['jpeg_ms']} ms JPEG")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
