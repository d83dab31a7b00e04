"""The scheduled reconciler: lost webhooks, crashed submissions, unfinished mirroring (not an HTTP function)."""

from __future__ import annotations

import logging
from typing import Any

from shared import logs, metrics

log = logging.getLogger("i2v.reconcile")


def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """Run one reconciliation pass (EventBridge schedule), purge expired Idempotency-Keys and Stripe event ids
    too old to be delivered again, check the ledger when due; returns the counts."""
    from shared import operations
    from shared.jobs import reconcile

    logs.configure()
    with logs.scope(aws_request_id=getattr(context, "aws_request_id", None)):
        try:
            counts = reconcile.housekeeping(webhooks=False)  # functions/deliver_webhooks.py sends them
            operations.check_ledger()
        finally:
            metrics.invocation_end(context)
        purged = counts.pop("purged_idempotency_keys")
        events = counts.pop("purged_stripe_events")
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
