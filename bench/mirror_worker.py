"""Mirror one job in a fresh process and print its wall time and peak RSS as JSON (used by bench.mirror)."""

from __future__ import annotations

import json
import sys
import time
import uuid


def peak_rss_mb() -> float:
    """This process's peak resident set (VmHWM). Not ru_maxrss: on Linux that keeps the parent's peak at fork."""
    for line in open("/proc/self/status").read().splitlines():  # noqa: SIM115 (a tiny read)
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def main() -> None:
    """Mirror the job named on the command line (settings from the environment, like a Lambda)."""
    job_id = uuid.UUID(sys.argv[1])
    from shared.db import get_db
    from shared.jobs import mirror
    from shared.settings import get_settings

    if not get_settings().database_url:
        sys.exit("DATABASE_URL must be set")
    get_db().ping()
    baseline_mb = peak_rss_mb()
    started = time.perf_counter()
    done = mirror.mirror_job(job_id)
    elapsed = time.perf_counter() - started
    peak_mb = peak_rss_mb()
    print(
        json.dumps(
            {
                "completed": done,
                "mirror_s": round(elapsed, 3),
                "rss_before_mb": round(baseline_mb, 1),
                "peak_rss_mb": round(peak_mb, 1),
            }
        )
    )


if __name__ == "__main__":
    main()
