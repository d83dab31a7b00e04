"""``i2v serve`` as a real process: signals stop it cleanly (Postgres included), a SIGKILL leaves nothing behind
at the next start, and ``--workers N`` serves from N processes with one local engine."""

from __future__ import annotations

import http.client
import json
import os
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest

from infra.server import free_port
from shared.auth import mint_dev_token
from shared.settings import Settings
from tests.conftest import Caller, wait_for

ROOT = Path(__file__).resolve().parent.parent
LONG = {
    "model_id": "local-motion",
    "prompt": "slow zoom in",
    "settings": {"duration": 10, "resolution": "1080p"},
}
SHORT = {"model_id": "local-motion", "prompt": "pan left", "settings": {"duration": 1, "resolution": "480p"}}


@dataclass
class Served:
    """One ``i2v serve`` process and where it keeps its state and logs."""

    proc: subprocess.Popen[bytes]
    home: Path
    port: int
    log: Path
    clients: list[httpx.Client] = field(default_factory=list)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def lines(self) -> list[dict[str, Any]]:
        """The JSON log lines written so far."""
        out = []
        for line in self.log.read_text(errors="replace").splitlines():
            if line.startswith("{"):
                out.append(json.loads(line))
        return out

    def caller(self) -> Caller:
        """A new user of this server (SIGNUP_CREDITS gives it credits)."""
        user = uuid.uuid4()
        token = mint_dev_token(user, settings=Settings(i2v_home=self.home))
        http = httpx.Client(base_url=self.base_url, headers={"Authorization": f"Bearer {token}"}, timeout=60)
        self.clients.append(http)
        return Caller(user, token, http)

    def workers(self) -> list[psutil.Process]:
        """The HTTP worker processes (multiprocessing children) of the server."""
        children = psutil.Process(self.proc.pid).children()
        return [c for c in children if "spawn_main" in " ".join(c.cmdline())]


def postgres_processes(home: Path) -> list[psutil.Process]:
    """Running postgres processes whose data directory is ``home``'s."""
    pgdata = str((home / "pgdata").resolve())
    found = []
    for proc in psutil.process_iter(["name", "cmdline"]):
        cmdline = proc.info.get("cmdline") or []
        if cmdline and "postgres" in os.path.basename(cmdline[0]) and pgdata in cmdline:
            found.append(proc)
    return found


