"""Cold start of each Lambda handler, against a naive baseline, in an environment shaped like the Lambda's.

    python -m bench.cold_start [--runs 11] [--only generate_video,health] [--out bench/results/cold_start.json]

Environment: the Lambda's own requirement set (``infra.lambda_build``: the deps and billing layers; PyAV is only
imported while mirroring) installed for CPython 3.12 on this machine's architecture into build/bench/, byte-
compiled like the layers, and our code compiled like the code zip. Each run is a fresh ``python3.12 -I -S``
whose sys.path is [repo, site] (Lambda: /var/task, /opt/python), so nothing of the dev venv leaks in.

Per handler, the median over ``--runs`` fresh interpreters of
- ``init_ms``: import the module and build the handler (app + Mangum adapter) - Lambda's init phase;
- ``first_event_ms``: init plus one unauthenticated API Gateway v2 event for the function's route (401, or what
  the function answers without a token) - the fastest first answer;
- ``first_request_ms``: init plus one authenticated event against a real Postgres (embedded, over its unix
  socket): the token is verified, the settings load, the pool connects and the function runs (``REQUESTS``
  says what each one asks; ``first_request_status`` what it answered) - what a user waits for on a cold start,
  short of network latency.
The baseline is the same handler in a naive build that imports FastAPI, boto3, stripe and fal-client eagerly
(``naive_init_ms``, ``naive_first_request_ms``), those four libraries alone (``libraries_ms``) and FastAPI +
Mangum alone (``framework_ms``, the floor of any handler built on them). Package sizes come from
build/lambda/report.json (``make check-deploy``).
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from infra import lambda_build

ROOT = Path(__file__).resolve().parent.parent
SITE = ROOT / "build" / "bench"
OUT = ROOT / "bench" / "results" / "cold_start.json"
GOAL_MS = 300.0
GOAL_RATIO = 1 / 3
NAIVE = "import fastapi, boto3, stripe, fal_client"
SECRET = "bench-secret-bench-secret-bench-secret-0123"
#: The first event of each function without an HTTP route.
NON_HTTP_EVENTS: dict[str, dict[str, Any]] = {
    # the scheduled reconciler: one EventBridge event, a pass over an empty database
    "reconcile": {"version": "0", "source": "aws.events", "detail-type": "Scheduled Event"},
    # fal-webhook's hand-off of a job that is not there: claim_mirror finds nothing to copy
    "mirror_video": {"job_id": "00000000-0000-4000-8000-000000000001"},
    # the scheduled sender of outgoing webhooks: one EventBridge event, nothing due on an empty database
    "deliver_webhooks": {"version": "0", "source": "aws.events", "detail-type": "Scheduled Event"},
}
#: What each function's first authenticated request asks (query, body); everything else is its route's default.
REQUESTS: dict[str, tuple[dict[str, str], dict[str, Any] | None]] = {
    "get_video_status": ({"job_id": "00000000-0000-4000-8000-000000000001"}, None),  # 404, from the database
    "cancel_video": ({}, {"job_id": "00000000-0000-4000-8000-000000000001"}),  # 404, from the database
    "create_checkout_session": ({}, {"pack_id": "no-such-pack"}),
    # the whole billed path: token, body, image URL check, one procedure call -> 402 (a new user has no credits)
    "generate_video": ({}, {"model_id": "kling-2.1-standard", "image_url": "https://93.184.215.14/a.png"}),
    "quote": ({}, {"model_id": "kling-2.1-standard", "image_url": "https://93.184.215.14/a.png"}),
    "create_upload_url": ({}, {"content_type": "image/png", "size": 1000, "sha256": "ab" * 32}),
}
_PROBE = r"""
import json, sys, time
t0 = time.perf_counter()
mode, module, event = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
if mode == "framework":
    import fastapi, mangum
    print(json.dumps({"init_ms": (time.perf_counter() - t0) * 1000})); sys.exit()
if mode.startswith("naive") or mode == "libraries":
    import fastapi, boto3, stripe, fal_client
if mode == "libraries":
    print(json.dumps({"init_ms": (time.perf_counter() - t0) * 1000})); sys.exit()
import importlib
handler = importlib.import_module("functions." + module).handler
prepare = getattr(handler, "prepare", None)
if prepare is not None:
    prepare()
t1 = time.perf_counter()
result = {"init_ms": (t1 - t0) * 1000}
if event and mode != "naive":
    response = handler(event, None)
    result.update(first_event_ms=(time.perf_counter() - t0) * 1000, status=response.get("statusCode", "ok"))
