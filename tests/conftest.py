"""Test fixtures: one real local stack (embedded Postgres, local storage, engine, HTTP) per test session."""

from __future__ import annotations

import hashlib
import os
import re
import socket
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
import stamina

_HOME = Path(tempfile.mkdtemp(prefix="i2v-test-"))
os.environ.update(
    {
        "I2V_HOME": str(_HOME),
        "SIGNUP_CREDITS": "0",
        "LOCAL_ENGINE": "true",
        "LOCAL_ENGINE_WORKERS": "2",
        "RECONCILE_INTERVAL_S": "3600",
        "WEBHOOK_SENDER": "false",  # tests send deliveries themselves (tests/test_outgoing_webhooks.py tests the sender)
        "RATE_LIMITS": "off",  # tests of the limiter set their own (tests/test_rate_limits.py)
        "XDG_RUNTIME_DIR": os.environ.get("XDG_RUNTIME_DIR") or str(_HOME / "run"),
    }
)
os.environ.pop("DATABASE_URL", None)
os.environ.pop("STORAGE_BUCKET", None)
os.environ.pop("SUPABASE_JWT_SECRET", None)
os.environ.pop("SUPABASE_JWKS_URL", None)
(_HOME / "run").mkdir(exist_ok=True)

from infra.postgres import EmbeddedPostgres  # noqa: E402  (the environment above must be set first)
from infra.server import LocalStack  # noqa: E402
from shared.auth import mint_dev_token  # noqa: E402
from shared.billing import ledger as credits  # noqa: E402
from shared.db import Database, get_db  # noqa: E402
from shared.settings import get_settings  # noqa: E402
from tests.media_support import EXAMPLES, small_mp4  # noqa: E402

stamina.set_testing(True, attempts=5)  # provider retries run for real, without sleeping


