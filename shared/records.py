"""A job as the code reads it: one typed record of a ``video_jobs`` row (the SQL function ``job_record``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from uuid import UUID

from shared import metrics
from shared.db import get_db
from shared.schemas import ACTIVE_STATUSES, JobStatus


def _time(value: Any) -> datetime | None:
    if value is None or isinstance(value, datetime):
        return value
    return datetime.fromisoformat(str(value))


def _uuid(value: Any) -> UUID | None:
    return None if value is None else UUID(str(value))


@dataclass(frozen=True, slots=True)
class Job:
    """One job: who asked, for what, where it runs, and how far it got."""

    job_id: UUID
    user_id: UUID
    status: JobStatus
    model: str
    provider: str
    endpoint: str | None
    kind: str
    prompt: str
    image_url: str | None
    settings: dict[str, Any]
    credits_used: int
    progress: float | None = None
    video_key: str | None = None
    thumbnail_key: str | None = None
    error_message: str | None = None
    failure_kind: str | None = None
    queue_position: int | None = None
    logs: list[Any] = field(default_factory=list)
    images: list[dict[str, Any]] = field(default_factory=list)  # an image job's images, in order
    input_images: list[str] = field(default_factory=list)  # an image edit's reference images
    stage: str | None = None  # a video from a prompt alone: "image" (its start image), then "video"
    image_credits: int = 0  # the image part of such a job's charge
    next_route: dict[str, Any] | None = None
    late_delivery: bool = False
    request_id: str | None = None
    urls: dict[str, Any] = field(default_factory=dict)
    provider_status: str | None = (
        None  # queued | running | succeeded | submit_unknown (our words, whatever the provider)
    )
    result_url: str | None = None
    mirror_attempts: int = 0
    output_urls: list[str] | None = None  # an image job's output URLs at its provider
    campaign_id: UUID | None = None
    client_id: UUID | None = None
    next_poll_at: datetime | None = None
    created_at: datetime | None = None
    updated_at: datetime | None = None
    finished_at: datetime | None = None

    @property
    def makes_images(self) -> bool:
        """True while the job makes images: an image job, or a video's image stage."""
        return self.kind == "image" or self.stage == "image"

    @property
    def current_model(self) -> str:
        """The model working on the job now: the image model during a video's image stage, else the job's."""
        if self.stage == "image":
            return str(self.settings.get("image_stage", {}).get("model") or self.model)
        return self.model

    @property
    def current_settings(self) -> dict[str, Any]:
        """The settings of the model working on the job now."""
        if self.stage == "image":
            staged: dict[str, Any] = self.settings.get("image_stage", {}).get("settings") or {}
            return staged
        return {k: v for k, v in self.settings.items() if k != "image_stage"}

    @property
    def active(self) -> bool:
        """True while the job may still change (pending or processing)."""
        return self.status in ACTIVE_STATUSES

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> Job:
        """Read the JSON object ``job_record`` returns."""
        return cls(
            job_id=UUID(str(record["job_id"])),
            user_id=UUID(str(record["user_id"])),
            status=JobStatus(record["status"]),
            model=str(record["model"]),
            provider=str(record["provider"]),
            endpoint=record.get("endpoint"),
            kind=str(record.get("kind") or "video"),
            prompt=record.get("prompt") or "",
            image_url=record.get("image_url"),
            settings=record.get("settings") or {},
            credits_used=int(record.get("credits_used") or 0),
            progress=record.get("progress"),
            video_key=record.get("video_key"),
            thumbnail_key=record.get("thumbnail_key"),
            error_message=record.get("error_message"),
            failure_kind=record.get("failure_kind"),
            queue_position=record.get("queue_position"),
            logs=list(record.get("logs") or []),
            images=list(record.get("images") or []),
            input_images=[str(u) for u in record.get("input_images") or []],
            stage=record.get("stage"),
            image_credits=int(record.get("image_credits") or 0),
            next_route=record.get("next_route"),
            late_delivery=bool(record.get("late_delivery")),
            request_id=record.get("request_id"),
            urls=record.get("urls") or {},
            provider_status=record.get("provider_status"),
            result_url=record.get("result_url"),
            mirror_attempts=int(record.get("mirror_attempts") or 0),
            output_urls=[str(u) for u in record["output_urls"]] if record.get("output_urls") else None,
            campaign_id=_uuid(record.get("campaign_id")),
            client_id=_uuid(record.get("client_id")),
            next_poll_at=_time(record.get("next_poll_at")),
            created_at=_time(record.get("created_at")),
            updated_at=_time(record.get("updated_at")),
            finished_at=_time(record.get("finished_at")),
        )


def load_job(job_id: UUID, *, user: UUID | None = None) -> Job | None:
    """One job; with ``user``, only when that user owns it (another user's job reads as none)."""
    if user is None:
        record = get_db().call("job_for_provider", job=job_id)
    else:
        record = get_db().call("get_job", user=user, job=job_id)
    if record is None:
        return None
    job = Job.from_record(record)
    metrics.remember_job(job.job_id, job.model, job.provider, job.created_at, job.credits_used)  # labels
    return job
