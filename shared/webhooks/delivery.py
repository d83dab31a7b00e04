"""Sending queued webhook deliveries: claim the due ones, sign each attempt, POST it to a checked address, record
the answer and schedule the next attempt.

At least once: a delivery stays pending until an endpoint answers 2xx, with exponential backoff and jitter for
about 24 hours (RETRY_SCHEDULE_S), then ends failed (list-webhook-deliveries shows it; redeliver-webhook sends it
again). A 410 Gone disables the endpoint, and so do failures with no 2xx for WEBHOOK_DISABLE_AFTER_S (5 days; then
enable-webhook-endpoint sends to it again). Redirects are not followed (a 3xx is a failure), an answer's body is
never read. A batch is sent in order per destination URL and by up to WEBHOOK_CONCURRENCY destinations at once,
so that one slow endpoint delays no other customer's events. Nothing here touches a job: the webhook sender, the
reconciler or the deliver-webhooks function runs it, never a request.
"""

from __future__ import annotations

import logging
import random
import time
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

from shared import errors, metrics
from shared.db import get_db
from shared.http import make_client
from shared.settings import get_settings
from shared.webhooks import destinations, signing

if TYPE_CHECKING:
    import httpx

log = logging.getLogger("i2v.webhooks")

#: Seconds before each retry after a failed attempt (about 23.6 hours in all, then the delivery fails).
RETRY_SCHEDULE_S: tuple[int, ...] = (5, 60, 300, 1800, 3600, 7200, 14400, 28800, 28800)
_JITTER = 0.1
_LEASE_S = 120


def retry_delay(attempts: int, retry_after: float | None = None) -> int | None:
    """Seconds until the next attempt after ``attempts`` failed ones (None: give up), with +-10% jitter; a
    Retry-After the endpoint asked for is honoured when it is longer."""
    if attempts > len(RETRY_SCHEDULE_S):
        return None
    base = RETRY_SCHEDULE_S[attempts - 1]
    delay = base * (1 + random.uniform(-_JITTER, _JITTER))
    return max(1, round(max(delay, retry_after or 0)))


def deliver_due(limit: int | None = None, client: httpx.Client | None = None) -> dict[str, int]:
    """Send every claimed due delivery once; returns how many were delivered, will be retried and failed."""
    settings = get_settings()
    claimed: list[dict[str, Any]] = get_db().call(
        "claim_webhook_deliveries", limit=limit or settings.webhook_batch, lease_s=_LEASE_S
    )
    counts = {"delivered": 0, "retrying": 0, "failed": 0}
    if not claimed:
        return counts
    own = client or make_client(settings.webhook_timeout_s, connect=5.0)
    # One queue per destination, sent in order (a job's events arrive as they happened, and an endpoint gets one
    # request at a time); destinations concurrently, so a slow or hanging one holds up only its own queue.
    queues: dict[str, list[dict[str, Any]]] = {}
    for claimed_delivery in claimed:
        queues.setdefault(str(claimed_delivery["url"]), []).append(claimed_delivery)

    def send_queue(queue: list[dict[str, Any]]) -> list[str]:
        outcomes, disabled = [], set()
        for one in queue:
            if one["endpoint_id"] in disabled:  # disabled by an earlier answer: its deliveries ended failed
                outcomes.append("failed")
                continue
            outcome, disabling = _send(own, one)
            outcomes.append(outcome)
            if disabling:
                disabled.add(one["endpoint_id"])
        return outcomes

    workers = min(settings.webhook_concurrency, len(queues))
    try:
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="i2v-webhook") as pool:
            for outcomes in pool.map(send_queue, queues.values()):
                for outcome in outcomes:
                    counts[outcome] += 1
    finally:
        if client is None:
            own.close()
    return counts


def _secret(delivery: dict[str, Any]) -> str:
    if delivery.get("secret"):
        return str(delivery["secret"])
    secret: str = get_db().call(
        "ensure_webhook_secret", user=delivery["user_id"], secret=signing.new_secret(), signup_credits=0
    )
    return secret


def _send(client: httpx.Client, delivery: dict[str, Any]) -> tuple[str, str | None]:
    """Send one delivery and record the attempt: its outcome and, when the answer disabled the endpoint, why."""
    import httpx

    body = str(delivery["payload"]).encode()
    started = time.perf_counter()
    status: int | None = None
    error: str | None = None
    retry_after: float | None = None
    try:
        addresses = destinations.check_destination(str(delivery["url"]))
        target, host, extensions = destinations.pinned(str(delivery["url"]), addresses)
        msg_id = signing.message_id(delivery["id"])
        headers = {**host, **signing.headers(_secret(delivery), msg_id, body)}
        request = client.build_request("POST", target, content=body, headers=headers, extensions=extensions)
        resp = client.send(request, stream=True)  # the status and headers only: a body is never read
        resp.close()
        status = resp.status_code
        if not 200 <= status < 300:
            error = f"HTTP {status}"
            retry_after = _retry_after(resp.headers.get("retry-after"))
    except errors.InvalidField as exc:
        error = exc.message
    except httpx.TimeoutException:
        error = "timed out"
    except httpx.HTTPError as exc:
        error = f"connection failed ({type(exc).__name__})"
    return _record(delivery, status, error, started, retry_after)


def _record(
    delivery: dict[str, Any], status: int | None, error: str | None, started: float, retry_after: float | None
) -> tuple[str, str | None]:
    ok = status is not None and 200 <= status < 300
    gone = status == 410
    delay = None if ok or gone else retry_delay(int(delivery["attempts"]), retry_after)
    disabled: str | None = get_db().call(
        "record_webhook_attempt",
        delivery=delivery["id"],
        status=status,
        error=error,
        duration_ms=round((time.perf_counter() - started) * 1000),
        retry_in_s=delay,
        gone=gone,
        disable_after_s=get_settings().webhook_disable_after_s,
    )
    if not ok:
        log.info(
            "webhook attempt failed",
            extra={"delivery_id": str(delivery["id"]), "status": status, "error": error},
        )
    if disabled:
        metrics.WEBHOOK_ENDPOINTS_DISABLED.inc(reason=disabled)
        log.warning(
            "webhook endpoint disabled",
            extra={
                "endpoint_id": str(delivery["endpoint_id"]),
                "user_id": str(delivery["user_id"]),
                "reason": disabled,
            },
        )
    if ok:
        return "delivered", None
    return ("retrying" if delay is not None and not disabled else "failed"), disabled


def _retry_after(value: str | None) -> float | None:
    if value and value.strip().isdigit():
        return float(value.strip())
    return None
