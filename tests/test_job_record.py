"""One typed job record: the SQL projection (job_record) and shared.records.Job read the same fields."""

from __future__ import annotations

import dataclasses
import uuid

from shared.db import Database
from shared.records import Job, load_job
from shared.schemas import JobStatus
from tests.conftest import debit_job


def test_job_record_and_job_have_the_same_fields(db: Database) -> None:
    """Every key job_record returns is a field of Job and every field of Job is returned: one projection."""
    user = uuid.uuid4()
    db.call("grant_credits", user=user, amount=10, reason="test", ref=None)
    job_id = debit_job(db, user)
    record = db.call("job_for_provider", job=job_id)
    assert set(record) == {f.name for f in dataclasses.fields(Job)}


def test_load_job_is_owner_scoped(db: Database) -> None:
    """load_job with a user reads only that user's job; without one, any job (webhooks, workers)."""
    owner, other = uuid.uuid4(), uuid.uuid4()
    db.call("grant_credits", user=owner, amount=10, reason="test", ref=None)
    job_id = debit_job(db, owner, cost=4)
    job = load_job(job_id, user=owner)
    assert job is not None and job.user_id == owner and job.status is JobStatus.PENDING and job.active
    assert job.credits_used == 4 and job.created_at is not None and job.created_at.tzinfo is not None
    assert load_job(job_id, user=other) is None
    assert load_job(job_id) == job
    assert load_job(uuid.uuid4()) is None


def test_failing_records_the_reason_in_one_call(db: Database) -> None:
    """fail_job takes the failure kind in the same call; a second failure changes nothing."""
    user = uuid.uuid4()
    db.call("grant_credits", user=user, amount=10, reason="test", ref=None)
    job_id = debit_job(db, user)
    assert db.call("fail_job", job=job_id, error="too slow", kind="deadline") is True
    assert db.call("fail_job", job=job_id, error="again", kind="provider") is False
    job = load_job(job_id)
    assert job is not None and job.status is JobStatus.FAILED and job.failure_kind == "deadline"
    assert job.error_message == "too slow" and not job.active
