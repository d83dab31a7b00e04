"""Canceling local-engine jobs: the render stops part-way, nothing of it is kept, and completion and cancel are
ordered in the database so that a canceled job's video never reaches storage."""

from __future__ import annotations

import logging
import uuid
from pathlib import Path

import pytest

from shared.db import Database
from shared.settings import get_settings
from tests.conftest import Caller, debit_job, wait_for

LONG = {
    "model_id": "local-motion",
    "prompt": "slow zoom in",
    "settings": {"duration": 10, "resolution": "1080p"},
}


def _stopped_record(caplog: pytest.LogCaptureFixture, job_id: str) -> logging.LogRecord | None:
    for record in caplog.records:
        if record.getMessage().startswith("render stopped") and getattr(record, "job_id", None) == job_id:
            return record
    return None


def test_cancel_stops_the_render_midway_and_keeps_nothing(
    caller: Caller, caplog: pytest.LogCaptureFixture
) -> None:
    """Canceling a rendering job stops its render part-way, logs it at INFO (no crash, no traceback), removes
    its scratch files, stores no video or thumbnail and refunds it."""
    caplog.set_level(logging.INFO)
    caller.grant(10)
    resp = caller.generate(image_url=caller.upload(), **LONG)
    assert resp.status_code == 202, resp.text
    job_id = resp.json()["job_id"]
    work = get_settings().home / "work"
    wait_for(
        lambda: caller.status(job_id).json().get("progress") and list(work.glob(f"job-*-{job_id}-*")),
        "the render to be under way",
    )

    canceled = caller.http.post("/functions/v1/cancel-video", json={"job_id": job_id})
    assert canceled.status_code == 200 and canceled.json()["status"] == "canceled"

    record = wait_for(lambda: _stopped_record(caplog, job_id), "the engine to stop the render")
    assert record.levelno == logging.INFO
    assert record.frame < record.frames  # type: ignore[attr-defined]
    mine = [r for r in caplog.records if getattr(r, "job_id", None) == job_id]
    assert not [r for r in mine if r.levelno >= logging.WARNING or r.exc_info], [r.getMessage() for r in mine]
    assert not list(work.glob(f"job-*-{job_id}-*"))
    media = get_settings().media_dir
    assert not (media / f"videos/{caller.id}/{job_id}.mp4").exists()
    assert not (media / f"thumbnails/{caller.id}/{job_id}.jpg").exists()
    assert caller.status(job_id).json()["status"] == "canceled"
    assert caller.balance() == 10


def _claimed(db: Database, user: uuid.UUID, engine: str = "engine-a") -> uuid.UUID:
    """A debited job claimed by an engine (provider ``test``: no real engine looks at it)."""
    job = debit_job(db, user, provider="test")
    claimed = db.call("claim_engine_job", job=job, provider="test", engine=engine, lease_s=60, takeover=False)
    assert claimed is not None and claimed["status"] == "processing"
    return job


def test_cancel_is_refused_once_the_completion_is_claimed(caller: Caller, db: Database) -> None:
    """After an engine claimed a job's completion (its files are about to move into storage), cancel-video
    answers 409 and the job completes with its charge."""
    caller.grant(10)
    job = _claimed(db, caller.id)
    assert db.call("begin_engine_completion", job=job, engine="engine-a", lease_s=60) is True
    resp = caller.http.post("/functions/v1/cancel-video", json={"job_id": str(job)})
    assert resp.status_code == 409 and resp.json()["error"]["code"] == "invalid_transition"
    assert db.call("complete_job", job=job, video_key="v", thumbnail_key=None, source_url=None, result={})
    assert caller.status(str(job)).json()["status"] == "completed"
    assert caller.balance() == 7


def test_a_cancel_first_makes_the_completion_claim_fail(caller: Caller, db: Database) -> None:
    """A cancel that lands before the completion claim wins: the claim is refused (so no file is moved) and
    the job stays canceled and refunded."""
    caller.grant(10)
    job = _claimed(db, caller.id)
    resp = caller.http.post("/functions/v1/cancel-video", json={"job_id": str(job)})
    assert resp.status_code == 200 and resp.json()["status"] == "canceled"
    assert db.call("begin_engine_completion", job=job, engine="engine-a", lease_s=60) is False
    assert db.call("engine_progress", job=job, engine="engine-a", progress=0.5, lease_s=60) == "canceled"
    assert caller.balance() == 10


def test_a_job_is_claimed_by_one_engine_until_its_claim_lapses(caller: Caller, db: Database) -> None:
    """A second engine cannot claim a job another one holds; it can once that claim lapses or is given back,
    and the first engine then learns the job is no longer its own."""
    caller.grant(10)
    job = _claimed(db, caller.id)
    claim = dict(job=job, provider="test", engine="engine-b", lease_s=60, takeover=False)
    assert db.call("claim_engine_job", **claim) is None
    assert job not in [r[0] for r in db.call_rows("claimable_engine_jobs", provider="test", limit=1000)]
    assert db.call("release_engine_job", job=job, engine="engine-a") is True
    assert job in [r[0] for r in db.call_rows("claimable_engine_jobs", provider="test", limit=1000)]
    assert db.call("claim_engine_job", **claim) is not None
    assert db.call("engine_progress", job=job, engine="engine-a", progress=0.5, lease_s=60) == "released"
    assert db.call("begin_engine_completion", job=job, engine="engine-a", lease_s=60) is False


def test_scratch_directories_of_dead_processes_are_removed() -> None:
    """remove_stale_work_dirs deletes job scratch directories whose process is gone and keeps live ones."""
    from shared.media import scratch

    with scratch.work_dir(uuid.uuid4()) as live:
        work = Path(live).parent
        dead = work / "job-999999999-0f0f-stale"
        dead.mkdir()
        (dead / "video.mp4").write_bytes(b"partial")
        assert scratch.remove_stale_work_dirs() >= 1
        assert not dead.exists() and Path(live).exists()
