"""The database pool as a Lambda uses it: one connection, reused, replaced when it dies, statement timeout."""

from __future__ import annotations

from collections.abc import Iterator

import psycopg
import pytest

from shared import errors
from shared.db import Database
from shared.settings import Settings

_HELPERS = """
create or replace function i2v_test_backend() returns int language sql as $$ select pg_backend_pid() $$;
create or replace function i2v_test_timeout() returns text language sql as $$
  select current_setting('statement_timeout') $$;
create or replace function i2v_test_sleep(p_seconds float) returns int language sql as $$
  select 1 from pg_sleep(p_seconds) $$;
"""


@pytest.fixture
def url(db: Database) -> Iterator[str]:
    """The stack's database URL, with three tiny helper functions installed for the duration of a test."""
    with psycopg.connect(db.url, autocommit=True) as conn:
        conn.execute(_HELPERS.encode())
    yield db.url
    with psycopg.connect(db.url, autocommit=True) as conn:
        conn.execute(
            b"drop function i2v_test_backend(); drop function i2v_test_timeout(); drop function i2v_test_sleep(float)"
        )


def session_timeout(database: Database) -> str:
    """statement_timeout as the pooled connection's session has it (outside any call's transaction)."""
    with database.transaction() as tx:
        (row,) = tx.query("show statement_timeout")
    return str(row[0])


def test_one_connection_is_reused_and_replaced_when_it_dies(url: str) -> None:
    """With a pool of one, calls share a backend; after the server kills it, the next call reconnects."""
    database = Database(url, min_size=1, max_size=1, statement_timeout_ms=5000)
    try:
        first = database.call("i2v_test_backend")
        assert database.call("i2v_test_backend") == first
        with psycopg.connect(url, autocommit=True) as admin:  # the kill returns once the backend is gone
            admin.execute("select pg_terminate_backend(%s, 10000)", (first,))
        replaced = database.call("i2v_test_backend")
        assert replaced != first and database.call("i2v_test_backend") == replaced
    finally:
        database.close()


@pytest.mark.parametrize("pooler", [False, True])
def test_statement_timeout_cancels_a_slow_call(url: str, pooler: bool) -> None:
    """A call running past DB_STATEMENT_TIMEOUT_MS is cancelled and answers 503, with or without a pooler."""
    database = Database(url, max_size=1, statement_timeout_ms=200, transaction_pooler=pooler)
    try:
        assert database.call("i2v_test_timeout") == "200ms"
        with pytest.raises(errors.ServiceUnavailable, match="too long"):
            database.call("i2v_test_sleep", seconds=3)
        assert database.call("i2v_test_sleep", seconds=0) == 1  # the connection is usable afterwards
    finally:
        database.close()


def test_pooler_mode_keeps_no_session_state(url: str) -> None:
    """Behind a transaction pooler the timeout is SET LOCAL per call: the session itself keeps none."""
    pooled = Database(url, max_size=1, statement_timeout_ms=250, transaction_pooler=True)
    direct = Database(url, max_size=1, statement_timeout_ms=250)
    try:
        assert pooled.call("i2v_test_timeout") == "250ms"
        assert session_timeout(pooled) == "0"
        assert session_timeout(direct) == "250ms"
    finally:
        pooled.close()
        direct.close()


@pytest.mark.parametrize(
    ("url", "flag", "expected"),
    [
        ("postgresql://postgres.ref:pw@aws-0-eu-west-1.pooler.supabase.com:6543/postgres", None, True),
        ("postgresql://postgres.ref:pw@aws-0-eu-west-1.pooler.supabase.com:5432/postgres", None, False),
        ("postgresql://u@db.example.com/app", True, True),
        ("postgresql://u@db.example.com:6543/app", False, False),
    ],
)
def test_transaction_pooler_is_detected_from_the_port(url: str, flag: bool | None, expected: bool) -> None:
    """Port 6543 (Supabase's transaction pooler) switches the timeout to SET LOCAL unless DB_TRANSACTION_POOLER says."""
    settings = Settings(database_url=url, db_transaction_pooler=flag)
    assert settings.uses_transaction_pooler() is expected
