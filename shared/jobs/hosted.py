"""Hosted jobs (fal): signed completion webhooks, polling, reconciliation and cancellation.

Webhooks are at-least-once and may come out of order or not at all. Every step here is idempotent: a result is
recorded once (``record_provider_result``), mirrored under a lease (``claim_mirror``), completed once
(``complete_job``), and a failure refunds once (``fail_job``). Policy for a success that arrives after we gave up
(our deadline) or after a cancel: the video is kept and delivered, the refund stands, nothing is charged again.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any
from uuid import UUID

from shared import errors
from shared.db import get_db
from shared.http import describe_error
from shared.jobs import mirror
from shared.jobs import service as jobs
from shared.providers.base import JobRequest
from shared.providers.catalog import find_model
from shared.providers.fal.provider import FalProvider, get_fal
from shared.providers.fal.signature import FalJwks, FalSignatureError, verify_fal_webhook
from shared.settings import get_settings
from shared.web import json_body

log = logging.getLogger("i2v.hosted")
_jwks: dict[str, FalJwks] = {}


@dataclass(frozen=True)
class WebhookOutcome:
    """What a verified delivery did; ``mirror`` names a job whose video should now be copied."""

    result: str
    job_id: UUID | None = None
    mirror: UUID | None = None


def _fal_jwks() -> FalJwks:
    url = get_settings().fal_jwks_url
    if url not in _jwks:
        _jwks[url] = FalJwks(url)
    return _jwks[url]


def handle_fal_webhook(headers: dict[str, str], body: bytes, job_hint: UUID | None) -> WebhookOutcome:
    """Verify a fal delivery over its raw bytes, then apply it (idempotently)."""
    try:
        verify_fal_webhook(headers, body, _fal_jwks())
    except FalSignatureError as exc:
        raise errors.InvalidSignature(f"The fal webhook signature is not valid: {exc}") from exc
    event = json_body(body)  # bounded nesting, no NUL or unpaired surrogate, finite numbers (else 400)
    if not isinstance(event, dict):
        raise errors.InvalidField("body", "The webhook body is not a JSON object.")
    lowered = {k.lower(): v for k, v in headers.items()}
    request_id = str(event.get("request_id") or "")
    if not request_id or request_id != lowered.get("x-fal-webhook-request-id"):
        raise errors.InvalidField(
            "request_id", "The webhook body's request_id does not match the signed header."
        )
    job_id = _find_job(request_id, job_hint)
    if job_id is None:
        log.warning("fal webhook for an unknown request", extra={"request_id": request_id})
        return WebhookOutcome("unknown_request")
    if event.get("status") == "OK" and event.get("payload") is not None:
        return _apply_output(job_id, request_id, event["payload"])
    payload = event.get("payload")
    if isinstance(payload, dict) and payload.get("error_type") == "client_cancelled":
        return WebhookOutcome(_cancel_by_provider(job_id), job_id)
    message = (
        event.get("error") or event.get("payload_error") or describe_error(event.get("payload")) or "failed"
    )
    detail = describe_error(event.get("payload"))
    if detail and detail not in str(message):
        message = f"{message}: {detail}"
    return WebhookOutcome(_fail_by_provider(job_id, str(message)), job_id)


def _find_job(request_id: str, job_hint: UUID | None) -> UUID | None:
    db = get_db()
    found = db.call("find_job_by_request", provider="fal", request_id=request_id)
    if found is not None:
        return UUID(str(found))
    if job_hint is None:
        return None
    job = db.call("job_for_provider", job=job_hint)
    if job is None or job["provider"] != "fal" or job["request_id"] not in (None, request_id):
        return None
    return job_hint  # submitted, but we crashed before recording fal's request id: re-attach


def _apply_output(job_id: UUID, request_id: str, output: Any) -> WebhookOutcome:
    job = get_db().call("job_for_provider", job=job_id)
    spec = find_model(job["model"])
    url = spec.output_url(output)
    if url is None:
        message = describe_error(output) or "fal finished without a video."
        return WebhookOutcome(_fail_by_provider(job_id, message), job_id)
    try:
        recorded = get_db().call(
            "record_provider_result",
            job=job_id,
            request_id=request_id,
            url=url,
            result={"provider_output": output},
        )
    except errors.InvalidTransition as exc:
        log.warning("fal result ignored: %s", exc.message, extra={"job_id": str(job_id)})
        return WebhookOutcome("ignored", job_id)
    if recorded is None:
        return WebhookOutcome("already_completed", job_id)
    return WebhookOutcome("recorded", job_id, mirror=job_id)


def _fail_by_provider(job_id: UUID, message: str) -> str:
    try:
        failed = jobs.fail(job_id, f"fal: {message}", kind="provider")
    except errors.InvalidTransition:
        return "ignored"  # completed or canceled already: a late or reordered delivery
    return "failed" if failed else "already_failed"


def _cancel_by_provider(job_id: UUID) -> str:
    """fal confirms a cancellation we asked for: the job ends canceled (refunded once)."""
    job = get_db().call("job_for_provider", job=job_id)
    try:
        canceled = get_db().call("cancel_job", user=UUID(str(job["user_id"])), job=job_id)
    except errors.InvalidTransition:
        return "ignored"
    return "canceled" if canceled else "already_canceled"


def poll(job_id: UUID, provider: FalProvider | None = None) -> str:
    """Ask fal about one submitted job and apply what it says (a lost webhook's stand-in)."""
    provider = provider or get_fal()
    settings = get_settings()
    db = get_db()
    job = db.call("job_for_provider", job=job_id)
    if job is None or job["status"] not in ("pending", "processing") or not job.get("request_id"):
        return "skipped"
    spec = find_model(job["model"])
    state = provider.status(job, spec)
    if state.state == "COMPLETED" and state.error:
        return _fail_by_provider(job_id, state.error)
    if state.state == "COMPLETED":
        try:
            output = provider.result(job, spec)
        except errors.ProviderJobFailed as exc:
            return _fail_by_provider(job_id, exc.message)
        outcome = _apply_output(job_id, job["request_id"], output)
        if outcome.mirror:
            mirror.copy_video(outcome.mirror)
        return outcome.result
    if _past_deadline(job):
        jobs.fail(job_id, "fal did not finish the job in time.", kind="deadline")
        return "expired"
    if state.state == "UNKNOWN":
        db.call(
            "record_provider_status",
            job=job_id,
            status=job.get("provider_status") or "IN_QUEUE",
            queue_position=None,
            logs=None,
            next_poll_s=settings.webhook_quiet_s,
        )
        return "unknown"
    db.call(
        "record_provider_status",
        job=job_id,
        status=state.state,
        queue_position=state.queue_position,
        logs=state.logs or None,
        next_poll_s=settings.status_poll_min_interval_s,
    )
    return state.state.lower()


def _past_deadline(job: dict[str, Any]) -> bool:
    from datetime import UTC, datetime

    created = datetime.fromisoformat(str(job["created_at"]))
    return (datetime.now(UTC) - created).total_seconds() > get_settings().job_deadline_s


def resubmit(job_id: UUID) -> str:
    """Submit a debited job that never reached the provider (once: ``claim_submit`` lets one caller through)."""
    db = get_db()
    if not db.call("claim_submit", job=job_id):
        return "skipped"
    job = db.call("job_for_provider", job=job_id)
    request = JobRequest(
        job_id,
        UUID(job["user_id"]),
        find_model(job["model"]),
        job["prompt"],
        job["image_url"],
        job["settings"],
    )
    return jobs.submit(request)


def reconcile_once(limit: int = 100) -> dict[str, int]:
    """One pass over hosted jobs that need attention; returns how many of each action ran."""
    settings = get_settings()
    if get_fal().unavailable_reason():
        return {}
    rows = get_db().call_rows(
        "reconcile_candidates",
        provider="fal",
        submit_grace_s=settings.webhook_quiet_s,
        quiet_s=settings.webhook_quiet_s,
        deadline_s=settings.job_deadline_s,
        limit=limit,
    )
    counts: dict[str, int] = {}
    for job_id, action in rows:
        try:
            if action == "submit":
                resubmit(job_id)
            elif action == "expire":
                jobs.fail(job_id, "fal never acknowledged the job.", kind="deadline")
            elif action == "poll":
                poll(job_id)
            else:
                mirror.mirror_job(job_id)
        except errors.I2VError as exc:
            log.warning("reconcile %s failed: %s", action, exc.message, extra={"job_id": str(job_id)})
        counts[action] = counts.get(action, 0) + 1
    return counts


def refresh_if_stale(job: dict[str, Any]) -> bool:
    """Poll fal once for a hosted job the status endpoint finds stale (rate-limited by ``next_poll_at``)."""
    from datetime import UTC, datetime

    if (
        job.get("provider") != "fal"
        or job["status"] not in ("pending", "processing")
        or not job.get("request_id")
    ):
        return False
    now = datetime.now(UTC)
    next_poll = job.get("next_poll_at")
    if next_poll and datetime.fromisoformat(str(next_poll)) > now:
        return False
    updated = datetime.fromisoformat(str(job["updated_at"]))
    if (now - updated).total_seconds() < get_settings().status_stale_s:
        return False
    try:
        poll(UUID(str(job["job_id"])))
    except errors.I2VError as exc:
        log.info("status refresh failed: %s", exc.message)
    return True


def cancel(job_id: UUID, user_id: UUID) -> None:
    """Cancel a hosted job at fal; refund only when fal accepted the cancellation before completing."""
    db = get_db()
    job = db.call("job_for_provider", job=job_id)
    if job is None or str(job["user_id"]) != str(user_id):
        raise errors.JobNotFound(f"No job {job_id} for this user.", job_id=str(job_id))
    if job.get("result_url") and job["status"] in ("pending", "processing"):
        raise errors.InvalidTransition("The video is finished and being saved; it can no longer be canceled.")
    if job["status"] not in ("pending", "processing") or not job.get("request_id"):
        db.call("cancel_job", user=user_id, job=job_id)  # not at fal yet, or terminal: the procedure decides
        return
    answer = get_fal().cancel(job, find_model(job["model"]))
    if answer == "already_completed":
        poll(job_id)  # the job completes normally
        return
    _cancel_by_provider(job_id)  # fal's own confirmation (a webhook) may have canceled it already
