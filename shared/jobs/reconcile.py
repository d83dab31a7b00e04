"""Jobs at remote providers that need attention: polls for lost webhooks, submissions lost in a crash, deadlines,
unfinished mirroring, cancellation at the provider; and the housekeeping every deployment runs on a schedule."""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, datetime
from uuid import UUID

from shared import errors, metrics
from shared.db import get_db
from shared.jobs import lifecycle as jobs
from shared.jobs import mirror, updates
from shared.providers import registry
from shared.providers.base import JobRef, JobRequest, Provider, ProviderUpdate, UpdateKind
from shared.providers.catalog import find_model
from shared.records import Job, load_job
from shared.settings import get_settings

log = logging.getLogger("i2v.jobs.reconcile")
#: Days a finished webhook delivery (and its attempts) stays in the delivery log.
WEBHOOK_LOG_DAYS = 30


def job_ref(job: Job) -> JobRef:
    """A submitted job as its provider needs to ask about it."""
    model = find_model(job.current_model)
    return JobRef(
        job_id=job.job_id,
        user_id=job.user_id,
        model=model,
        route=model.route(job.provider, job.endpoint),
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


def _request(job: Job) -> JobRequest:
    model = find_model(job.current_model)
    route = model.route(job.provider, job.endpoint)
    return JobRequest(
        job.job_id,
        job.user_id,
        model,
        route,
        job.prompt,
        job.image_url if job.stage != "image" else None,
        job.current_settings,
        input_images=tuple(job.input_images),
    )


def _taken_by_another(provider: str, job_id: UUID) -> Callable[[str], bool]:
    def taken(request_id: str) -> bool:
        owner = get_db().call("find_job_by_request", provider=provider, request_id=request_id)
        return owner is not None and str(owner) != str(job_id)

    return taken


def _find_orphan(job: Job) -> bool:
    """Ask the provider whether it has this job though we never recorded its id; re-attach it and poll if so."""
    provider = registry.get_provider(job.provider)
    since = job.created_at or datetime.now(UTC)
    found = provider.find_submission(_request(job), since, _taken_by_another(job.provider, job.job_id))
    if found is None or not found.request_id:
        return False
    log.info("re-attached a submission found at the provider", extra={"job_id": str(job.job_id)})
    get_db().call("mark_submitted", job=job.job_id, request_id=found.request_id, urls=found.urls or None)
    poll(job.job_id)
    return True


def resubmit(job_id: UUID) -> str:
    """Submit a debited job that never reached the provider (once: ``claim_submit`` lets one caller through).

    The provider is asked first whether the submission reached it after all (a crash after sending it): a job
    is never submitted twice where the provider can tell.
    """
    db = get_db()
    if not db.call("claim_submit", job=job_id):
        return "skipped"
    job = load_job(job_id)
    if job is None:
        return "skipped"
    if _find_orphan(job):
        return "found"
    return jobs.submit(_request(job))


def find(job_id: UUID) -> str:
    """A submission whose answer never came: re-attach it if the provider has it, else ask again later."""
    job = load_job(job_id)
    if job is None or not job.active or job.request_id:
        return "skipped"
    if _find_orphan(job):
        return "found"
    updates.record_status(job_id, job, ProviderUpdate(UpdateKind.UNKNOWN), get_settings().webhook_quiet_s)
    return "not_found"


def expire(job_id: UUID) -> str:
    """A submission never acknowledged by the deadline: re-attach it if the provider has it, else fail it."""
    job = load_job(job_id)
    if job is None or not job.active or job.request_id:
        return "skipped"
    if _find_orphan(job):
        return "found"
    jobs.fail(job_id, f"{job.provider} never acknowledged the job.", kind="deadline")
    return "expired"


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
                elif action == "find":
                    find(job_id)
                elif action == "expire":
                    expire(job_id)
                elif action == "poll":
                    poll(job_id)
                else:
                    mirror.mirror_job(job_id)
            except errors.I2VError as exc:
                log.warning("reconcile %s failed: %s", action, exc.message, extra={"job_id": str(job_id)})
            counts[action] = counts.get(action, 0) + 1
            metrics.RECONCILER_ACTIONS.inc(action=action)
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


def housekeeping(purge: bool = True, webhooks: bool = True) -> dict[str, int]:
    """What every deployment runs on a schedule: reconcile, send due outgoing webhooks, then purge expired
    idempotency keys, old Stripe event ids, quiet rate limiters and old finished webhook deliveries (the scheduled
    reconciler and the local server both call this; on Lambda the deliver-webhooks schedule sends webhooks, so
    the reconciler passes ``webhooks=False``)."""
    from shared.webhooks import delivery

    counts = reconcile_once()
    if webhooks:
        for outcome, n in delivery.deliver_due().items():
            counts[f"webhooks_{outcome}"] = n
    if purge:
        db = get_db()
        counts["purged_idempotency_keys"] = int(db.call("purge_idempotency_keys") or 0)
        counts["purged_stripe_events"] = int(db.call("purge_stripe_events") or 0)
        counts["purged_rate_limits"] = int(db.call("purge_rate_limits") or 0)
        counts["purged_webhook_deliveries"] = int(
            db.call("purge_webhook_deliveries", days=WEBHOOK_LOG_DAYS) or 0
        )
    return counts
