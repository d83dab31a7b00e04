"""``i2v serve`` as a separate process for benchmarks: its own I2V_HOME, a free loopback port, real HTTP.

Measuring a server in another process keeps the load generator's CPU and the server's apart, and lets
``--workers N`` be measured as it runs in production.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent


def bench_user(index: int) -> uuid.UUID:
    """The benchmark's user number ``index`` (pgbench derives the same id: ``md5('bench-' || :client_id)``)."""
    return uuid.UUID(hashlib.md5(f"bench-{index}".encode()).hexdigest())  # noqa: S324 - an id, not a secret


@dataclass
class Server:
    """A running ``i2v serve`` and how to reach it."""

    proc: subprocess.Popen[bytes]
    home: Path
    port: int
    log: Path

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def database_url(self) -> str:
        """A libpq URL of the embedded Postgres (from its postmaster.pid: port and socket directory)."""
        lines = (self.home / "pgdata" / "postmaster.pid").read_text().splitlines()
        return f"postgresql://postgres:@/postgres?host={lines[4]}&port={lines[3]}"

    def token(self, user: uuid.UUID) -> str:
        """A dev token this server accepts (signed with the secret in its I2V_HOME)."""
        from shared.auth import mint_dev_token
        from shared.settings import Settings

        return mint_dev_token(user, expires_in=6 * 3600, settings=Settings(i2v_home=self.home))

    def client(self, user: uuid.UUID) -> httpx.Client:
        """An authenticated HTTP client for ``user``."""
        return httpx.Client(
            base_url=self.base_url, headers={"Authorization": f"Bearer {self.token(user)}"}, timeout=60
        )

    def processes(self) -> list[Any]:
        """The server's processes: the parent and its HTTP workers."""
        import psutil

        parent = psutil.Process(self.proc.pid)
        workers = [c for c in parent.children() if "spawn_main" in " ".join(c.cmdline())]
        return [parent, *workers]

    def postgres_processes(self) -> list[Any]:
        """The postmaster and its backends."""
        import psutil

        pid = int((self.home / "pgdata" / "postmaster.pid").read_text().splitlines()[0])
        postmaster = psutil.Process(pid)
        return [postmaster, *postmaster.children(recursive=True)]


def free_port() -> int:
    """A loopback TCP port nothing listens on right now."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@contextmanager
def serve(workers: int = 1, **env: str) -> Iterator[Server]:
    """Run ``python -m client serve --workers N`` with a fresh I2V_HOME; stop it with SIGTERM afterwards."""
    home = Path(tempfile.mkdtemp(prefix="i2v-bench-serve-"))
    port = free_port()
    environment = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "STORAGE_BUCKET")}
    environment.setdefault("XDG_RUNTIME_DIR", str(home))
    environment.update({"I2V_HOME": str(home / "home"), "RECONCILE_INTERVAL_S": "3600", **env})
    log = home / "serve.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "client", "serve", "--port", str(port), "--workers", str(workers)],
            cwd=ROOT,
            env=environment,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    server = Server(proc, home / "home", port, log)
    try:
        deadline = time.monotonic() + 120
        while True:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"i2v serve did not start:\n{log.read_text()[-3000:]}")
            try:
                if httpx.get(f"{server.base_url}/functions/v1/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        while workers > 1 and len(server.processes()) < workers + 1:
            time.sleep(0.1)
        yield server
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)
        shutil.rmtree(home, ignore_errors=True)


def run_load(spec: dict[str, Any]) -> dict[str, Any]:
    """Run bench._http_load in its own process with ``spec``; its JSON result."""
    out = subprocess.run(
        [sys.executable, "-m", "bench._http_load"],
        input=json.dumps(spec),
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=True,
    )
    result: dict[str, Any] = json.loads(out.stdout)
    return result


def start_load(spec: dict[str, Any]) -> subprocess.Popen[str]:
    """Start bench._http_load in its own process with ``spec`` (read its JSON result from stdout)."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "bench._http_load"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )
    assert proc.stdin is not None
    proc.stdin.write(json.dumps(spec))
    proc.stdin.close()
    return proc


def cpu_seconds(processes: list[Any]) -> float:
    """User + system CPU seconds used so far by ``processes`` (those that have exited count as 0)."""
    total = 0.0
    for proc in processes:
        try:
            times = proc.cpu_times()
        except Exception:  # noqa: S112 - gone
            continue
        total += times.user + times.system
    return total


def rss_mb(processes: list[Any]) -> float:
    """Resident memory of ``processes`` in MiB."""
    total = 0
    for proc in processes:
        try:
            total += proc.memory_info().rss
        except Exception:  # noqa: S112 - gone
            continue
    return round(total / 2**20, 1)
