"""Jobs at remote providers that need attention: polls for lost webhooks, submissions lost in a crash, deadlines,
unfinished mirroring, cancellation at the provider; and the housekeeping every deployment runs on a schedule."""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from uuid import UUID

from shared import errors
from shared.db import get_db
from shared.jobs import lifecycle as jobs
from shared.jobs import mirror, updates
from shared.providers import registry
from shared.providers.base import JobRef, JobRequest, Provider, ProviderUpdate, UpdateKind
from shared.providers.catalog import find_model
from shared.records import Job, load_job
from shared.settings import get_settings

log = logging.getLogger("i2v.jobs.reconcile")


def job_ref(job: Job) -> JobRef:
    """A submitted job as its provider needs to ask about it."""
    return JobRef(
        job_id=job.job_id,
        user_id=job.user_id,
        model=find_model(job.model),
        request_id=str(job.request_id),
        urls=job.urls,
    )


def poll(job_id: UUID) -> str:
    """Ask the provider about one submitted job and apply what it says (a lost webhook's stand-in)."""
    settings = get_settings()
    job = load_job(job_id)
    if job is None or not job.active or not job.request_id:
        return "skipped"
    provider = registry.get_provider(job.provider)
    ref = job_ref(job)
    update = provider.status(ref)
    if update.kind == UpdateKind.SUCCEEDED and update.output is None and update.files is None:
        update = provider.result(ref)
    if update.terminal:
        applied = updates.apply(job_id, update)
        if applied.mirror:
            mirror.copy_video(applied.mirror)
        return applied.result
    if _past_deadline(job):
        jobs.fail(job_id, f"{provider.name} did not finish the job in time.", kind="deadline")
        return "expired"
    if update.kind == UpdateKind.UNKNOWN:
        return updates.record_status(job_id, job, update, settings.webhook_quiet_s)
    updates.record_status(job_id, job, update, settings.status_poll_min_interval_s)
    return {UpdateKind.QUEUED: "in_queue", UpdateKind.RUNNING: "in_progress"}.get(
        update.kind, str(update.kind)
    )


def _past_deadline(job: Job) -> bool:
    created = job.created_at or datetime.now(UTC)
    return (datetime.now(UTC) - created).total_seconds() > get_settings().job_deadline_s


def resubmit(job_id: UUID) -> str:
    """Submit a debited job that never reached the provider (once: ``claim_submit`` lets one caller through)."""
    db = get_db()
    if not db.call("claim_submit", job=job_id):
        return "skipped"
    job = load_job(job_id)
    if job is None:
        return "skipped"
    request = JobRequest(job_id, job.user_id, find_model(job.model), job.prompt, job.image_url, job.settings)
    return jobs.submit(request)


def remote_providers() -> list[Provider]:
    """The providers whose jobs live elsewhere and that can be reached now."""
    return [p for p in registry.all_providers() if p.remote_submit and not p.unavailable_reason()]


def reconcile_once(limit: int = 100) -> dict[str, int]:
    """One pass over the remote providers' jobs that need attention; returns how many of each action ran."""
    settings = get_settings()
    counts: dict[str, int] = {}
    for provider in remote_providers():
        rows = get_db().call_rows(
            "reconcile_candidates",
            provider=provider.name,
            submit_grace_s=settings.webhook_quiet_s,
            quiet_s=settings.webhook_quiet_s,
            deadline_s=settings.job_deadline_s,
            limit=limit,
        )
        for job_id, action in rows:
            try:
                if action == "submit":
                    resubmit(job_id)
                elif action == "expire":
                    jobs.fail(job_id, f"{provider.name} never acknowledged the job.", kind="deadline")
                elif action == "poll":
                    poll(job_id)
                else:
                    mirror.mirror_job(job_id)
            except errors.I2VError as exc:
                log.warning("reconcile %s failed: %s", action, exc.message, extra={"job_id": str(job_id)})
            counts[action] = counts.get(action, 0) + 1
    return counts


def refresh_if_stale(job: Job) -> bool:
    """Poll the provider once for a remote job the status endpoint finds stale (rate-limited by
    ``next_poll_at``)."""
    provider = registry.find_provider(job.provider)
    if provider is None or not provider.remote_submit:
        return False
    if not job.active or not job.request_id:
        return False
    now = datetime.now(UTC)
    if job.next_poll_at and job.next_poll_at > now:
        return False
    if job.updated_at and (now - job.updated_at).total_seconds() < get_settings().status_stale_s:
        return False
    try:
        poll(job.job_id)
    except errors.I2VError as exc:
        log.info("status refresh failed: %s", exc.message)
    return True


def cancel_remote(job_id: UUID, user_id: UUID) -> None:
    """Cancel a job at its remote provider; refund only when the provider accepted before completing."""
    db = get_db()
    job = load_job(job_id, user=user_id)
    if job is None:
        raise errors.JobNotFound(f"No job {job_id} for this user.", job_id=str(job_id))
    if job.result_url and job.active:
        raise errors.InvalidTransition("The video is finished and being saved; it can no longer be canceled.")
    if not job.active or not job.request_id:
        db.call(
            "cancel_job", user=user_id, job=job_id
        )  # not at the provider yet, or terminal: the procedure decides
        return
    answer = registry.get_provider(job.provider).cancel(job_ref(job))
    if answer == "already_completed":
        poll(job_id)  # the job completes normally
        return
    updates.apply(
        job_id, _CANCELED
    )  # the provider's own confirmation (a webhook) may have canceled it already


_CANCELED = ProviderUpdate(UpdateKind.CANCELED)


def housekeeping(purge: bool = True) -> dict[str, int]:
    """What every deployment runs on a schedule: reconcile, then purge expired idempotency keys and old Stripe
    event ids (the scheduled reconciler and the local server both call this)."""
    counts = reconcile_once()
    if purge:
        db = get_db()
        counts["purged_idempotency_keys"] = int(db.call("purge_idempotency_keys") or 0)
        counts["purged_stripe_events"] = int(db.call("purge_stripe_events") or 0)
    return counts
