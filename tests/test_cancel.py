"""cancel-video: refunds an unfinished job once; finished jobs and other users' jobs are refused."""

from __future__ import annotations

import uuid

from shared.db import Database
from tests.conftest import Caller
from tests.test_ledger import _job


def test_cancel_refunds_once(caller: Caller, db: Database) -> None:
    """Canceling a pending job answers canceled and refunds; a second cancel changes nothing."""
    caller.grant(10)
    job = _job(db, caller.id)
    first = caller.http.post("/functions/v1/cancel-video", json={"job_id": str(job)})
    second = caller.http.post("/functions/v1/cancel-video", json={"job_id": str(job)})
    assert first.status_code == second.status_code == 200
    assert first.json()["status"] == "canceled"
    assert caller.balance() == 10


def test_cancel_finished_job_is_409(caller: Caller, db: Database) -> None:
    """A completed job cannot be canceled (409) and keeps its charge."""
    caller.grant(10)
    job = _job(db, caller.id)
    db.call("complete_job", job=job, video_key="v", thumbnail_key=None, source_url=None, result={})
    resp = caller.http.post("/functions/v1/cancel-video", json={"job_id": str(job)})
    assert resp.status_code == 409 and resp.json()["error"]["code"] == "invalid_transition"
    assert caller.balance() == 7


def test_cancel_someone_elses_job_is_404(caller: Caller, other: Caller, db: Database) -> None:
    """Another user's job, or an unknown one, answers 404 and is left alone."""
    caller.grant(10)
    job = _job(db, caller.id)
    for job_id in (job, uuid.uuid4()):
        resp = other.http.post("/functions/v1/cancel-video", json={"job_id": str(job_id)})
        assert resp.status_code == 404
    assert caller.status(str(job)).json()["status"] == "pending"
