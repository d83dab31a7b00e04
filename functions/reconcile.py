"""The scheduled reconciler: lost webhooks, crashed submissions, unfinished mirroring (not an HTTP function)."""

from __future__ import annotations

import logging
from typing import Any

from shared import logs

log = logging.getLogger("i2v.reconcile")


def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """Run one reconciliation pass (EventBridge schedule), purge expired Idempotency-Keys and Stripe event ids
    too old to be delivered again; returns the counts."""
    from shared.db import get_db
    from shared.jobs import hosted

    logs.configure()
    with logs.scope(aws_request_id=getattr(context, "aws_request_id", None)):
        counts = hosted.reconcile_once()
        purged = int(get_db().call("purge_idempotency_keys") or 0)
        events = int(get_db().call("purge_stripe_events") or 0)
        log.info(
            "reconciled",
            extra={
                "event": "reconcile",
                "counts": counts,
                "purged_keys": purged,
                "purged_stripe_events": events,
            },
        )
    return {"reconciled": counts, "purged_keys": purged, "purged_stripe_events": events}
