"""generate-video under load (concurrency 1/8/32) and database round trips per request, on the local server.

Two providers are measured: the local engine (its renders compete for the same 2 cores, as on a laptop) and
fal, against the fal emulator on loopback (each request then includes one provider submission over HTTP).
"""

from __future__ import annotations

import argparse
import json
import re
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx

from bench._stack import EXAMPLES, RESULTS, local_stack, machine, new_user, summary, upload

_RT = re.compile(r'desc="(\d+) round trips"')


def _round_trips(resp: httpx.Response) -> int:
    match = _RT.search(resp.headers.get("server-timing", ""))
    return int(match.group(1)) if match else -1


def _load(
    base: str, token_headers: dict[str, str], body: dict[str, Any], concurrency: int, requests: int
) -> dict[str, Any]:
    """Fire ``requests`` generate-video calls from ``concurrency`` threads; latency and throughput."""
    latencies: list[float] = []
    codes: dict[int, int] = {}

    def one(_: int) -> tuple[float, int]:
        with httpx.Client(base_url=base, headers=token_headers, timeout=60) as client:
            started = time.perf_counter()
            resp = client.post(
                "/functions/v1/generate-video", json=body, headers={"Idempotency-Key": uuid.uuid4().hex}
            )
            return time.perf_counter() - started, resp.status_code

    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=concurrency) as pool:
        for latency, code in pool.map(one, range(requests)):
            latencies.append(latency)
            codes[code] = codes.get(code, 0) + 1
    wall = time.perf_counter() - started
    return {
        "concurrency": concurrency,
        "requests": requests,
        "status_codes": codes,
        "req_per_s": round(requests / wall, 1),
        **summary(latencies),
    }


def _scenario(base: str, model: str, settings: dict[str, Any], requests: int) -> dict[str, Any]:
    client = new_user(base, 10_000_000)
    image_url = upload(client, (EXAMPLES / "landscape.jpg").read_bytes())
    body = {"model_id": model, "prompt": "slow zoom in", "image_url": image_url, "settings": settings}
    first = client.post("/functions/v1/generate-video", json=body, headers={"Idempotency-Key": "warm"})
    first.raise_for_status()
    created = client.post("/functions/v1/generate-video", json=body, headers={"Idempotency-Key": "measure"})
    status = client.get("/functions/v1/get-video-status", params={"job_id": created.json()["job_id"]})
    replay = client.post("/functions/v1/generate-video", json=body, headers={"Idempotency-Key": "measure"})
    result = {
        "model": model,
        "round_trips": {
            "generate_video": _round_trips(created),
            "get_video_status": _round_trips(status),
            "generate_video_replay": _round_trips(replay),
        },
        "load": [
            _load(base, dict(client.headers), body, c, requests * max(1, c // 8 + 1)) for c in (1, 8, 32)
        ],
    }
    client.close()
    return result


def run(requests: int = 100) -> dict[str, Any]:
    """Measure both providers; returns the JSON document."""
    from tests.emulators.fal import FalEmulator, JobPlan, WebhookPlan

    out: dict[str, Any] = {"benchmark": "api_load", "machine": machine(), "scenarios": []}
    with FalEmulator() as fal:
        fal.set_plan(JobPlan(latency_s=3600, webhook=WebhookPlan(send=False)))
        with local_stack(LOCAL_ENGINE_WORKERS="1", DB_POOL_SIZE="20", RATE_LIMITS="off", **fal.env()) as base:
            out["scenarios"].append(
                _scenario(base, "local-motion", {"duration": 1, "resolution": "480p"}, requests)
            )
            out["scenarios"].append(_scenario(base, "kling-2.1-standard", {"duration": 5}, requests))
    return out


def main() -> None:
    """CLI entry point."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "--requests", type=int, default=100, help="requests per concurrency level (scaled up)"
    )
    parser.add_argument("--out", type=Path, default=RESULTS / "api_load.json")
    args = parser.parse_args()
    result = run(args.requests)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    for scenario in result["scenarios"]:
        print(f"{scenario['model']}: round trips {scenario['round_trips']}")
        for row in scenario["load"]:
            print(
                f"  c={row['concurrency']:>2}  {row['req_per_s']:>7} req/s  p50 {row['p50_ms']} ms  "
                f"p99 {row['p99_ms']} ms  {row['status_codes']}"
            )


if __name__ == "__main__":
    main()
