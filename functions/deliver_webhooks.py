"""The scheduled webhook sender: due deliveries of job events, signed, with retries (not an HTTP function)."""

from __future__ import annotations

import logging
from typing import Any

from shared import logs

log = logging.getLogger("i2v.webhooks")


def handler(event: dict[str, Any], context: Any) -> dict[str, int]:
    """Send the due outgoing webhook deliveries once (EventBridge schedule); returns how each ended."""
    from shared.webhooks import delivery

    logs.configure()
    with logs.scope(aws_request_id=getattr(context, "aws_request_id", None)):
        counts = delivery.deliver_due()
        log.info("webhooks sent", extra={"event": "deliver_webhooks", "counts": counts})
    return counts
