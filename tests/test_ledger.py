"""The ledger and the job state machine, straight at the stored procedures (real Postgres)."""

from __future__ import annotations

import uuid

import psycopg
import pytest

from shared import errors
from shared.db import Database
from tests.conftest import Caller, debit_job


def _job(db: Database, user: uuid.UUID, cost: int = 3) -> uuid.UUID:
    """A debited job no worker picks up."""
    return debit_job(db, user, cost)


def test_balance_equals_ledger_sum_everywhere(caller: Caller, db: Database) -> None:
    """After grants, debits, refunds and cancels, every account's balance equals its ledger sum."""
    caller.grant(10)
    a, b, c = _job(db, caller.id), _job(db, caller.id), _job(db, caller.id)
    db.call("fail_job", job=a, error="boom")
    db.call("cancel_job", user=caller.id, job=b)
    db.call("complete_job", job=c, video_key="v", thumbnail_key=None, source_url=None, result={})
    assert caller.balance() == 7
    assert db.call_rows("ledger_mismatches") == []


def test_ledger_is_append_only(caller: Caller, db: Database) -> None:
    """UPDATE and DELETE on credit_ledger are refused by the database."""
    caller.grant(5)
    with psycopg.connect(db.url, autocommit=True) as conn:
        for statement in ("update credit_ledger set delta = 1000", "delete from credit_ledger"):
            with pytest.raises(psycopg.Error, match="append-only"):
                conn.execute(statement.encode())


def test_balance_can_never_go_negative(caller: Caller, db: Database) -> None:
    """A ledger row that would overdraw is refused by the CHECK constraint; a negative grant too."""
    caller.grant(2)
    with pytest.raises(errors.InsufficientCredits):
        db.call("grant_credits", user=caller.id, amount=-3, reason="too much", ref=None)
    with psycopg.connect(db.url, autocommit=True) as conn, pytest.raises(psycopg.errors.CheckViolation):
        conn.execute(
            b"insert into credit_ledger (user_id, delta, kind) values (%s, -3, 'grant')", (caller.id,)
        )
    assert caller.balance() == 2


@pytest.mark.parametrize(
    ("first", "then"),
    [
        ("fail", "complete"),
        ("cancel", "complete"),
        ("complete", "fail"),
        ("complete", "cancel"),
        ("fail", "processing"),
        ("cancel", "fail"),
    ],
)
def test_illegal_transitions_are_refused(caller: Caller, db: Database, first: str, then: str) -> None:
    """A terminal job refuses to move to another state, with InvalidTransition."""
    caller.grant(10)
    job = _job(db, caller.id)
    _transition(db, caller.id, job, first)
    with pytest.raises(errors.InvalidTransition):
        _transition(db, caller.id, job, then)


def _transition(db: Database, user: uuid.UUID, job: uuid.UUID, name: str) -> object:
    if name == "fail":
        return db.call("fail_job", job=job, error="x")
    if name == "cancel":
        return db.call("cancel_job", user=user, job=job)
    if name == "processing":
        return db.call("mark_processing", job=job, progress=0.1)
    return db.call("complete_job", job=job, video_key="v", thumbnail_key=None, source_url=None, result={})


def test_repeated_transitions_are_no_ops(caller: Caller, db: Database) -> None:
    """Completing twice or failing twice changes nothing the second time (and refunds once)."""
    caller.grant(10)
    done, failed = _job(db, caller.id), _job(db, caller.id)
    assert _transition(db, caller.id, done, "complete") is True
    assert _transition(db, caller.id, done, "complete") is False
    assert _transition(db, caller.id, failed, "fail") is True
    assert _transition(db, caller.id, failed, "fail") is False
    assert caller.balance() == 7


def test_every_transition_is_recorded(caller: Caller, db: Database) -> None:
    """A trigger writes one job_events row per status change."""
    caller.grant(10)
    job = _job(db, caller.id)
    _transition(db, caller.id, job, "processing")
    _transition(db, caller.id, job, "processing")
    _transition(db, caller.id, job, "complete")
    with psycopg.connect(db.url) as conn:
        rows = conn.execute(
            b"select from_status::text, to_status::text from job_events where job_id = %s order by id", (job,)
        ).fetchall()
    assert rows == [(None, "pending"), ("pending", "processing"), ("processing", "completed")]


def test_cancel_is_only_for_the_owner(caller: Caller, other: Caller, db: Database) -> None:
    """Canceling another user's job is 'not found'; the owner's cancel refunds."""
    caller.grant(10)
    job = _job(db, caller.id)
    with pytest.raises(errors.JobNotFound):
        db.call("cancel_job", user=other.id, job=job)
    db.call("cancel_job", user=caller.id, job=job)
    assert caller.balance() == 10


def test_signup_credits_are_granted_once(db: Database) -> None:
    """The first request creates the account with signup credits, recorded in the ledger, once."""
    user = uuid.uuid4()
    first = db.call("get_credits", user=user, signup_credits=25, limit=10)
    again = db.call("get_credits", user=user, signup_credits=25, limit=10)
    assert first["balance"] == again["balance"] == 25
    assert [e["kind"] for e in again["entries"]] == ["signup"]
