"""The database layer through a real transaction pooler: pgbouncer in pool_mode=transaction, as Supabase's port
6543 pooler works (each transaction may run on another server connection; no session state survives it)."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import psycopg
import pytest

from infra.postgres import EmbeddedPostgres
from shared import errors
from shared.db import Database, get_db
from shared.migrations import migrate, procedure_files, render_procedures

PGBOUNCER = shutil.which("pgbouncer") or next(
    (p for p in ("/usr/sbin/pgbouncer", "/usr/bin/pgbouncer") if Path(p).exists()), None
)
pytestmark = pytest.mark.skipif(PGBOUNCER is None, reason="pgbouncer is not installed (.ci/run installs it)")
SERVER_CONNECTIONS = 2  # fewer server connections than clients: transactions hop between them


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.fixture(scope="module")
def pooler(postgres: EmbeddedPostgres, stack: str) -> Iterator[str]:
    """pgbouncer (transaction pooling, 2 server connections) in front of the session's migrated Postgres."""
    assert PGBOUNCER is not None
    socket_dir = parse_qs(urlsplit(postgres.url).query)["host"][0]
    port = _free_port()
    work = Path(tempfile.mkdtemp(prefix="i2v-pgbouncer-"))
    (work / "users.txt").write_text('"postgres" ""\n')
    (work / "pgbouncer.ini").write_text(
        f"[databases]\ni2v = host={socket_dir} dbname=postgres user=postgres\n\n"
        "[pgbouncer]\n"
        f"listen_addr = 127.0.0.1\nlisten_port = {port}\nunix_socket_dir =\n"
        f"auth_type = trust\nauth_file = {work / 'users.txt'}\n"
        f"pool_mode = transaction\ndefault_pool_size = {SERVER_CONNECTIONS}\nmax_client_conn = 200\n"
        f"logfile = {work / 'pgbouncer.log'}\n"
    )
    os.chmod(work, 0o755)  # noqa: S103  (pgbouncer runs as another user and reads its config here)
    for path in work.iterdir():
        path.chmod(0o644)
    # pgbouncer refuses to run as root; run it as the embedded server's own user, who owns its socket directory.
    user = Path(socket_dir).owner() if os.geteuid() == 0 else None
    if user is not None:
        shutil.chown(work, user)
    proc = subprocess.Popen([PGBOUNCER, str(work / "pgbouncer.ini")], user=user)
    url = f"postgresql://postgres@127.0.0.1:{port}/i2v"
    deadline = time.monotonic() + 10
    while True:
        try:
            psycopg.connect(url, connect_timeout=2).close()
            break
        except psycopg.OperationalError:
            if time.monotonic() > deadline or proc.poll() is not None:
                log = work / "pgbouncer.log"
                raise RuntimeError(log.read_text() if log.exists() else "pgbouncer did not start") from None
            time.sleep(0.1)
    yield url
    proc.terminate()
    proc.wait(10)
    shutil.rmtree(work, ignore_errors=True)


@pytest.fixture
def pooled(pooler: str) -> Iterator[Database]:
    """The app's Database through the pooler, as configured for Supabase (statement timeout per transaction)."""
    database = Database(pooler, max_size=8, statement_timeout_ms=300, transaction_pooler=True)
    yield database
    database.close()


def test_procedure_calls_from_many_clients_share_two_server_connections(pooled: Database) -> None:
    """8 threads x 25 procedure calls over 2 server connections all succeed (no prepared or session state)."""
    users = [uuid.uuid4() for _ in range(8)]

    def work(user: uuid.UUID) -> list[int]:
        pooled.call("grant_credits", user=user, amount=5, reason="pooler test", ref=None)
        return [
            pooled.call("get_credits", user=user, signup_credits=0, limit=1)["balance"] for _ in range(25)
        ]

    with ThreadPoolExecutor(8) as pool:
        balances = list(pool.map(work, users))
    assert balances == [[5] * 25] * 8
    assert pooled.ping()


