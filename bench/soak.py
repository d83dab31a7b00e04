"""Soak: 200 concurrent clients for 60 s on the read endpoints of ``i2v serve --workers N``; errors and memory.

    python -m bench.soak [--clients 200] [--duration 60] [--workers 2]

The server runs as its own process (embedded Postgres, the local engine on). Set-up: 20 users, each with an
uploaded image and one local-motion job rendered to completion (so get-video-status signs real media URLs).
Then 200 keep-alive connections on loopback (10 per user) cycle through get-video-status, list-videos,
get-credits, list-models, status and health back to back (bench._http_load, a separate process): 10 s to warm
up, then the measured duration. Every answer that is not 200, and every broken connection, is an error. The
resident memory of the server's processes (parent and workers) is sampled before the load, every 5 s during it
and after it.
"""

from __future__ import annotations

import argparse
import json
import time
import uuid
from pathlib import Path
from typing import Any

import httpx

from bench._http_load import encode_templates, request_bytes
from bench._serve import bench_user, rss_mb, serve, start_load
from bench._stack import EXAMPLES, RESULTS, machine, upload

USERS = 20
WARMUP_S = 10
JOB = {
    "model_id": "local-motion",
    "prompt": "slow zoom in",
    "settings": {"duration": 1, "resolution": "480p"},
}
PATHS = [
    "/functions/v1/get-video-status?job_id={job}",
    "/functions/v1/list-videos?limit=20",
    "/functions/v1/get-credits?limit=10",
    "/functions/v1/list-models",
    "/functions/v1/status",
    "/functions/v1/health",
]


def _users(server: Any) -> list[tuple[str, str]]:
    """USERS users, each with one completed job; (token, job_id) for each."""
    data = (EXAMPLES / "landscape.jpg").read_bytes()
    made = []
    for index in range(USERS):
        user = bench_user(1000 + index)
        with server.client(user) as client:
            image_url = upload(client, data)
            job = client.post(
                "/functions/v1/generate-video",
                json={**JOB, "image_url": image_url},
                headers={"Idempotency-Key": uuid.uuid4().hex},
            )
            job.raise_for_status()
            made.append((str(client.headers["authorization"]).split(" ", 1)[1], job.json()["job_id"]))
    deadline = time.monotonic() + 600
    for token, job_id in made:
        headers = {"Authorization": f"Bearer {token}"}
        with httpx.Client(base_url=server.base_url, headers=headers, timeout=60) as client:
            while client.get("/functions/v1/get-video-status", params={"job_id": job_id}).json()[
                "status"
            ] != ("completed"):
                if time.monotonic() > deadline:
                    raise RuntimeError("the set-up jobs did not complete")
                time.sleep(0.2)
    return made


def run(clients: int, duration: float, workers: int) -> dict[str, Any]:
    """Set up, then soak; returns the JSON document."""
    with serve(workers, SIGNUP_CREDITS="1000", LOG_LEVEL="INFO") as server:
        users = _users(server)
        host = f"127.0.0.1:{server.port}"
        templates = []
        for index in range(clients):
            token, job_id = users[index % len(users)]
            headers = {"Authorization": f"Bearer {token}", "X-Request-Id": "soak-{seq}"}
            order = PATHS[index % len(PATHS) :] + PATHS[: index % len(PATHS)]  # every endpoint always in use
            templates.append([request_bytes("GET", p.format(job=job_id), host, headers) for p in order])
        processes = server.processes()
        rss_idle = rss_mb(processes)
        spec = {
            "host": "127.0.0.1",
            "port": server.port,
            "connections": clients,
            "duration_s": duration,
            "warmup_s": WARMUP_S,
            "templates": encode_templates(templates),
        }
        proc = start_load(spec)
        started = time.monotonic()
        series = []
        while proc.poll() is None and time.monotonic() - started < WARMUP_S + duration + 120:
            time.sleep(5)
            series.append({"t_s": round(time.monotonic() - started), "rss_mb": rss_mb(processes)})
        assert proc.stdout is not None
        result: dict[str, Any] = json.loads(proc.stdout.read())
        proc.wait(60)
        rss_after = rss_mb(processes)
        errors = result["errors"] + sum(n for code, n in result["status_codes"].items() if code != "200")
    measured = [s for s in series if WARMUP_S <= s["t_s"] <= WARMUP_S + duration]
    return {
        "benchmark": "soak",
        "machine": machine(),
        "workers": workers,
        "clients": clients,
        "endpoints": [p.split("?")[0].rsplit("/", 1)[1] for p in PATHS],
        "load": result,
        "errors": errors,
        "server_processes": len(processes),
        "rss_mb_idle_before_load": rss_idle,
        "rss_mb_before": measured[0]["rss_mb"] if measured else None,
        "rss_mb_after": rss_after,
        "rss_mb_during_min_max": [min(s["rss_mb"] for s in measured), max(s["rss_mb"] for s in measured)]
        if measured
        else None,
        "rss_mb_series": series,
        "note": f"the first {WARMUP_S} s of load warm the server up and are not counted; rss_mb_before is "
        "sampled when the measured minute starts, rss_mb_after once the load has ended",
    }


def main() -> None:
    """CLI entry point."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--clients", type=int, default=200)
    parser.add_argument("--duration", type=float, default=60.0)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--out", type=Path, default=RESULTS / "soak.json")
    args = parser.parse_args()
    result = run(args.clients, args.duration, args.workers)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    load = result["load"]
    print(
        f"{result['clients']} clients, {load['duration_s']} s: {load['requests']} requests "
        f"({load['req_per_s']} req/s, p50 {load['p50_ms']} ms, p99 {load['p99_ms']} ms), "
        f"errors {result['errors']}, RSS {result['rss_mb_before']} -> {result['rss_mb_after']} MiB "
        f"(during {result['rss_mb_during_min_max']})"
    )


if __name__ == "__main__":
    main()