print(json.dumps(result))
"""


def _machine_platforms() -> list[str]:
    arch = {"arm64": "aarch64", "AMD64": "x86_64"}.get(platform.machine(), platform.machine())
    return [p.replace("aarch64", arch) for p in lambda_build.PLATFORMS]


def prepare_site(python: str) -> Path:
    """The Lambda requirement set for this machine's architecture, installed and compiled for ``python``.

    FastAPI is added for the naive baseline only (no function imports it).
    """
    import tomllib

    sets = lambda_build.requirement_sets()
    local = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]["local"]
    requirements = sets["deps"] + sets["billing"] + [r for r in local if r.startswith("fastapi==")]
    site = SITE / f"site-{platform.machine()}"
    stamp = site / ".requirements"
    key = json.dumps([requirements, python])
    if stamp.exists() and stamp.read_text() == key:
        return site
    subprocess.run(["rm", "-rf", str(site)], check=True)
    platforms = [arg for p in _machine_platforms() for arg in ("--platform", p)]
    cmd = [
        sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "--no-compile",
        "--target", str(site), "--implementation", "cp", "--python-version", lambda_build.PYTHON_VERSION,
        "--only-binary=:all:", *platforms, *requirements,
    ]  # fmt: skip
    subprocess.run(cmd, check=True)
    subprocess.run(
        [python, "-m", "compileall", "-q", "-j", "0", "--invalidation-mode", "unchecked-hash", str(site)],
        check=True,
    )
    stamp.write_text(key)
    return site


def first_events() -> dict[str, dict[str, Any] | None]:
    """Module name -> an unauthenticated API Gateway v2 event for its first route (None: not an HTTP function)."""
    from tests.lambda_support import http_event

    events: dict[str, dict[str, Any] | None] = {}
    for path in sorted((ROOT / "functions").glob("[a-z]*.py")):
        endpoint = getattr(importlib.import_module(f"functions.{path.stem}"), "endpoint", None)
        if endpoint is None:
            events[path.stem] = None
            continue
        body: dict[str, Any] | None = {} if endpoint.method == "POST" else None
        events[path.stem] = http_event(endpoint.method, endpoint.path, body=body)
    return events


def run_once(
    python: str,
    site: Path,
    mode: str,
    module: str,
    event: dict[str, Any] | None,
    database_url: str = "",
) -> dict[str, Any]:
    """One fresh interpreter: import and initialise (and maybe invoke); returns its timings."""
    with tempfile.TemporaryDirectory(prefix="i2v-cold-") as home:
        env = {
            "DATABASE_URL": database_url,
            "PATH": "/usr/bin:/bin",
            "HOME": home,
            "I2V_HOME": home,
            "LOCAL_ENGINE": "false",
            "DB_POOL_SIZE": "1",
            "SUPABASE_JWT_SECRET": SECRET,
            "FAL_KEY": "bench-key-id:bench-key-secret",  # fal models are available (nothing reaches fal)
            "FAL_JWKS_URL": "http://127.0.0.1:9/.well-known/jwks.json",
            "LOG_LEVEL": "WARNING",
        }
        script = f"import sys; sys.path[:0] = [{str(ROOT)!r}, {str(site)!r}]\n" + _PROBE
        proc = subprocess.run(
            [python, "-I", "-S", "-c", script, mode, module, json.dumps(event)],
            capture_output=True,
            text=True,
            env=env,
            cwd=home,
            check=True,
        )
    result: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result


def _median(values: list[float]) -> float:
    return round(statistics.median(values), 1)


def authenticated_events() -> dict[str, dict[str, Any]]:
    """Module name -> an authenticated API Gateway v2 event for its route (see REQUESTS)."""
    import uuid

    from shared.auth import mint_dev_token
    from shared.settings import Settings
    from tests.lambda_support import http_event

    token = mint_dev_token(uuid.uuid4(), settings=Settings(supabase_jwt_secret=SECRET))
    events: dict[str, dict[str, Any]] = {}
    for path in sorted((ROOT / "functions").glob("[a-z]*.py")):
        endpoint = getattr(importlib.import_module(f"functions.{path.stem}"), "endpoint", None)
        if endpoint is None:  # a function without a route: its own event (NON_HTTP_EVENTS)
            events[path.stem] = NON_HTTP_EVENTS[path.stem]
            continue
        query, body = REQUESTS.get(path.stem, ({}, {} if endpoint.method == "POST" else None))
        headers = {"authorization": f"Bearer {token}", "idempotency-key": f"bench-{uuid.uuid4()}"}
        events[path.stem] = http_event(
            endpoint.method, endpoint.path, query=query, headers=headers, body=body
        )
    return events


def measure(python: str, site: Path, runs: int, only: set[str] | None, database_url: str) -> dict[str, Any]:
    """Medians per handler and for the baselines."""
    events = first_events()
    requests = authenticated_events()
    handlers: dict[str, Any] = {}
    for module, event in events.items():
        if only and module not in only:
            continue
        lean = [run_once(python, site, "lean", module, event) for _ in range(runs)]
        naive = [run_once(python, site, "naive", module, None) for _ in range(runs)]
        row: dict[str, Any] = {
            "init_ms": _median([r["init_ms"] for r in lean]),
            "naive_init_ms": _median([r["init_ms"] for r in naive]),
        }
        if event is not None:
            row["first_event_ms"] = _median([r["first_event_ms"] for r in lean])
            row["first_event_status"] = lean[0]["status"]
        request = requests.get(module)
        if request is not None:
            served = [run_once(python, site, "request", module, request, database_url) for _ in range(runs)]
            naive_served = [
                run_once(python, site, "naive_request", module, request, database_url) for _ in range(runs)
            ]
            row["first_request_ms"] = _median([r["first_event_ms"] for r in served])
            row["first_request_status"] = served[0]["status"]
            row["naive_first_request_ms"] = _median([r["first_event_ms"] for r in naive_served])
        row["ratio_to_naive"] = round(row["init_ms"] / row["naive_init_ms"], 2)
        row["meets_goal"] = row["init_ms"] <= GOAL_MS and row["ratio_to_naive"] <= GOAL_RATIO
        handlers[module] = row
        print(
            f"{module:26} init {row['init_ms']:6.1f} ms  naive {row['naive_init_ms']:6.1f} ms"
            f"  first request {row.get('first_request_ms', 0):6.1f} ms ({row.get('first_request_status', '-')})",
            flush=True,
        )
    libraries = [run_once(python, site, "libraries", "health", None)["init_ms"] for _ in range(runs)]
    framework = [run_once(python, site, "framework", "health", None)["init_ms"] for _ in range(runs)]
    return {"handlers": handlers, "libraries_ms": _median(libraries), "framework_ms": _median(framework)}


def main(argv: list[str] | None = None) -> None:
    """Measure and write the JSON results."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--runs", type=int, default=11, help="fresh interpreters per measurement (median)")
    parser.add_argument("--only", default="", help="comma-separated handler modules (default: all)")
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args(argv)
    python = lambda_build.lambda_python() or sys.executable
    lambda_build.compile_tree([ROOT / "functions", ROOT / "shared"], checked=True)
    site = prepare_site(python)
    started = time.monotonic()
    only = set(filter(None, args.only.split(","))) or None
    with tempfile.TemporaryDirectory(prefix="i2v-cold-db-") as data:
        from infra.postgres import EmbeddedPostgres
        from shared import db as dbmod
        from shared.migrations import migrate, sync_models

        postgres = EmbeddedPostgres(Path(data))
        try:
            database = dbmod.configure(postgres.url)
            migrate(database)
            sync_models(database)
            database.close()
            results = measure(python, site, args.runs, only, postgres.url)
        finally:
            postgres.stop()
    report = ROOT / "build" / "lambda" / "report.json"
    inits = [h["init_ms"] for h in results["handlers"].values()]
    served = [h["first_request_ms"] for h in results["handlers"].values() if "first_request_ms" in h]
    naive_served = [
        h["naive_first_request_ms"] for h in results["handlers"].values() if "first_request_ms" in h
    ]
    output = {
        "what": "median ms over fresh interpreters: import + handler init (Lambda's init phase), see the docstring",
        "python": subprocess.run([python, "-VV"], capture_output=True, text=True, check=True).stdout.strip(),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores",
        "runs": args.runs,
        "goal": {"init_ms_at_most": GOAL_MS, "ratio_to_naive_at_most": round(GOAL_RATIO, 3)},
        "summary": {
            "handler_init_ms_median": _median(inits),
            "handler_init_ms_max": round(max(inits), 1),
            "naive_init_ms_median": _median([h["naive_init_ms"] for h in results["handlers"].values()]),
            "first_request_ms_median": _median(served),
            "first_request_ms_max": round(max(served), 1),
            "naive_first_request_ms_median": _median(naive_served),
            "libraries_only_ms": results["libraries_ms"],
            "fastapi_and_mangum_only_ms": results["framework_ms"],
        },
        **results,
        "package": json.loads(report.read_text()) if report.exists() else "run `make check-deploy` first",
        "seconds": round(time.monotonic() - started, 1),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(output, indent=2) + "\n")
    print(json.dumps(output["summary"], indent=2))


if __name__ == "__main__":
    main()
