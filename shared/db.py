"""Postgres access: one connection pool, one ``call()`` per stored procedure, SQLSTATE -> error mapping.

The only module that imports psycopg. Every statement is a single procedure call in autocommit mode, so each
call is one round trip and one transaction, and it works through a transaction-mode pooler (no session state,
no server-side prepared statements). The statement timeout is a connection option, or, behind a transaction
pooler (which cannot carry per-client options), ``SET LOCAL`` inside each call's own transaction, sent with the
call as one simple-protocol message so it stays one round trip. Elsewhere (a direct connection, a session
pooler) each call's statement is prepared once per connection, which spares the server parsing and planning it
again. The text of each call is composed once per procedure and set of parameter names.

Each procedure call is a span when tracing is on (shared.tracing), and each job transition is logged and counted
(shared.logs, shared.metrics).

Each connection is checked when taken from the pool and replaced when dead. The check costs no round trip: an
idle connection has nothing to read, so one whose socket holds something (the server's goodbye, the end of the
stream) is tested with an empty query, which fails when it is dead. A connection used moments before needs no
more proof than that (pools commonly skip the test altogether for connections used within half a second).
"""

from __future__ import annotations

import select
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from functools import lru_cache
from typing import Any

import psycopg
from psycopg import sql
from psycopg.types.json import Jsonb
from psycopg_pool import ConnectionPool

from shared import errors, logs, metrics, timing, tracing
from shared.settings import get_settings

#: psycopg prepares a statement automatically after this many executions: never (calls ask for it instead).
_NEVER_AUTOMATICALLY = 2**31 - 1
_SQLSTATE_ERRORS: dict[str, type[errors.I2VError]] = {
    "I2V01": errors.JobNotFound,
    "I2V02": errors.InsufficientCredits,
    "I2V03": errors.InvalidTransition,
    "I2V04": errors.BadRequest,
    "I2V05": errors.Forbidden,
}
# Procedures that move a job between states (or claim it for a step); each call is logged with its job id.
_JOB_TRANSITIONS = frozenset(
    {
        "start_generation",
        "claim_submit",
        "mark_submitted",
        "mark_submit_unknown",
        "mark_processing",
        "claim_engine_job",
        "begin_engine_completion",
        "record_provider_status",
        "record_provider_result",
        "claim_mirror",
        "release_mirror",
        "complete_job",
        "complete_image_job",
        "fail_job",
        "cancel_job",
    }
)


# The transitions that may change a job's status (and so queue its webhook events); the others only create a
# pending job, record a submission or take and release a lease.
_STATUS_CHANGES = _JOB_TRANSITIONS - {
    "start_generation",
    "claim_submit",
    "mark_submitted",
    "mark_submit_unknown",
    "begin_engine_completion",
    "claim_mirror",
    "release_mirror",
}
_job_changed = False  # a status-changing procedure was called since take_job_change() last asked


def take_job_change() -> bool:
    """Whether a procedure that may change a job's status was called since the last time this was asked (and
    forget it): how a Lambda invocation knows, as it ends, that it may have queued webhook events
    (shared.invoke.wake_webhook_sender). A generate request, which only creates a pending job, does not."""
    global _job_changed
    changed, _job_changed = _job_changed, False
    return changed


