"""Mirroring a large provider video: webhook-to-completed latency, peak RSS of the mirroring process, throughput.

1. A fal job finishes on the emulator with a 200 MB video; we deliver its signed webhook and time how long until
   get-video-status says completed (the server mirrors right after acknowledging the webhook).
2. The same again with MIRROR_AFTER_WEBHOOK=false, and the mirroring done by a separate process
   (``python -m bench.mirror_worker JOB_ID``), whose peak RSS and wall time we record.
3. A plain streamed copy of the same bytes over loopback (httpx, same chunk size, to a file) as the baseline.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import httpx

from bench._stack import EXAMPLES, RESULTS, local_stack, machine, new_user, upload

SIZE = 200 * 1024 * 1024
REPEATS = 3


def _start_job(base: str, fal: Any) -> tuple[httpx.Client, str, str]:
    client = new_user(base, 1000)
    image_url = upload(client, (EXAMPLES / "square.jpg").read_bytes())
    resp = client.post(
        "/functions/v1/generate-video",
        headers={"Idempotency-Key": uuid.uuid4().hex},
        json={"model_id": "kling-2.1-standard", "image_url": image_url, "settings": {"duration": 5}},
    )
    resp.raise_for_status()
    job_id = resp.json()["job_id"]
    from shared.db import get_db

    request_id = get_db().call("job_for_provider", job=uuid.UUID(job_id))["request_id"]
    fal.wait_for(request_id, timeout=30)
    return client, job_id, request_id


def _wait_completed(client: httpx.Client, job_id: str, timeout: float = 600) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job: dict[str, Any] = client.get("/functions/v1/get-video-status", params={"job_id": job_id}).json()
        if job["status"] in ("completed", "failed"):
            return job
        time.sleep(0.05)
    raise TimeoutError(job_id)


def _plain_copy(url: str) -> float:
    with tempfile.TemporaryDirectory() as tmp, httpx.Client(timeout=120) as client:
        started = time.perf_counter()
        with client.stream("GET", url) as resp, (Path(tmp) / "copy.bin").open("wb") as out:
            for chunk in resp.iter_raw(1 << 20):
                out.write(chunk)
        return time.perf_counter() - started


def run(size: int = SIZE) -> dict[str, Any]:
    """Run the three measurements; returns the JSON document."""
    from tests.emulators.fal import FalEmulator, JobPlan, MediaFile, WebhookPlan

    out: dict[str, Any] = {"benchmark": "mirror", "machine": machine(), "video_bytes": size}
    with FalEmulator() as fal:
        fal.set_plan(JobPlan(latency_s=0, video=MediaFile(size=size), webhook=WebhookPlan(send=False)))
        with local_stack(**fal.env()) as base:
            client, job_id, rid = _start_job(base, fal)
            started = time.perf_counter()
            delivery = fal.deliver_webhook(rid)
            acked = time.perf_counter() - started
            job = _wait_completed(client, job_id)
            out["webhook"] = {
                "status_code": delivery.status_code,
                "ack_s": round(acked, 3),
                "webhook_to_completed_s": round(time.perf_counter() - started, 2),
                "job_status": job["status"],
            }

            os.environ["MIRROR_AFTER_WEBHOOK"] = "false"
            from shared.db import get_db
            from shared.settings import get_settings

            get_settings.cache_clear()
            runs, plains = [], []
            for _ in range(REPEATS):
                client2, job2, rid2 = _start_job(base, fal)
                fal.deliver_webhook(rid2)
                worker = (
                    subprocess.run(  # a fresh process, configured like a deployed function (DATABASE_URL)
                        [sys.executable, "-m", "bench.mirror_worker", job2],
                        capture_output=True,
                        text=True,
                        check=True,
                        env={**os.environ, "DATABASE_URL": get_db().url},
                    )
                )
                run_ = json.loads(worker.stdout.strip().splitlines()[-1])
                run_["job_status"] = client2.get(
                    "/functions/v1/get-video-status", params={"job_id": job2}
                ).json()["status"]
                runs.append(run_)
                plains.append(_plain_copy(fal.job(rid2).video_url or ""))
            mirror_s = statistics.median(r["mirror_s"] for r in runs)
            plain = statistics.median(plains)
            out["worker_runs"] = runs
            out["worker"] = {
                "mirror_s_median": mirror_s,
                "peak_rss_mb_max": max(r["peak_rss_mb"] for r in runs),
                "rss_before_mb": runs[0]["rss_before_mb"],
            }
            out["plain_copy_s_median"] = round(plain, 3)
            out["throughput_ratio"] = round(plain / mirror_s, 3)  # 1.0 = as fast as a plain streamed copy
            out["mirror_mb_per_s"] = round(size / mirror_s / 1e6, 1)
            out["plain_mb_per_s"] = round(size / plain / 1e6, 1)
    return out


def main() -> None:
    """CLI entry point."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--size-mb", type=int, default=200)
    parser.add_argument("--out", type=Path, default=RESULTS / "mirror.json")
    args = parser.parse_args()
    result = run(args.size_mb * 1024 * 1024)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
