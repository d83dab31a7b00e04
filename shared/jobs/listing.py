"""The caller's jobs: one page of them newest first (keyset pagination), and counts by status.

A cursor is opaque to clients: the URL-safe base64 of ``<created_at in epoch microseconds>.<job id>`` naming the
last job of the previous page. Each call is one procedure call.
"""

from __future__ import annotations

import base64
import binascii
from datetime import UTC, datetime, timedelta
from uuid import UUID

from shared import errors
from shared.auth import User
from shared.db import get_db
from shared.jobs.service import status_view
from shared.limits import LIST_PAGE_LIMIT
from shared.records import Job
from shared.schemas import JobCounts, JobList, JobStatus, VideoList, VideoSummary

STATUSES: list[str] = [str(s) for s in JobStatus]
KINDS = ("video", "image")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)


def encode_cursor(created_at: datetime, job_id: UUID) -> str:
    """The opaque cursor that resumes listing after this job."""
    micros = (created_at - _EPOCH) // _MICROSECOND
    return base64.urlsafe_b64encode(f"{micros}.{job_id}".encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, UUID]:
    """The (created_at, id) a cursor names, or a 400 naming ``cursor``."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode("ascii")
        micros, _, job_id = raw.partition(".")
        return _EPOCH + int(micros) * _MICROSECOND, UUID(job_id)
    except (binascii.Error, UnicodeDecodeError, ValueError, OverflowError) as exc:
        raise errors.InvalidField("cursor", "The cursor is not one this API returned.") from exc


def list_videos(
    user: User,
    status: str | None,
    limit: int,
    cursor: str | None,
    *,
    campaign_id: UUID | None = None,
    client_id: UUID | None = None,
) -> VideoList:
    """One page of the caller's video jobs, newest first, optionally of one status, campaign or client."""
    jobs, next_cursor = _page(user, status, limit, cursor, "video", campaign_id, client_id)
    return VideoList(videos=jobs, next_cursor=next_cursor)


def list_jobs(
    user: User,
    kind: str | None,
    status: str | None,
    limit: int,
    cursor: str | None,
    *,
    campaign_id: UUID | None = None,
    client_id: UUID | None = None,
) -> JobList:
    """One page of the caller's jobs (videos and images, or one kind), newest first, optionally of one status,
    campaign or client."""
    if kind is not None and kind not in KINDS:
        raise errors.InvalidField("kind", f"Unknown kind {kind!r}.", allowed=list(KINDS))
    jobs, next_cursor = _page(user, status, limit, cursor, kind, campaign_id, client_id)
    return JobList(jobs=jobs, next_cursor=next_cursor)


def _page(
    user: User,
    status: str | None,
    limit: int,
    cursor: str | None,
    kind: str | None,
    campaign_id: UUID | None = None,
    client_id: UUID | None = None,
) -> tuple[list[VideoSummary], str | None]:
    if status is not None and status not in STATUSES:
        raise errors.InvalidField("status", f"Unknown status {status!r}.", allowed=STATUSES)
    if not 1 <= limit <= LIST_PAGE_LIMIT:
        raise errors.InvalidField("limit", f"limit must be between 1 and {LIST_PAGE_LIMIT}.")
    after: tuple[datetime | None, UUID | None] = decode_cursor(cursor) if cursor else (None, None)
    page = get_db().call(
        "list_videos",
        user=user.id,
        status=status,
        limit=limit,
        cursor_created=after[0],
        cursor_id=after[1],
        kind=kind,
        campaign=campaign_id,
        client=client_id,
    )
    jobs = [_summary(Job.from_record(record)) for record in page["jobs"]]
    nxt = page.get("next")
    next_cursor = encode_cursor(datetime.fromisoformat(nxt["created_at"]), UUID(nxt["id"])) if nxt else None
    return jobs, next_cursor


def _summary(job: Job) -> VideoSummary:
    return VideoSummary(**status_view(job).model_dump(), prompt=job.prompt, settings=job.settings)


def job_counts(user: User) -> JobCounts:
    """The caller's jobs counted by status (every status present, zero included)."""
    counts: dict[str, int] = get_db().call("job_counts", user=user.id)
    return JobCounts.model_validate({"counts": counts, "total": sum(counts.values())})
