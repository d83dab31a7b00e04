"""generate-video throughput against the database's own: the billed request path over HTTP versus pgbench
running the same ``start_generation`` procedure call, on the same Postgres and the same machine.

    python -m bench.generate_tps [--duration 10] [--rounds 3] [--workers 1 2] [--no-profile]

For each worker count, ``i2v serve --workers N`` runs as its own process with LOCAL_ENGINE_WORKERS=0: every
request takes the whole billed path (token, body, model and image checks, the one procedure call that checks
the Idempotency-Key, debits and creates the job, the hand-off to the engine) but no video is rendered, so the
renders do not compete for the cores with what is measured. The workers share 10 database connections
(DB_POOL_SIZE = 10 / N). 32 keep-alive connections (one user each, one uploaded image each, a new
Idempotency-Key per request) send generate-video back to back from a separate process (bench._http_load).
Then pgbench runs the same call with the same arguments for the same 32 users with 32 clients. The two
alternate for a few rounds (the machine may be shared); the metric is generate-video TPS / pgbench TPS of the
median round. Without pgbench (pgserver's bin directory, PATH) the pgbench side is reported as skipped.

The profile (``profile`` in the JSON) is the same load against one in-process server with cProfile on every
thread (CPU time per thread), summarised per billed request: the top functions and where the time goes by
area (HTTP server, authentication, request parsing, database driver, logging, ...).
"""

from __future__ import annotations

import argparse
import cProfile
import json
import os
import pstats
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

from bench._http_load import encode_templates, request_bytes
from bench._serve import Server, bench_user, cpu_seconds, free_port, serve, start_load
from bench._stack import EXAMPLES, RESULTS, machine, upload

CONNECTIONS = 32
SIGNUP_CREDITS = 100_000_000
SETTINGS = {"duration": 1, "resolution": "480p", "aspect_ratio": "16:9"}
BODY = {"model_id": "local-motion", "prompt": "slow zoom in", "settings": SETTINGS}
#: Database connections in all: each of N workers gets DB_POOL_SIZE = this / N (10, the default, for one worker).
TOTAL_DB_CONNECTIONS = 10
METRIC_NOTE = (
    "ratio = generate-video req/s / pgbench tps, both at 32 connections against the same Postgres, measured in "
    "alternating rounds (HTTP, then pgbench) and reported for the median round. pgbench runs in its default "
    "simple-query mode; the server prepares its calls (extended protocol), so ratio_to_pgbench_prepared (pgbench "
    "-M prepared) is given too. cpu_ratio divides pgbench's CPU per transaction (Postgres + pgbench) by "
    "generate-video's CPU per request (server + Postgres + load generator): the throughput ratio with the cores "
    "to themselves, which other work on a shared machine disturbs less"
)
ENGINE_NOTE = (
    "LOCAL_ENGINE_WORKERS=0: local-motion jobs are validated, debited, created and handed to the engine as on "
    "any request, but never rendered, so renders do not compete with the billed path for the 2 cores"
)


def pgbench_binary() -> str | None:
    """pgbench from the pgserver wheel's PostgreSQL, else from PATH (Debian: postgresql-client); None if absent."""
    try:
        from pgserver._commands import POSTGRES_BIN_PATH  # type: ignore[import-untyped,unused-ignore]

        bundled = Path(POSTGRES_BIN_PATH) / "pgbench"
        if bundled.exists():
            return str(bundled)
    except ImportError:
        pass
    return shutil.which("pgbench")


def _prepare_users(server: Server, count: int) -> list[tuple[uuid.UUID, str, str]]:
    """``count`` users, each with a verified upload and one job made; (user, token, image_url) for each."""
    data = (EXAMPLES / "landscape.jpg").read_bytes()
    users = []
    for index in range(count):
        user = bench_user(index)
        with server.client(user) as client:
            image_url = upload(client, data)
            first = client.post(
                "/functions/v1/generate-video",
                json={**BODY, "image_url": image_url},
                headers={"Idempotency-Key": f"warm-{uuid.uuid4().hex}"},
            )
            first.raise_for_status()
            users.append((user, str(client.headers["authorization"]).split(" ", 1)[1], image_url))
    return users


