"""100 jobs through ``i2v bulk`` against the fal emulator: makespan as a ratio of the ideal ceil(100/C)*T.

The emulator runs at most C jobs at once, each taking T seconds, and answers with a real (small) MP4. ``i2v bulk``
runs as a separate process against the local server, exactly as a creator would run it. Two makespans are
reported: the provider's (first submission received by fal to last job finished there) and the user's (the bulk
command's wall time, uploads, quotes, webhooks, mirroring and downloads included).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from bench._stack import EXAMPLES, RESULTS, local_stack, machine
from tests.media_support import small_mp4


def _inputs(tmp: Path, images: int, prompts: int) -> tuple[Path, Path]:
    from PIL import Image

    folder = tmp / "images"
    folder.mkdir()
    base = Image.open(EXAMPLES / "square.jpg").convert("RGB").resize((320, 320))
    for i in range(images):
        img = base.rotate(i * 7)
        img.save(folder / f"img_{i:02d}.jpg", quality=85)
    prompt_file = tmp / "prompts.txt"
    prompt_file.write_text("\n".join(f"slow zoom in, take {i}" for i in range(prompts)) + "\n")
    return folder, prompt_file


def run(jobs: int = 100, concurrency: int = 10, latency_s: float = 5.0) -> dict[str, Any]:
    """Run the bulk command once; returns the JSON document."""
    from shared.auth import mint_dev_token
    from shared.billing.ledger import grant
    from tests.emulators.fal import FalEmulator, JobPlan, MediaFile

    images = 10
    prompts = math.ceil(jobs / images)
    out: dict[str, Any] = {
        "benchmark": "bulk_makespan",
        "machine": machine(),
        "jobs": images * prompts,
        "provider_concurrency": concurrency,
        "job_latency_s": latency_s,
    }
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        folder, prompt_file = _inputs(tmp, images, prompts)
        video = small_mp4(tmp)
        with FalEmulator(concurrency=concurrency) as fal:
            fal.set_plan(JobPlan(latency_s=latency_s, video=MediaFile(data=video)))
            with local_stack(**fal.env()) as base:
                user = uuid.uuid4()
                grant(user, 1_000_000, "benchmark")
                env = {**os.environ, "I2V_API_URL": base, "I2V_TOKEN": mint_dev_token(user)}
                started = time.time()
                proc = subprocess.run(
                    [
                        sys.executable,
                        "-m",
                        "client",
                        "bulk",
                        str(prompt_file),
                        "--images-dir",
                        str(folder),
                        "--model",
                        "kling-2.1-standard",
                        "--duration",
                        "5",
                        "--concurrency",
                        "16",
                        "--poll-interval",
                        "0.2",
                        "--output-dir",
                        str(tmp / "out"),
                    ],
                    env=env,
                    capture_output=True,
                    text=True,
                )
                wall = time.time() - started
                videos = len(list((tmp / "out").glob("*.mp4"))) if (tmp / "out").exists() else 0
                finished = [j.completed_at for j in fal.jobs() if j.completed_at]
                submits = [r.at for r in fal.requests_for("submit")]
    ideal = math.ceil(out["jobs"] / concurrency) * latency_s
    provider_span = max(finished) - min(submits) if finished and submits else float("nan")
    out.update(
        exit_code=proc.returncode,
        ideal_s=ideal,
        provider_makespan_s=round(provider_span, 2),
        provider_ratio=round(provider_span / ideal, 3),
        end_to_end_s=round(wall, 2),
        end_to_end_ratio=round(wall / ideal, 3),
        videos=videos,
    )
    if proc.returncode != 0:
        out["stderr_tail"] = proc.stderr[-2000:]
    return out


def main() -> None:
    """CLI entry point."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--jobs", type=int, default=100)
    parser.add_argument("--concurrency", type=int, default=10)
    parser.add_argument("--latency", type=float, default=5.0)
    parser.add_argument("--out", type=Path, default=RESULTS / "bulk_makespan.json")
    args = parser.parse_args()
    result = run(args.jobs, args.concurrency, args.latency)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