class Database:
    """A pool of connections to one database, and the procedure-call API over it."""

    def __init__(
        self,
        url: str,
        *,
        min_size: int = 1,
        max_size: int = 10,
        statement_timeout_ms: int = 0,
        transaction_pooler: bool = False,
    ) -> None:
        # Statements are prepared only when asked (procedure calls, never scripts), and never behind a transaction
        # pooler, where the next transaction may run on another server connection.
        kwargs: dict[str, Any] = {
            "autocommit": True,
            "prepare_threshold": None if transaction_pooler else _NEVER_AUTOMATICALLY,
        }
        self._prepare = None if transaction_pooler else True
        # Behind a transaction pooler: "begin; select set_config(...); <call>; commit" around each call.
        self._local_timeout: tuple[bytes, bytes] | None = None
        if transaction_pooler and statement_timeout_ms > 0:
            literal = sql.Literal(str(statement_timeout_ms)).as_bytes(None)
            self._local_timeout = (
                b"begin; select set_config('statement_timeout', " + literal + b", true); ",
                b"; commit",
            )
        if statement_timeout_ms > 0 and not transaction_pooler:
            kwargs["options"] = f"-c statement_timeout={statement_timeout_ms}"
        self.url = url
        self.round_trips = 0
        self._lock = threading.Lock()
        self.pool = ConnectionPool(
            url,
            min_size=min_size,
            max_size=max_size,
            kwargs=kwargs,
            open=True,
            check=_check_connection,
            name="i2v",
        )

    def close(self) -> None:
        """Close every connection."""
        self.pool.close()

    def call(self, function: str, **params: Any) -> Any:
        """Call one stored function with named parameters (``p_`` is prefixed) and return its scalar result."""
        with tracing.span(f"call {function}", "client", _span_attributes(function)):
            rows = self._execute(_call_sql(function, params), _bind(params))
        result = rows[0][0] if rows else None
        if function in _JOB_TRANSITIONS:
            logs.job_transition(function, params, result)
            metrics.job_transition(function, params, result)
            if function in _STATUS_CHANGES:
                global _job_changed
                _job_changed = True
        return result

    def call_rows(self, function: str, **params: Any) -> list[tuple[Any, ...]]:
        """Call a set-returning stored function and return all of its rows."""
        with tracing.span(f"call {function}", "client", _span_attributes(function)):
            return self._execute(_call_sql(function, params, select=False), _bind(params))

    def ping(self) -> bool:
        """True when the database answers a trivial query."""
        try:
            return self._execute(b"select 1", {}) == [(1,)]
        except errors.I2VError:
            return False

    def execute_script(self, script: str) -> None:
        """Run a multi-statement SQL script in one transaction (migrations only)."""
        with self._connection() as conn, conn.transaction():
            conn.execute(script.encode())  # bytes: simple query protocol, so several statements may be sent

    @contextmanager
    def transaction(self) -> Iterator[Transaction]:
        """A transaction for the few multi-statement operations (migrations)."""
        with self._connection() as conn, conn.transaction():
            yield Transaction(conn)

    def _execute(self, query: bytes, params: dict[str, Any]) -> list[tuple[Any, ...]]:
        with self._lock:
            self.round_trips += 1
        stats = timing.current()
        started = time.perf_counter()
        try:
            with self._connection() as conn:
                cur = self._run(conn, query, params)
                return cur.fetchall() if cur.description else []
        finally:
            if stats is not None:
                stats.round_trips += 1
                stats.seconds += time.perf_counter() - started

    def _run(
        self, conn: psycopg.Connection[Any], query: bytes, params: dict[str, Any]
    ) -> psycopg.Cursor[Any]:
        if self._local_timeout is None:
            return conn.execute(query, params, prepare=self._prepare)
        # One simple-protocol message "begin; select set_config(...); <call>; commit" (parameters bound on the
        # client, with libpq's quoting): one round trip and no Sync/Flush messages. Pipeline mode would end with
        # a Flush that can reach the pooler after it released the server connection; pgbouncer 1.18 then forwards
        # it to a server that never answers a Flush, and that server connection is lost to every client.
        batch = self._local_timeout[0] + query + self._local_timeout[1]
        cur = psycopg.ClientCursor(conn)
        try:
            cur.execute(batch, params)
        except psycopg.Error:
            if conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
                conn.execute("rollback")  # the failed transaction must end before the pooler can reuse it
            raise
        cur.nextset()  # the result of begin, then of set_config, then the call's
        cur.nextset()
        return cur

    @contextmanager
    def _connection(self) -> Iterator[psycopg.Connection[Any]]:
        try:
            with self.pool.connection(timeout=10) as conn:
                yield conn
        except psycopg.Error as exc:
            raise _map_error(exc) from exc
        except TimeoutError as exc:  # psycopg_pool.PoolTimeout subclasses it
            raise errors.ServiceUnavailable("The database is not reachable.") from exc


