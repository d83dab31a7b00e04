"""Copy one finished video into storage: fal-webhook's asynchronous hand-off (not an HTTP function)."""

from __future__ import annotations

import logging
from typing import Any
from uuid import UUID

from shared import invoke, logs, metrics

log = logging.getLogger("i2v.mirror")


def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """Mirror the job named by ``{"job_id": ...}``; an error is raised so that Lambda retries the invocation."""
    from shared.jobs import mirror

    logs.configure()
    try:
        job_id = UUID(str(event["job_id"]))
    except (KeyError, TypeError, ValueError):
        log.error("mirror event without a job id", extra={"event_keys": sorted(event)[:10]})
        return {"mirrored": False, "error": "no job_id"}
    with logs.scope(job_id=str(job_id), aws_request_id=getattr(context, "aws_request_id", None)):
        try:
            done = mirror.mirror_job(job_id)
        finally:
            invoke.wake_webhook_sender()
            metrics.invocation_end(context)
    return {"job_id": str(job_id), "mirrored": done}
