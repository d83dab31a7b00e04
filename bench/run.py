"""``make bench``: run every benchmark and save its JSON under bench/results/ (a summary is printed)."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"
BENCHMARKS = {
    "engine": ["bench.engine_fps"],
    "api_load": ["bench.api_load"],
    "teams_load": ["bench.teams_load"],
    "mirror": ["bench.mirror"],
    "bulk_makespan": ["bench.bulk_makespan"],
    "listing": ["bench.listing"],
    "cold_start": ["bench.cold_start"],
    "hostile_bodies": ["bench.hostile_bodies"],
    "generate_tps": ["bench.generate_tps"],
    "soak": ["bench.soak"],
    "webhook_latency": ["bench.webhook_latency"],
}


def main() -> None:
    """Run the chosen benchmarks (all by default), each in its own process."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "names", nargs="*", choices=[*BENCHMARKS, []], help="benchmarks to run (default: all)"
    )
    args = parser.parse_args()
    failed = []
    for name in args.names or list(BENCHMARKS):
        module = BENCHMARKS[name][0]
        if not (Path(__file__).resolve().parent.parent / (module.replace(".", "/") + ".py")).exists():
            print(f"== {name}: not present, skipped")
            continue
        print(f"== {name}", flush=True)
        started = time.monotonic()
        proc = subprocess.run([sys.executable, "-m", module], capture_output=True, text=True)
        print(f"   {'ok' if proc.returncode == 0 else 'FAILED'} in {time.monotonic() - started:.0f} s")
        if proc.returncode != 0:
            failed.append(name)
            print(proc.stderr[-3000:])
    print("results:", ", ".join(sorted(p.name for p in RESULTS.glob("*.json"))))
    if failed:
        sys.exit(f"failed: {', '.join(failed)}")
    summary = {p.stem: json.loads(p.read_text()) for p in RESULTS.glob("*.json")}
    print(json.dumps({k: sorted(v) for k, v in summary.items()}, indent=1)[:2000])


if __name__ == "__main__":
    main()