def test_statement_timeout_holds_per_transaction_and_does_not_leak(pooled: Database, pooler: str) -> None:
    """A call over the 300 ms timeout is cancelled; the next call works; the server sessions keep no timeout."""
    get_db().execute_script(
        "create or replace function pooler_test_sleep(p_seconds float8) returns int "
        "language sql as 'select 1 from pg_sleep(p_seconds)'"
    )
    started = time.monotonic()
    with pytest.raises(errors.I2VError):
        pooled.call("pooler_test_sleep", seconds=3)
    assert time.monotonic() - started < 2.5
    assert pooled.call("pooler_test_sleep", seconds=0.01) == 1
    with psycopg.connect(pooler, autocommit=True, prepare_threshold=None) as conn:
        for _ in range(SERVER_CONNECTIONS * 2):
            row = conn.execute("show statement_timeout").fetchone()
            assert row is not None and row[0] == "0"


def test_a_pooled_call_is_one_simple_query_message(pooler: str, tmp_path: Path) -> None:
    """Behind a pooler a call is one simple-protocol Query (begin; SET LOCAL; the call; commit): one round trip,
    and no Sync or Flush that could reach the pooler after it has released the server connection."""
    database = Database(pooler, min_size=1, max_size=1, statement_timeout_ms=300, transaction_pooler=True)
    trace = tmp_path / "libpq.trace"
    try:
        with trace.open("w") as out:
            with database.pool.connection() as conn:
                conn.pgconn.trace(out.fileno())
                conn.pgconn.set_trace_flags(
                    psycopg.pq.Trace.SUPPRESS_TIMESTAMPS | psycopg.pq.Trace.REGRESS_MODE
                )
            balance = database.call("get_credits", user=uuid.uuid4(), signup_credits=0, limit=1)["balance"]
            with database.pool.connection() as conn:
                conn.pgconn.untrace()
    finally:
        database.close()
    assert balance == 0
    sent = [line.split("\t") for line in trace.read_text().splitlines() if line.startswith("F\t")]
    kinds = [fields[2] for fields in sent]
    calls = [fields[3] for fields in sent if fields[2] == "Query" and "begin;" in fields[3]]
    assert len(calls) == 1 and "set_config('statement_timeout', '300', true)" in calls[0]
    assert not {"Parse", "Sync", "Flush"} & set(kinds), kinds


def test_migrate_through_the_pooler_while_clients_call(pooler: str, pooled: Database, tmp_path: Path) -> None:
    """migrate() behind the pooler while other clients call procedures: nothing to apply, each procedure file
    re-applied as one simple-protocol Query inside one transaction, and every concurrent call answered."""
    user = uuid.uuid4()
    pooled.call("grant_credits", user=user, amount=5, reason="pooler test", ref=None)

    def balances() -> list[int]:
        return [
            pooled.call("get_credits", user=user, signup_credits=0, limit=1)["balance"] for _ in range(20)
        ]

    migrator = Database(pooler, min_size=1, max_size=1, transaction_pooler=True)
    trace = tmp_path / "libpq.trace"
    try:
        with ThreadPoolExecutor(3) as pool:
            calls = [pool.submit(balances) for _ in range(3)]
            with trace.open("w") as out:
                with migrator.pool.connection() as conn:
                    conn.pgconn.trace(out.fileno())
                    conn.pgconn.set_trace_flags(psycopg.pq.Trace.SUPPRESS_TIMESTAMPS)
                assert migrate(migrator) == []
                with migrator.pool.connection() as conn:
                    conn.pgconn.untrace()
            assert [c.result() for c in calls] == [[5] * 20] * 3
    finally:
        migrator.close()
    # A traced Query is "F <length> Query <text>"; the length counts itself (4 bytes) and the closing NUL.
    sent = [line.split("\t") for line in trace.read_text().splitlines() if line.startswith("F\t")]
    lengths = sorted(int(f[1]) for f in sent if f[2] == "Query" and f[3].startswith(' "-- Live definitions'))
    assert lengths == sorted(
        len(render_procedures(path.read_text()).encode()) + 5 for path in procedure_files()
    )
