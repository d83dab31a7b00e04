"""docs/rls.sql on a fresh migrated database with Supabase's auth roles emulated: a user reads only their own."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psycopg
import pytest

from infra.postgres import EmbeddedPostgres
from shared.db import Database
from shared.migrations import migrate, sync_models
from shared.providers.catalog import find_model

RLS = Path(__file__).resolve().parent.parent / "docs" / "rls.sql"


@pytest.fixture(scope="module")
def rls_db(postgres: EmbeddedPostgres) -> Iterator[str]:
    """A new database, migrated, with docs/rls.sql applied twice (it must be re-runnable); yields its URL."""
    name = f"i2v_rls_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(postgres.url, autocommit=True) as admin:
        admin.execute(f'create database "{name}"'.encode())
    url = postgres.url_for(name)
    database = Database(url, max_size=2)
    try:
        migrate(database)
        sync_models(database)
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(RLS.read_bytes())
            conn.execute(RLS.read_bytes())
        yield url
    finally:
        database.close()
        with psycopg.connect(postgres.url, autocommit=True) as admin:
            admin.execute(f'drop database "{name}" with (force)'.encode())


def make_job(url: str, user: uuid.UUID) -> uuid.UUID:
    """Credits and one job for ``user``, written by the backend (the tables' owner) through its procedures."""
    database = Database(url, max_size=1)
    try:
        database.call("grant_credits", user=user, amount=10, reason="test", ref=None)
        spec = find_model("local-motion")
        result = database.call(
            "start_generation",
            user=user,
            endpoint="test",
            key=uuid.uuid4().hex,
            fingerprint="f",
            model_id=spec.id,
            model_slug=spec.slug,
            provider="local",
            prompt="zoom",
            image_url=None,
            settings={},
            cost=2,
            signup_credits=0,
            ttl_s=60,
            hold_s=0,
            upload_sha=None,
        )
        return uuid.UUID(result["body"]["job_id"])
    finally:
        database.close()


@contextmanager
def as_role(url: str, role: str, sub: uuid.UUID | None = None) -> Iterator[psycopg.Connection[Any]]:
    """A transaction as PostgREST runs one: the JWT claims in request.jwt.claims, then SET LOCAL ROLE."""
    with psycopg.connect(url) as conn:
        claims = {"role": role, **({"sub": str(sub)} if sub else {})}
        conn.execute("select set_config('request.jwt.claims', %s, true)", (json.dumps(claims),))
        conn.execute(f"set local role {role}".encode())
        yield conn
        conn.rollback()


@pytest.fixture(scope="module")
def two_users(rls_db: str) -> dict[uuid.UUID, uuid.UUID]:
    """Two users with one job each: user id -> job id."""
    users = [uuid.uuid4(), uuid.uuid4()]
    return {user: make_job(rls_db, user) for user in users}


def test_a_user_reads_only_their_own_jobs_and_ledger(
    rls_db: str, two_users: dict[uuid.UUID, uuid.UUID]
) -> None:
    """As `authenticated` with sub = A: A's job, events, account and ledger rows only."""
    (alice, alice_job), (bob, _) = two_users.items()
    with as_role(rls_db, "authenticated", alice) as conn:
        assert conn.execute("select auth.uid()").fetchone() == (alice,)
        assert conn.execute("select id, user_id from video_jobs").fetchall() == [(alice_job, alice)]
        assert {r[0] for r in conn.execute("select job_id from job_events")} == {alice_job}
        assert conn.execute("select user_id from accounts").fetchall() == [(alice,)]
        assert {r[0] for r in conn.execute("select user_id from credit_ledger")} == {alice}
        assert conn.execute("select count(*) from video_jobs where user_id = %s", (bob,)).fetchone() == (0,)


def test_anonymous_callers_see_no_jobs_but_the_catalog(
    rls_db: str, two_users: dict[uuid.UUID, uuid.UUID]
) -> None:
    """`anon` may read the model catalog and nothing else; `authenticated` without a sub sees no job."""
    with as_role(rls_db, "anon") as conn:
        assert conn.execute("select count(*) from models").fetchone()[0] > 0  # type: ignore[index]
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("select * from video_jobs")
    with as_role(rls_db, "authenticated") as conn:
        assert conn.execute("select count(*) from video_jobs").fetchone() == (0,)


@pytest.mark.parametrize(
    "statement",
    [
        "update video_jobs set status = 'completed'",
        "insert into credit_ledger (user_id, delta, kind) values (auth.uid(), 1000, 'grant')",
        "select * from idempotency_keys",
        "select * from stripe_events",
        "select grant_credits(auth.uid(), 1000, 'free', null)",
        "select get_job(auth.uid(), gen_random_uuid())",
    ],
)
def test_users_cannot_write_or_call_procedures(
    rls_db: str, two_users: dict[uuid.UUID, uuid.UUID], statement: str
) -> None:
    """No write, no private table and no i2v procedure is reachable by a signed-in user."""
    alice = next(iter(two_users))
    with as_role(rls_db, "authenticated", alice) as conn, pytest.raises(psycopg.errors.InsufficientPrivilege):
        conn.execute(statement.encode())


def test_every_table_and_procedure_is_covered(rls_db: str) -> None:
    """Every table the migrations create has RLS on, and no function of theirs is executable by the API roles."""
    with psycopg.connect(rls_db) as conn:
        open_tables = conn.execute(
            "select relname from pg_class where relnamespace = 'public'::regnamespace"
            " and relkind = 'r' and not relrowsecurity"
        ).fetchall()
        callable_functions = conn.execute(
            "select oid::regprocedure::text from pg_proc where pronamespace = 'public'::regnamespace"
            " and (has_function_privilege('authenticated', oid, 'execute')"
            "      or has_function_privilege('anon', oid, 'execute'))"
        ).fetchall()
    assert open_tables == [] and callable_functions == []


def test_the_backend_is_unaffected(rls_db: str, two_users: dict[uuid.UUID, uuid.UUID]) -> None:
    """The owner (the backend's role) still reads every row and calls every procedure."""
    database = Database(rls_db, max_size=1)
    try:
        for user, job in two_users.items():
            assert database.call("get_job", user=user, job=job)["job_id"] == str(job)
        assert database.call_rows("ledger_mismatches") == []
    finally:
        database.close()
