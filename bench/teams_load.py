"""generate-video with the team features on: an API key, a campaign with a budget and a rate limit, against the
same request with a user's access token and none of them, on the local server (local engine, loopback HTTP).

Reports the database round trips of each request (Server-Timing) and latency at concurrency 1/8/32. The rate
limit is set high enough that every measured request is accepted (its check still runs in the same call);
the refused path (429) is measured separately, with its round trips.
"""

from __future__ import annotations

import argparse
import json
import os
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
    base: str, headers: dict[str, str], body: dict[str, Any], concurrency: int, n: int
) -> dict[str, Any]:
    latencies: list[float] = []
    codes: dict[int, int] = {}
    trips: dict[int, int] = {}

    def one(_: int) -> tuple[float, httpx.Response]:
        with httpx.Client(base_url=base, headers=headers, timeout=60) as client:
            started = time.perf_counter()
            resp = client.post(
                "/functions/v1/generate-video", json=body, headers={"Idempotency-Key": uuid.uuid4().hex}
            )
            return time.perf_counter() - started, resp

    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=concurrency) as pool:
        for latency, resp in pool.map(one, range(n)):
            latencies.append(latency)
            codes[resp.status_code] = codes.get(resp.status_code, 0) + 1
            trips[_round_trips(resp)] = trips.get(_round_trips(resp), 0) + 1
    wall = time.perf_counter() - started
    return {
        "concurrency": concurrency,
        "requests": n,
        "status_codes": codes,
        "round_trips": trips,
        "req_per_s": round(n / wall, 1),
        **summary(latencies),
    }


def _team_headers(client: httpx.Client, budget: int) -> tuple[dict[str, str], str]:
    """A new API key of the client's user and a campaign with ``budget``: (key headers, campaign id)."""
    key = client.post("/functions/v1/create-api-key", json={"name": "bench"}).json()["key"]
    acme = client.post("/functions/v1/create-client", json={"name": "Acme"}).json()
    camp = client.post(
        "/functions/v1/create-campaign",
        json={"client_id": acme["id"], "name": "bench", "budget_credits": budget},
    ).json()
    return {"Authorization": f"Bearer {key}"}, str(camp["id"])


def run(requests: int = 60) -> dict[str, Any]:
    """Measure both ways of calling; returns the JSON document."""
    from shared.settings import get_settings

    out: dict[str, Any] = {"benchmark": "teams_load", "machine": machine(), "scenarios": []}
    settings = {"duration": 1, "resolution": "480p"}
    with local_stack(
        LOCAL_ENGINE_WORKERS="1", DB_POOL_SIZE="20", RATE_LIMITS="generate-video=100000/min"
    ) as base:
        client = new_user(base, 10_000_000)
        image = upload(client, (EXAMPLES / "landscape.jpg").read_bytes())
        plain = {"model_id": "local-motion", "image_url": image, "settings": settings}
        client.post("/functions/v1/generate-video", json=plain, headers={"Idempotency-Key": "warm"})
        key_headers, campaign_id = _team_headers(client, 1_000_000)
        team = {**plain, "campaign_id": campaign_id}
        for name, headers, body in (
            ("access token, no campaign", dict(client.headers), plain),
            ("API key + campaign budget + rate limit", key_headers, team),
        ):
            single = _load(base, headers, body, 1, 1)  # the key's first use in this process looks it up
            out["scenarios"].append(
                {
                    "caller": name,
                    "first_request_round_trips": single["round_trips"],
                    "load": [
                        _load(base, headers, body, c, requests * max(1, c // 8 + 1)) for c in (1, 8, 32)
                    ],
                }
            )
        # The refused path: 5/min for a fresh key (settings are read per request; the server is in-process).
        os.environ["RATE_LIMITS"] = "generate-video=5/min"
        get_settings.cache_clear()
        key_headers, _ = _team_headers(client, 1_000_000)
        out["refusals"] = _load(base, key_headers, team, 32, 64)
        client.close()
    return out


def main() -> None:
    """CLI entry point."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--requests", type=int, default=60, help="requests per concurrency level (scaled up)")
    parser.add_argument("--out", type=Path, default=RESULTS / "teams_load.json")
    args = parser.parse_args()
    result = run(args.requests)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    for scenario in result["scenarios"]:
        print(f"{scenario['caller']}: first request round trips {scenario['first_request_round_trips']}")
        for row in scenario["load"]:
            print(
                f"  c={row['concurrency']:>2}  {row['req_per_s']:>7} req/s  p50 {row['p50_ms']} ms  "
                f"p99 {row['p99_ms']} ms  {row['status_codes']}  round trips {row['round_trips']}"
            )
    ref = result["refusals"]
    print(
        f"5/min, 64 at once: {ref['status_codes']}  round trips {ref['round_trips']}  p50 {ref['p50_ms']} ms"
    )


if __name__ == "__main__":
    main()
