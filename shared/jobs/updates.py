"""Provider updates applied to jobs: the one place a provider's news changes a job.

Webhooks are at-least-once and may come out of order or not at all; polls repeat them. Every step here is
idempotent: a result is recorded once (``record_provider_result``), mirrored under a lease (``claim_mirror``),
completed once (``complete_job``), and a failure refunds once (``fail_job``). Policy for a success that arrives
after we gave up (our deadline) or after a cancel: the video is kept and delivered, the refund stands, nothing
is charged again.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from uuid import UUID

from shared import errors, metrics
from shared.db import get_db
from shared.http import describe_error
from shared.jobs import lifecycle as jobs
from shared.providers import registry
from shared.providers.base import ProviderUpdate, UpdateKind
from shared.providers.catalog import find_model
from shared.records import Job, load_job
from shared.settings import get_settings

log = logging.getLogger("i2v.jobs.updates")


@dataclass(frozen=True)
class Applied:
    """What an update did; ``mirror`` names a job whose video should now be copied into storage."""

    result: str
    job_id: UUID | None = None
    mirror: UUID | None = None


def handle_webhook(
    provider_name: str, headers: Mapping[str, str], body: bytes, job_hint: UUID | None
) -> Applied:
    """Verify and read a provider's delivery (its own format), then apply it to the job it names."""
    provider = registry.get_provider(provider_name)
    update = provider.parse_webhook(headers, body)
    metrics.webhook_received(provider_name, headers)
    job_id = _find_job(provider_name, update.request_id, job_hint)
    if job_id is None:
        log.warning(
            "webhook for an unknown request",
            extra={"provider": provider_name, "request_id": update.request_id},
        )
        return Applied("unknown_request")
    job = load_job(job_id)
    if job is not None and job.request_id is None and update.request_id:
        # Submitted, but the provider's id was never recorded (a crash, or an answer that never came): attach it.
        get_db().call("mark_submitted", job=job_id, request_id=update.request_id, urls=None)
    if update.kind in (UpdateKind.QUEUED, UpdateKind.RUNNING):
        if job is None or not job.active:
            return Applied("ignored", job_id)
        return Applied(record_status(job_id, job, update, get_settings().webhook_quiet_s), job_id)
    return apply(job_id, update)


def _find_job(provider_name: str, request_id: str | None, job_hint: UUID | None) -> UUID | None:
    db = get_db()
    if request_id:
        found = db.call("find_job_by_request", provider=provider_name, request_id=request_id)
        if found is not None:
            return UUID(str(found))
    if job_hint is None:
        return None
    job = load_job(job_hint)
    if job is None or job.provider != provider_name or job.request_id not in (None, request_id):
        return None
    return job_hint  # submitted, but we crashed before recording the provider's id: re-attach


def apply(job_id: UUID, update: ProviderUpdate) -> Applied:
    """Apply one provider update to one job (idempotent; late or reordered news changes nothing)."""
    if update.kind == UpdateKind.SUCCEEDED and update.files is not None:
        return _complete_with_files(job_id, update)
    if update.kind == UpdateKind.SUCCEEDED:
        return _record_output(job_id, update)
    if update.kind == UpdateKind.FAILED:
        return Applied(_fail(job_id, update), job_id)
    if update.kind == UpdateKind.CANCELED:
        return Applied(_cancel_by_provider(job_id), job_id)
    return Applied(str(update.kind), job_id)  # queued / running news is kept by polls (record_status)


def _record_output(job_id: UUID, update: ProviderUpdate) -> Applied:
    job = load_job(job_id)
    if job is None:
        return Applied("unknown_job")
    provider = job.provider
    route = find_model(job.current_model).route(job.provider, job.endpoint)
    urls = route.output_urls(update.output) if job.makes_images else []
    url = urls[0] if urls else route.output_url(update.output) if not job.makes_images else None
    if url is None:
        missing = "finished without an image." if job.makes_images else "finished without a video."
        message = f"{provider}: " + (describe_error(update.output) or missing)
        return Applied(_fail(job_id, ProviderUpdate(UpdateKind.FAILED, message=message)), job_id)
    try:
        recorded = get_db().call(
            "record_provider_result",
            job=job_id,
            request_id=update.request_id or job.request_id,
            url=url,
            result={"provider_output": update.output, **({"output_urls": urls} if urls else {})},
        )
    except errors.InvalidTransition as exc:
        log.warning("%s result ignored: %s", provider, exc.message, extra={"job_id": str(job_id)})
        return Applied("ignored", job_id)
    if recorded is None:
        return Applied("already_completed", job_id)
    return Applied("recorded", job_id, mirror=job_id)


def _complete_with_files(job_id: UUID, update: ProviderUpdate) -> Applied:
    assert update.files is not None
    job = load_job(job_id)
    if job is None:
        return Applied("unknown_job")
    if update.files.images:
        done = jobs.complete_with_images(job, list(update.files.images), result=update.files.facts)
        return Applied("completed" if done else "already_completed", job_id)
    if update.files.video is None:
        return Applied(_fail(job_id, ProviderUpdate(UpdateKind.FAILED, message="finished without output")))
    done = jobs.complete_with_files(
        job_id,
        job.user_id,
        update.files.video,
        update.files.thumbnail,
        result=update.files.facts,
    )
    return Applied("completed" if done else "already_completed", job_id)


def _fail(job_id: UUID, update: ProviderUpdate) -> str:
    try:
        failed = jobs.fail(job_id, update.message or "failed", kind=update.failure_kind)
    except errors.InvalidTransition:
        return "ignored"  # completed or canceled already: a late or reordered delivery
    return "failed" if failed else "already_failed"


def _cancel_by_provider(job_id: UUID) -> str:
    """The provider confirms a cancellation we asked for: the job ends canceled (refunded once)."""
    job = load_job(job_id)
    if job is None:
        return "unknown_job"
    try:
        canceled = get_db().call("cancel_job", user=job.user_id, job=job_id)
    except errors.InvalidTransition:
        return "ignored"
    return "canceled" if canceled else "already_canceled"


def record_status(job_id: UUID, job: Job, update: ProviderUpdate, next_poll_s: int) -> str:
    """Keep what a poll said about a job still queued or running (status, queue position, logs)."""
    live = (UpdateKind.QUEUED, UpdateKind.RUNNING)
    status = str(update.kind) if update.kind in live else (job.provider_status or str(UpdateKind.QUEUED))
    get_db().call(
        "record_provider_status",
        job=job_id,
        status=status,
        queue_position=update.queue_position,
        logs=list(update.logs) or None,
        next_poll_s=next_poll_s,
    )
    return str(update.kind)
