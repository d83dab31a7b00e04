"""list-videos latency with 100k jobs in the table (one user holding most of them), through the HTTP API.

Set-up inserts the jobs straight into Postgres (it is a fixture, not the behaviour measured). Then list-videos is
called page after page with the returned cursors, with and without a status filter, and p50/p99 are reported.
"""

from __future__ import annotations

import argparse
import json
import time
import uuid
from pathlib import Path
from typing import Any

from bench._stack import RESULTS, local_stack, machine, new_user, summary


def _seed(user: uuid.UUID, jobs: int) -> None:
    import psycopg

    from shared.db import get_db
    from shared.providers.catalog import find_model

    spec = find_model("local-motion")
    other = uuid.uuid4()
    with psycopg.connect(get_db().url, autocommit=True) as conn:
        conn.execute(
            b"insert into accounts (user_id) values (%s), (%s) on conflict do nothing", (user, other)
        )
        conn.execute(
            b"""insert into video_jobs (user_id, model_id, model_slug, provider, status, prompt, settings,
                                        credits_used, created_at)
                select case when g %% 10 = 0 then %s else %s end, %s, 'local-motion', 'test',
                       (array['pending','processing','completed','failed','canceled'])[1 + g %% 5]::job_status,
                       'prompt ' || g, '{"duration": 4}', 4, now() - make_interval(secs => g)
                  from generate_series(1, %s) g""",
            (other, user, spec.id, jobs),
        )
        conn.execute(b"analyze video_jobs")


def run(jobs: int = 100_000, pages: int = 200) -> dict[str, Any]:
    """Seed, then page through; returns the JSON document."""
    out: dict[str, Any] = {"benchmark": "listing", "machine": machine(), "jobs_in_table": jobs}
    with local_stack(LOCAL_ENGINE="false") as base:
        client = new_user(base, 0)
        user = _user_of(client)
        started = time.perf_counter()
        _seed(user, jobs)
        out["seed_s"] = round(time.perf_counter() - started, 1)
        for label, params in (("all", {}), ("status=completed", {"status": "completed"})):
            latencies: list[float] = []
            cursor = None
            for _ in range(pages):
                query: dict[str, Any] = {"limit": 50, **params}
                if cursor:
                    query["cursor"] = cursor
                t0 = time.perf_counter()
                resp = client.get("/functions/v1/list-videos", params=query)
                latencies.append(time.perf_counter() - t0)
                resp.raise_for_status()
                cursor = resp.json()["next_cursor"]
                if cursor is None:
                    break
            out[label] = {"pages": len(latencies), "limit": 50, **summary(latencies)}
        client.close()
    return out


def _user_of(client: Any) -> uuid.UUID:
    import jwt

    token = str(client.headers["authorization"]).split(" ", 1)[1]
    return uuid.UUID(jwt.decode(token, options={"verify_signature": False})["sub"])


def main() -> None:
    """CLI entry point."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--jobs", type=int, default=100_000)
    parser.add_argument("--out", type=Path, default=RESULTS / "listing.json")
    args = parser.parse_args()
    result = run(args.jobs)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