@pytest.fixture(scope="session")
def mp4(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    """A real 1-second MP4 (what a model would return)."""
    return small_mp4(tmp_path_factory.mktemp("mp4"))


@pytest.fixture(scope="session")
def postgres() -> Iterator[EmbeddedPostgres]:
    """A real PostgreSQL server for the session (deleted afterwards)."""
    server = EmbeddedPostgres(_HOME / "pgdata", cleanup="delete")
    yield server
    server.stop()


@contextmanager
def empty_database(server: EmbeddedPostgres) -> Iterator[Database]:
    """A new, empty database on ``server`` and a small pool on it; the database is dropped afterwards."""
    name = f"m_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(server.url, autocommit=True) as conn:
        conn.execute(f"create database {name}".encode())
    database = Database(server.url_for(name), max_size=2)
    try:
        yield database
    finally:
        database.close()
        with psycopg.connect(server.url, autocommit=True) as conn:
            conn.execute(f"drop database {name} with (force)".encode())


@pytest.fixture(scope="session")
def stack(postgres: EmbeddedPostgres) -> Iterator[str]:
    """The local server on a free port, migrated, with two engine workers; yields its base URL."""
    os.environ["DATABASE_URL"] = postgres.url
    get_settings.cache_clear()
    local = LocalStack(get_settings())
    base_url = local.start_background()
    yield base_url
    local.shutdown()


@pytest.fixture
def db(stack: str) -> Database:
    """The stack's database (for set-up and for checking invariants, never for the behaviour under test)."""
    return get_db()


@contextmanager
def configured(**env: str) -> Iterator[None]:
    """Temporarily set settings through the environment."""
    old = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    get_settings.cache_clear()
    try:
        yield
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        get_settings.cache_clear()


def wait_for(check: Callable[[], Any], what: str, timeout: float = 120) -> Any:
    """Poll ``check`` until it returns something truthy (bounded: a hang fails the test, it is not a measure)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def raw_http(base_url: str, request: bytes, body: bytes = b"") -> tuple[int, dict[str, str], bytes]:
    """Send raw bytes (a request head, then maybe part of a body) on a fresh connection; read one answer, to its
    Content-Length or to EOF; return (status, lower-case headers, body)."""
    url = httpx.URL(base_url)
    assert url.port is not None
    data = b""
    with socket.create_connection((url.host, url.port), timeout=10) as sock:
        sock.sendall(request)
        if body:
            sock.sendall(body)
        while chunk := sock.recv(65536):
            data += chunk
            head, found, rest = data.partition(b"\r\n\r\n")
            length = re.search(rb"(?im)^content-length: *(\d+)", head) if found else None
            if length and len(rest) >= int(length.group(1)):
                break
    head, _, rest = data.partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in header_lines)}
    return int(status_line.split()[1]), headers, rest


def token_claims(**overrides: Any) -> dict[str, Any]:
    """Claims of a valid Supabase access token for a new user, with ``overrides`` (None removes a claim)."""
    now = int(time.time())
    claims = {
        "sub": str(uuid.uuid4()),
        "aud": "authenticated",
        "role": "authenticated",
        "iat": now,
        "exp": now + 600,
    }
    claims.update(overrides)
    return {k: v for k, v in claims.items() if v is not None}


def debit_job(
    db: Database,
    user: uuid.UUID,
    cost: int = 3,
    *,
    model: str = "local-motion",
    provider: str = "test",
    **overrides: Any,
) -> uuid.UUID:
    """A job debited exactly as generate-video debits one, by the same procedure (set-up, not behaviour).

    Provider ``test`` has no worker, so the job stays pending until a test moves it.
    """
    from shared.providers.catalog import find_model

    spec = find_model(model)
    params: dict[str, Any] = dict(
        user=user,
        endpoint="test",
        key=uuid.uuid4().hex,
        fingerprint="f",
        model_id=spec.id,
        model_slug=spec.slug,
        provider=provider,
        prompt="",
        image_url=None,
        settings={},
        cost=cost,
        signup_credits=0,
        ttl_s=60,
        hold_s=0,
        upload_sha=None,
    )
    params.update(overrides)
    result = db.call("start_generation", **params)
    assert result["outcome"] == "created", result
    return uuid.UUID(result["body"]["job_id"])


@dataclass
class Caller:
    """A user with a token and an HTTP client to the stack."""

    id: uuid.UUID
    token: str
    http: httpx.Client

    def grant(self, amount: int) -> int:
        """Give this user credits through the operator grant."""
        return credits.grant(self.id, amount, "test grant")

    def balance(self) -> int:
        """The balance as the API reports it."""
        balance: int = self.http.get("/functions/v1/get-credits").json()["balance"]
        return balance

    def upload(
        self, path: Path | None = None, data: bytes | None = None, content_type: str = "image/jpeg"
    ) -> str:
        """Upload an image through create-upload-url and its PUT target; return the image_url."""
        data = data if data is not None else (path or EXAMPLES / "landscape.jpg").read_bytes()
        body = {"content_type": content_type, "size": len(data), "sha256": hashlib.sha256(data).hexdigest()}
        target = self.http.post("/functions/v1/create-upload-url", json=body).json()
        if not target.get("already_uploaded"):
            put = httpx.put(target["upload_url"], content=data, headers=target["upload_headers"])
            assert put.status_code == 200, put.text
        url: str = target["image_url"]
        return url

    def generate(self, key: str | None = None, **body: Any) -> httpx.Response:
        """POST generate-video with an Idempotency-Key (a fresh one unless given)."""
        headers = {"Idempotency-Key": key or uuid.uuid4().hex}
        return self.http.post("/functions/v1/generate-video", json=body, headers=headers)

    def status(self, job_id: str) -> httpx.Response:
        """GET get-video-status."""
        return self.http.get("/functions/v1/get-video-status", params={"job_id": job_id})


def make_caller(base_url: str) -> Caller:
    """A brand-new user with a valid token."""
    user_id = uuid.uuid4()
    token = mint_dev_token(user_id)
    http = httpx.Client(base_url=base_url, headers={"Authorization": f"Bearer {token}"}, timeout=60)
    return Caller(user_id, token, http)


@pytest.fixture
def caller(stack: str) -> Iterator[Caller]:
    """A fresh user of the running stack."""
    c = make_caller(stack)
    yield c
    c.http.close()


@pytest.fixture
def other(stack: str) -> Iterator[Caller]:
    """A second, unrelated user."""
    c = make_caller(stack)
    yield c
    c.http.close()


@pytest.fixture
def anon(stack: str) -> Iterator[httpx.Client]:
    """An HTTP client with no credentials."""
    with httpx.Client(base_url=stack, timeout=30) as http:
        yield http