def _templates(server: Server, users: list[tuple[uuid.UUID, str, str]]) -> list[list[bytes]]:
    run = uuid.uuid4().hex[:8]
    host = f"127.0.0.1:{server.port}"
    return [
        [
            request_bytes(
                "POST",
                "/functions/v1/generate-video",
                host,
                {
                    "Authorization": f"Bearer {token}",
                    "Content-Type": "application/json",
                    "Idempotency-Key": f"{run}-{{seq}}",
                },
                json.dumps({**BODY, "image_url": image_url}).encode(),
            )
        ]
        for _, token, image_url in users
    ]


def measure_http(
    server: Server, templates: list[list[bytes]], duration: float, warmup: float
) -> dict[str, Any]:
    """generate-video at CONNECTIONS connections; throughput, latency and CPU per request on each side."""
    spec = {
        "host": "127.0.0.1",
        "port": server.port,
        "connections": CONNECTIONS,
        "duration_s": duration,
        "warmup_s": warmup,
        "templates": encode_templates(templates),
    }
    proc = start_load(spec)
    time.sleep(warmup)
    import psutil

    servers, postgres, client = server.processes(), server.postgres_processes(), [psutil.Process(proc.pid)]
    cpu0 = cpu_seconds(servers), cpu_seconds(postgres), cpu_seconds(client)
    time.sleep(duration)
    cpu1 = cpu_seconds(servers), cpu_seconds(postgres), cpu_seconds(client)
    assert proc.stdout is not None
    out = proc.stdout.read()
    proc.wait(120)
    result: dict[str, Any] = json.loads(out)
    requests = max(1, result["requests"])
    result["server_cpu_ms_per_request"] = round((cpu1[0] - cpu0[0]) * 1000 / requests, 3)
    result["postgres_cpu_ms_per_request"] = round((cpu1[1] - cpu0[1]) * 1000 / requests, 3)
    result["load_generator_cpu_ms_per_request"] = round((cpu1[2] - cpu0[2]) * 1000 / requests, 3)
    result["server_cores_busy"] = round((cpu1[0] - cpu0[0]) / duration, 2)
    result["postgres_cores_busy"] = round((cpu1[1] - cpu0[1]) / duration, 2)
    return result


def _pgbench_script(server: Server, users: list[tuple[uuid.UUID, str, str]]) -> str:
    """The generate-video procedure call, as generate-video makes it, for pgbench client ``:client_id``."""
    user, _, image_url = users[0]
    prefix, _, rest = image_url.partition(f"/{user}/")
    sha, ext = rest.split(".", 1)
    with server.client(user) as client:
        models = client.get("/functions/v1/list-models").json()["models"]
    model_id = next(m["id"] for m in models if m["slug"] == "local-motion")
    settings = json.dumps(SETTINGS, separators=(",", ":"))
    return (
        "select start_generation("
        "p_user => md5('bench-' || :client_id)::uuid, "
        "p_endpoint => 'POST /functions/v1/generate-video', "
        "p_key => gen_random_uuid()::text, "
        "p_fingerprint => encode(sha256(convert_to(gen_random_uuid()::text, 'UTF8')), 'hex'), "
        f"p_model_id => '{model_id}'::uuid, p_model_slug => 'local-motion', p_provider => 'local', "
        "p_prompt => 'slow zoom in', "
        f"p_image_url => '{prefix}/' || md5('bench-' || :client_id)::uuid::text || '/{sha}.{ext}', "
        f"p_settings => '{settings}'::jsonb, p_cost => 1, p_signup_credits => {SIGNUP_CREDITS}, "
        f"p_ttl_s => 86400, p_hold_s => 0, p_upload_sha => '{sha}');\n"
    )


