"""The scheduled reconciler: lost webhooks, crashed submissions, unfinished mirroring (not an HTTP function)."""

from __future__ import annotations

import logging
from typing import Any

from shared import hosted

log = logging.getLogger("i2v.reconcile")


def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """Run one reconciliation pass (EventBridge schedule); returns the count of each action taken."""
    counts = hosted.reconcile_once()
    log.info("reconciled", extra={"counts": counts})
    return {"reconciled": counts}