def start_serve(home: Path, log: Path, *args: str, port: int = 0, **env: str) -> Served:
    """Start ``python -m client serve`` (on a free port unless given) with its own I2V_HOME; return once /health
    answers."""
    port = port or free_port()
    environment = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "STORAGE_BUCKET")}
    environment.update(
        {
            "I2V_HOME": str(home),
            "LOG_LEVEL": "INFO",
            "SIGNUP_CREDITS": "100",
            "LOCAL_ENGINE": "true",
            "LOCAL_ENGINE_WORKERS": "2",
            "RECONCILE_INTERVAL_S": "3600",
            **env,
        }
    )
    with log.open("ab") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "client", "serve", "--port", str(port), *args],
            cwd=ROOT,
            env=environment,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    served = Served(proc, home, port, log)

    def healthy() -> bool:
        if proc.poll() is not None:
            raise AssertionError(f"i2v serve exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
        try:
            return httpx.get(f"{served.base_url}/functions/v1/health", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    wait_for(healthy, "i2v serve to answer", timeout=120)
    return served


@pytest.fixture
def home(tmp_path: Path) -> Iterator[Path]:
    """An I2V_HOME for the servers of one test; any postgres still running on it is stopped afterwards."""
    yield tmp_path / "home"
    for proc in postgres_processes(tmp_path / "home"):
        proc.terminate()


@contextmanager
def serving(home: Path, *args: str, log: str = "serve.log", port: int = 0, **env: str) -> Iterator[Served]:
    """A server for one test; if the test leaves it running, it is killed afterwards."""
    served = start_serve(home, home.parent / log, *args, port=port, **env)
    try:
        yield served
    finally:
        for client in served.clients:
            client.close()
        if served.proc.poll() is None:
            served.proc.kill()
            served.proc.wait(30)


def stop(served: Served, sig: signal.Signals) -> int:
    """Send ``sig`` and wait (bounded) for the server to exit; its exit status."""
    served.proc.send_signal(sig)
    return served.proc.wait(120)


@pytest.mark.parametrize(
    ("sig", "workers"), [(signal.SIGTERM, 1), (signal.SIGINT, 1), (signal.SIGTERM, 2), (signal.SIGINT, 2)]
)
def test_a_signal_stops_the_server_cleanly(home: Path, sig: signal.Signals, workers: int) -> None:
    """SIGTERM (systemd, docker stop) and SIGINT both let a request in flight finish, stop the workers and the
    embedded Postgres, and end with exit status 0."""
    with serving(home, *(["--workers", str(workers)] if workers > 1 else [])) as served:
        assert postgres_processes(served.home)
        workers_before = served.workers()
        assert len(workers_before) == (workers if workers > 1 else 0)
        caller = served.caller()
        body = json.dumps({"content_type": "image/jpeg", "size": 1000, "sha256": "ab" * 32}).encode()
        conn = http.client.HTTPConnection("127.0.0.1", served.port, timeout=60)
        conn.putrequest("POST", "/functions/v1/create-upload-url")
        for name, value in {
            "Authorization": f"Bearer {caller.token}",
            "Content-Type": "application/json",
            "Content-Length": str(len(body)),
            "Expect": "100-continue",
        }.items():
            conn.putheader(name, value)
        conn.endheaders()
        assert conn.sock is not None
        conn.sock.sendall(body[:10])
        # "100 Continue" says the server is reading this request's body: the request is in flight.
        interim = b""
        while not interim.endswith(b"\r\n\r\n"):
            interim += conn.sock.recv(1)
        assert interim.startswith(b"HTTP/1.1 100"), interim

        served.proc.send_signal(sig)
        conn.sock.sendall(body[10:])
        answer = conn.getresponse()
        assert answer.status == 200, answer.read()
        assert json.loads(answer.read())["upload_url"]
        conn.close()

        assert served.proc.wait(120) == 0
        assert not postgres_processes(served.home)
        assert not [p for p in workers_before if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
        assert any(line["message"] == f"stopping on {sig.name}" for line in served.lines())


def test_after_sigkill_the_next_start_removes_scratch_space_and_resumes(home: Path) -> None:
    """After kill -9 mid-render, the next start deletes the dead render's scratch directory and takes the job
    up again; SIGTERM then interrupts that render, gives the job back and still stops Postgres (exit 0)."""
    with serving(home) as served:
        caller = served.caller()
        job_id = caller.generate(image_url=caller.upload(), **LONG).json()["job_id"]
        work = served.home / "work"
        scratch = wait_for(lambda: list(work.glob(f"job-*-{job_id}-*")), "the render's scratch directory")
        wait_for(lambda: caller.status(job_id).json()["status"] == "processing", "the job to be processing")
        served.proc.kill()
        served.proc.wait(30)
        assert all(path.exists() for path in scratch)

    with serving(home, log="restart.log", port=served.port) as again:  # image URLs name the port
        assert not any(path.exists() for path in scratch)
        caller = again.caller()
        rerun = wait_for(
            lambda: [p for p in work.glob(f"job-*-{job_id}-*") if p not in scratch], "the job to resume"
        )
        assert rerun
        assert stop(again, signal.SIGTERM) == 0
        assert not postgres_processes(again.home)
        interrupted = [
            line
            for line in again.lines()
            if line.get("job_id") == job_id and line["message"].startswith("render interrupted by shutdown")
        ]
        assert interrupted and interrupted[0]["level"] == "INFO"
        assert not any(line["level"] in ("ERROR", "CRITICAL") for line in again.lines())


def _owner(served: Served, conn: http.client.HTTPConnection) -> int:
    """The pid of the worker process holding ``conn`` (after a request on it has been answered)."""
    assert conn.sock is not None
    local_port = conn.sock.getsockname()[1]
    for worker in served.workers():
        for c in worker.net_connections(kind="tcp"):
            if c.laddr and c.raddr and c.laddr.port == served.port and c.raddr.port == local_port:
                return worker.pid
    raise AssertionError("no worker holds the connection")


def _call(
    conn: http.client.HTTPConnection, method: str, path: str, token: str, body: Any = None
) -> tuple[int, Any]:
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    if method == "POST":
        headers["Idempotency-Key"] = uuid.uuid4().hex
    conn.request(method, path, body=json.dumps(body) if body is not None else None, headers=headers)
    resp = conn.getresponse()
    return resp.status, json.loads(resp.read() or b"null")


def _scraped(conn: http.client.HTTPConnection, name: str) -> float:
    """The total of one i2v metric in a /metrics answer on ``conn`` (0 when it has no series yet)."""
    from prometheus_client.parser import text_string_to_metric_families

    conn.request("GET", "/metrics")
    text = conn.getresponse().read().decode()
    families = {f.name: f for f in text_string_to_metric_families(text)}
    return sum(sample.value for sample in families[name].samples if sample.name == name + "_total")


def test_workers_share_one_socket_and_one_engine(home: Path) -> None:
    """With --workers 2 two processes answer on the one port, the engine and housekeeping start once, and a job
    created, or canceled, through either worker reaches the engine: it completes, or its render stops. /metrics,
    whichever worker answers, counts the jobs of both (started in each, completed in the engine's)."""
    with serving(home, "--workers", "2") as served:
        workers = served.workers()
        assert len(workers) == 2
        caller = served.caller()
        image_url = caller.upload()
        by_worker: dict[int, http.client.HTTPConnection] = {}
        for _ in range(100):
            conn = http.client.HTTPConnection("127.0.0.1", served.port, timeout=60)
            assert _call(conn, "GET", "/functions/v1/health", caller.token)[0] == 200
            pid = _owner(served, conn)
            if pid in by_worker:
                conn.close()
            else:
                by_worker[pid] = conn
            if len(by_worker) == 2:
                break
        assert len(by_worker) == 2, "every connection went to the same worker"

        short_jobs = []
        for conn in by_worker.values():
            status, body = _call(
                conn, "POST", "/functions/v1/generate-video", caller.token, {**SHORT, "image_url": image_url}
            )
            assert status == 202, body
            short_jobs.append(body["job_id"])
        for job_id in short_jobs:
            wait_for(lambda j=job_id: caller.status(j).json()["status"] == "completed", "the job to complete")
        for conn in by_worker.values():
            for name in ("i2v_jobs_started", "i2v_jobs_completed"):
                wait_for(lambda c=conn, n=name: _scraped(c, n) == 2, f"{name} of both workers", timeout=30)

        for conn in by_worker.values():
            status, body = _call(
                conn, "POST", "/functions/v1/generate-video", caller.token, {**LONG, "image_url": image_url}
            )
            assert status == 202, body
            job_id = body["job_id"]
            wait_for(lambda j=job_id: caller.status(j).json().get("progress"), "the render to be under way")
            status, body = _call(conn, "POST", "/functions/v1/cancel-video", caller.token, {"job_id": job_id})
            assert status == 200 and body["status"] == "canceled", body

            def stopped(j: str = job_id) -> list[dict[str, Any]]:
                return [
                    line
                    for line in served.lines()
                    if line.get("job_id") == j and line["message"].startswith("render stopped")
                ]

            line = wait_for(stopped, "the engine to stop the canceled render")[0]
            assert line["level"] == "INFO" and line["frame"] < line["frames"]

        for conn in by_worker.values():
            conn.close()
        started = [line for line in served.lines() if line["message"] == "local engine started"]
        assert len(started) == 1
        assert not any(line["level"] in ("ERROR", "CRITICAL") for line in served.lines())
        assert stop(served, signal.SIGTERM) == 0
        assert not postgres_processes(served.home)