def measure_pgbench(
    server: Server, users: list[tuple[uuid.UUID, str, str]], duration: float, mode: str = "simple"
) -> dict[str, Any]:
    """pgbench with CONNECTIONS clients running the same procedure call; its TPS (or why it was skipped)."""
    binary = pgbench_binary()
    if binary is None:
        return {"skipped": "pgbench not found (pgserver's bin directory, PATH; Debian: postgresql-client)"}
    import psycopg

    script = _pgbench_script(server, users)
    with psycopg.connect(server.database_url, autocommit=True) as conn:  # the call works as generate-video's
        row = conn.execute(script.replace(":client_id", "0").encode()).fetchone()
        assert row is not None and row[0]["outcome"] == "created", row
    with tempfile.NamedTemporaryFile("w", suffix=".sql", delete=False) as fh:
        fh.write(script)
    command = [binary, "-n", "-M", mode, "-c", str(CONNECTIONS), "-j", str(os.cpu_count() or 1)]
    import psutil

    try:
        proc = subprocess.Popen(
            [*command, "-T", str(int(duration)), "-f", fh.name, server.database_url],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        time.sleep(1.5)  # its connections are open: their backends exist
        postgres, client = server.postgres_processes(), [psutil.Process(proc.pid)]
        cpu0, t0 = (cpu_seconds(postgres), cpu_seconds(client)), time.perf_counter()
        time.sleep(max(1.0, duration - 3))
        cpu1, t1 = (cpu_seconds(postgres), cpu_seconds(client)), time.perf_counter()
        stdout, stderr = proc.communicate(timeout=duration + 60)
    finally:
        os.unlink(fh.name)
    tps = re.search(r"tps = ([\d.]+) \(without initial connection time\)", stdout)
    latency = re.search(r"latency average = ([\d.]+) ms", stdout)
    failed = re.search(r"number of failed transactions: (\d+)", stdout)
    assert tps is not None, stdout + stderr
    transactions = float(tps.group(1)) * (t1 - t0)
    return {
        "mode": mode,
        "tps": round(float(tps.group(1)), 1),
        "postgres_cpu_ms_per_transaction": round((cpu1[0] - cpu0[0]) * 1000 / transactions, 3),
        "pgbench_cpu_ms_per_transaction": round((cpu1[1] - cpu0[1]) * 1000 / transactions, 3),
        "latency_avg_ms": float(latency.group(1)) if latency else None,
        "failed_transactions": int(failed.group(1)) if failed else None,
    }


def _cpu_ratio(http: dict[str, Any], pgbench: dict[str, Any]) -> float | None:
    """pgbench's CPU per transaction (Postgres + pgbench) / generate-video's CPU per request (server + Postgres +
    load generator): the throughput ratio both would have with the cores to themselves."""
    if not pgbench.get("tps"):
        return None
    per_request = (
        http["server_cpu_ms_per_request"]
        + http["postgres_cpu_ms_per_request"]
        + http["load_generator_cpu_ms_per_request"]
    )
    per_transaction = pgbench["postgres_cpu_ms_per_transaction"] + pgbench["pgbench_cpu_ms_per_transaction"]
    return round(per_transaction / per_request, 3)


def measure(workers: int, duration: float, warmup: float, rounds: int) -> dict[str, Any]:
    """One worker count on one server: ``rounds`` of generate-video over HTTP, each followed by pgbench, so
    that both sides meet the same conditions on a shared machine; the medians and every round."""
    pool = max(2, TOTAL_DB_CONNECTIONS // workers)
    with serve(
        workers,
        LOCAL_ENGINE_WORKERS="0",
        SIGNUP_CREDITS=str(SIGNUP_CREDITS),
        LOG_LEVEL="INFO",
        DB_POOL_SIZE=str(pool),
    ) as server:
        users = _prepare_users(server, CONNECTIONS)
        templates = _templates(server, users)
        samples = []
        for _ in range(rounds):
            http = measure_http(server, templates, duration, warmup)
            pgbench = measure_pgbench(server, users, duration)
            ratio = round(http["req_per_s"] / pgbench["tps"], 3) if pgbench.get("tps") else None
            samples.append(
                {
                    "generate_video": http,
                    "pgbench": pgbench,
                    "ratio": ratio,
                    "cpu_ratio": _cpu_ratio(http, pgbench),
                }
            )
        prepared = measure_pgbench(server, users, duration, mode="prepared")
    middle = sorted(samples, key=lambda r: r["ratio"] or 0)[len(samples) // 2]
    return {
        "workers": workers,
        "db_pool_size_per_worker": pool,
        "generate_video_req_per_s": middle["generate_video"]["req_per_s"],
        "pgbench_tps": middle["pgbench"].get("tps"),
        "ratio": middle["ratio"],
        "ratio_of_rounds": [r["ratio"] for r in samples],
        "cpu_ratio": middle["cpu_ratio"],
        "cpu_ratio_of_rounds": [r["cpu_ratio"] for r in samples],
        "pgbench_prepared_tps": prepared.get("tps"),
        "ratio_to_pgbench_prepared": round(middle["generate_video"]["req_per_s"] / prepared["tps"], 3)
        if prepared.get("tps")
        else None,
        "median_round": middle,
        "rounds": samples,
    }


# --- profile ---------------------------------------------------------------------------------------------

_AREAS = [
    ("HTTP server (uvicorn, h11, asyncio)", ("uvicorn/", "h11/", "asyncio/", "selectors.py", "socket")),
    ("authentication (PyJWT, hmac)", ("jwt/", "shared/auth.py", "hmac.py", "_hashlib", "cryptography")),
    ("database (psycopg, pool, our db layer)", ("psycopg", "shared/db.py", "shared/timing.py")),
    ("logging (records, JSON, redaction)", ("logging/", "shared/logs.py")),
    ("request model and validation (pydantic)", ("pydantic",)),
    ("JSON (encode, decode)", ("json/",)),
    ("edge (shared/web.py: routing, headers, errors)", ("shared/web.py",)),
    (
        "billing path (jobs, images, storage, catalog)",
        (
            "shared/jobs/",
            "shared/media/",
            "shared/providers",
            "functions/",
        ),
    ),
    ("threads and futures (executor hand-off)", ("threading.py", "concurrent/", "queue.py", "contextvars")),
]
_BLOCKING = re.compile(r"method 'get' of '_queue|method 'acquire'|method 'poll'|select|sleep|method 'wait'")


def _area(filename: str) -> str:
    for name, needles in _AREAS:
        if any(n in filename for n in needles):
            return name
    return "other"


def profile(duration: float) -> dict[str, Any]:
    """The billed path under the same load, one in-process server, cProfile (thread CPU time) on every thread."""
    home = Path(tempfile.mkdtemp(prefix="i2v-bench-profile-"))
    os.environ.update(
        {
            "I2V_HOME": str(home),
            "LOCAL_ENGINE_WORKERS": "0",
            "SIGNUP_CREDITS": str(SIGNUP_CREDITS),
            "LOG_LEVEL": "INFO",
            "RECONCILE_INTERVAL_S": "3600",
        }
    )
    if "XDG_RUNTIME_DIR" not in os.environ:  # pgserver's lock lives there, also after `home` is removed
        runtime = Path(tempfile.gettempdir()) / f"i2v-runtime-{os.getuid()}"
        runtime.mkdir(mode=0o700, exist_ok=True)
        os.environ["XDG_RUNTIME_DIR"] = str(runtime)
    os.environ.pop("DATABASE_URL", None)
    import logging

    from infra.server import LocalStack
    from shared.settings import get_settings

    profiles: list[cProfile.Profile] = []

    def start_profiling(frame: Any, event: str, arg: Any) -> None:
        sys.setprofile(None)
        profiler = cProfile.Profile(time.thread_time)
        profiles.append(profiler)
        profiler.enable()

    get_settings.cache_clear()
    threading.setprofile(start_profiling)
    port = free_port()
    stack = LocalStack(get_settings(), port=port)
    stack.start_background()
    devnull = open(os.devnull, "w")  # noqa: SIM115 - the log lines are formatted as always, then dropped
    for handler in logging.getLogger().handlers:
        if isinstance(handler, logging.StreamHandler):
            handler.setStream(devnull)
    try:
        server = Server(None, home, port, home / "none")  # type: ignore[arg-type]
        users = _prepare_users(server, CONNECTIONS)
        templates = _templates(server, users)
        for profiler in profiles:
            profiler.clear()
        started = time.process_time()
        result = json.loads(
            subprocess.run(
                [sys.executable, "-m", "bench._http_load"],
                input=json.dumps(
                    {
                        "host": "127.0.0.1",
                        "port": port,
                        "connections": CONNECTIONS,
                        "duration_s": duration,
                        "warmup_s": 0,
                        "templates": encode_templates(templates),
                    }
                ),
                capture_output=True,
                text=True,
                check=True,
            ).stdout
        )
        process_cpu = time.process_time() - started
    finally:
        threading.setprofile(None)  # type: ignore[arg-type]
        stats: pstats.Stats | None = None
        for profiler in profiles:
            profiler.create_stats()
            if not profiler.stats:  # type: ignore[attr-defined]
                continue
            if stats is None:
                stats = pstats.Stats(profiler)
            else:
                stats.add(profiler)
        stack.shutdown()
        devnull.close()
        shutil.rmtree(home, ignore_errors=True)
    assert stats is not None
    requests = max(1, result["requests"])
    rows = []
    areas: dict[str, float] = {}
    for (filename, line, name), (_, calls, tottime, cumtime, callers) in stats.stats.items():  # type: ignore[attr-defined]
        label = f"{filename}:{line}({name})" if line else name
        if _BLOCKING.search(label):
            continue
        rows.append((tottime, cumtime, calls, label))
        if line or not callers:
            area = _area(filename if line else name)
            areas[area] = areas.get(area, 0.0) + tottime
            continue
        # A built-in (no file of its own) counts for the areas of the functions that called it.
        for (caller_file, _, _), caller_stats in callers.items():
            area = _area(caller_file)
            areas[area] = areas.get(area, 0.0) + caller_stats[2]
    total = sum(areas.values())
    rows.sort(reverse=True)
    root = str(Path(__file__).resolve().parent.parent) + "/"

    def short(label: str) -> str:
        return re.sub(r"^.*?site-packages/", "", label.replace(root, ""))

    return {
        "method": "cProfile with time.thread_time on every thread of one in-process server (LOCAL_ENGINE_WORKERS=0), "
        f"{CONNECTIONS} connections of generate-video for {duration:.0f} s; blocking waits left out",
        "requests": result["requests"],
        "req_per_s_while_profiled": result["req_per_s"],
        "process_cpu_ms_per_request_while_profiled": round(process_cpu * 1000 / requests, 3),
        "profiled_cpu_us_per_request": round(total * 1e6 / requests, 1),
        "by_area": {
            name: {"us_per_request": round(t * 1e6 / requests, 1), "share": round(t / total, 3)}
            for name, t in sorted(areas.items(), key=lambda kv: -kv[1])
        },
        "top_functions": [
            {
                "function": short(label),
                "calls_per_request": round(calls / requests, 2),
                "self_us_per_request": round(tottime * 1e6 / requests, 1),
                "cumulative_us_per_request": round(cumtime * 1e6 / requests, 1),
            }
            for tottime, cumtime, calls, label in rows[:25]
        ],
    }


def main() -> None:
    """CLI entry point."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--duration", type=float, default=10.0, help="seconds measured per run")
    parser.add_argument("--warmup", type=float, default=2.0)
    parser.add_argument("--rounds", type=int, default=3, help="HTTP + pgbench rounds per worker count")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--no-profile", action="store_true")
    parser.add_argument("--out", type=Path, default=RESULTS / "generate_tps.json")
    args = parser.parse_args()
    out: dict[str, Any] = {
        "benchmark": "generate_tps",
        "machine": machine(),
        "connections": CONNECTIONS,
        "request": {"model": "local-motion", "settings": SETTINGS, "engine": ENGINE_NOTE},
        "metric": METRIC_NOTE,
        "runs": [measure(w, args.duration, args.warmup, args.rounds) for w in args.workers],
    }
    for run in out["runs"]:
        http = run["median_round"]["generate_video"]
        print(
            f"workers={run['workers']}: generate-video {run['generate_video_req_per_s']} req/s "
            f"(p50 {http['p50_ms']} ms, {http['status_codes']}, errors {http['errors']}, "
            f"server {http['server_cpu_ms_per_request']} ms CPU/request), pgbench {run['pgbench_tps']} tps, "
            f"ratio {run['ratio']} (rounds {run['ratio_of_rounds']}; to pgbench -M prepared "
            f"{run['ratio_to_pgbench_prepared']}; by CPU {run['cpu_ratio_of_rounds']})"
        )
    if not args.no_profile:
        out["profile"] = profile(args.duration)
        print(json.dumps(out["profile"]["by_area"], indent=1))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=2) + "\n")


if __name__ == "__main__":
    main()