_default: Database | None = None
_default_lock = threading.Lock()


def configure(url: str, **kwargs: Any) -> Database:
    """Make ``url`` the process-wide database (the local server and tests call this)."""
    global _default
    with _default_lock:
        if _default is not None:
            _default.close()
        _default = Database(url, **kwargs)
        return _default


def get_db() -> Database:
    """The process-wide database, created from DATABASE_URL on first use."""
    global _default
    with _default_lock:
        if _default is None:
            settings = get_settings()
            if not settings.database_url:
                raise errors.ServiceUnavailable("DATABASE_URL is not set.")
            _default = Database(
                settings.database_url,
                max_size=settings.db_pool_size,
                statement_timeout_ms=settings.db_statement_timeout_ms,
                transaction_pooler=settings.uses_transaction_pooler(),
            )
        return _default


class Transaction:
    """Plain statements inside one transaction; used by the migration runner only."""

    def __init__(self, conn: psycopg.Connection[Any]) -> None:
        self._conn = conn

    def query(self, statement: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        """Run one parameterised statement and return its rows."""
        cur = self._conn.execute(statement.encode(), params or None)
        return cur.fetchall() if cur.description else []

    def script(self, script: str) -> None:
        """Run a multi-statement script."""
        self._conn.execute(script.encode())


def _call_sql(function: str, params: dict[str, Any], *, select: bool = True) -> bytes:
    """``select f(p_a => %(a)s, ...)`` (or ``select * from f(...)``), composed once per function and names."""
    return _compose_call(function, tuple(params), select)


@lru_cache(maxsize=1024)
def _compose_call(function: str, names: tuple[str, ...], select: bool) -> bytes:
    args = sql.SQL(", ").join(
        sql.SQL("{} => {}").format(sql.Identifier(f"p_{name}"), sql.Placeholder(name)) for name in names
    )
    call = sql.SQL("{}({})").format(sql.Identifier(function), args)
    return (sql.SQL("select {}") if select else sql.SQL("select * from {}")).format(call).as_bytes(None)


@lru_cache(maxsize=1024)
def _span_attributes(function: str) -> dict[str, str]:
    return {"db.system.name": "postgresql", "db.operation.name": function}


def _check_connection(conn: psycopg.Connection[Any]) -> None:
    """The pool's check of a connection it hands out: raise when it is dead, so that it is replaced."""
    if conn.closed or conn.broken:
        raise psycopg.OperationalError("the connection is closed")
    poller = select.poll()
    poller.register(conn.fileno(), select.POLLIN | select.POLLERR | select.POLLHUP)
    if poller.poll(0):  # something arrived while it was idle: prove it alive with a round trip
        ConnectionPool.check_connection(conn)


def _bind(params: dict[str, Any]) -> dict[str, Any]:
    return {k: Jsonb(v) if isinstance(v, dict | list) else v for k, v in params.items()}


def _map_error(exc: psycopg.Error) -> errors.I2VError:
    state = exc.sqlstate or ""
    diag = exc.diag.message_primary or "database error"
    if state in _SQLSTATE_ERRORS:
        return _SQLSTATE_ERRORS[state](diag)
    if state == "57014":  # query_canceled: the statement timeout fired
        return errors.ServiceUnavailable("The database took too long to answer.")
    if isinstance(exc, psycopg.OperationalError):
        return errors.ServiceUnavailable("The database is not reachable.")
    return errors.I2VError("A database error occurred.", sqlstate=state or None)
