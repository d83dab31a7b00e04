"""What operators watch: the operator overview (GET operator-overview, the console's operator page) and the
scheduled ledger check.

The overview is read-only and for operators only (``shared.auth.is_operator``: OPERATOR_USER_IDS or the
``operator`` role in the token's app_metadata); anyone else gets 403. Its figures come from two places:

* the database, for the whole deployment: jobs started and finished by model and provider with generation-time
  percentiles, failures by kind, job refunds, copied videos, the jobs waiting longest, and the two ledger checks
  (``ledger_mismatches``, ``purchase_mismatches``: both must be 0);
* this process's own metrics (shared.metrics) since it started: provider call latency and errors, circuit
  breakers, webhook lag, copies, reconciler actions. On the local server that is the whole stack; on Lambda it
  is one container, and CloudWatch (the EMF metrics) has the deployment's.
"""

from __future__ import annotations

import logging
import threading
import time
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

from pydantic import BaseModel, Field

from shared import errors, metrics
from shared.auth import User, is_operator
from shared.db import get_db
from shared.settings import get_settings

log = logging.getLogger("i2v.operations")


class JobFigures(BaseModel):
    """One model at one provider over the window: jobs started and finished, and how long completions took."""

    model: str
    provider: str
    started: int
    completed: int
    failed: int
    canceled: int
    active: int
    p50_s: float | None = None
    p95_s: float | None = None


class Refunds(BaseModel):
    """Job refunds over the window."""

    count: int
    credits: int


class Mirrored(BaseModel):
    """Finished videos copied from a provider into storage over the window."""

    videos: int
    bytes: int


class StuckJob(BaseModel):
    """An unfinished job, among those waiting longest."""

    job_id: UUID
    user_id: UUID
    model: str
    provider: str
    status: str
    provider_status: str | None = None
    awaiting_copy: bool
    mirror_attempts: int
    created_at: datetime
    updated_at: datetime
    age_s: float


class OutgoingWebhooks(BaseModel):
    """Customers' webhooks: deliveries queued in the window by outcome, those waiting now, and their endpoints."""

    delivered: int
    failed: int = Field(description="queued in the window and failed for good")
    pending: int = Field(description="waiting now, whenever queued")
    endpoints_failing: int = Field(description="enabled endpoints whose last attempts failed")
    endpoints_disabled: dict[str, int] = Field(description="disabled in the window, by reason")


class MetricSeries(BaseModel):
    """One metric for one set of labels, as this process counted it since it started."""

    metric: str
    kind: str
    labels: dict[str, str]
    value: float  # a counter's total, a gauge's value, a histogram's sum
    count: int | None = None  # a histogram's number of observations


class OperatorOverview(BaseModel):
    """The operator's figures (GET operator-overview)."""

    since: datetime
    now: datetime
    window_hours: int
    jobs: list[JobFigures]
    failures: dict[str, int]
    refunds: Refunds
    mirrored: Mirrored
    stuck: list[StuckJob]
    outgoing_webhooks: OutgoingWebhooks
    ledger_mismatches: int
    purchase_mismatches: int
    instance_started_at: datetime
    instance_metrics: list[MetricSeries]


_STARTED_AT = datetime.now(UTC)


def overview(user: User, hours: int, stuck: int) -> OperatorOverview:
    """The figures of the last ``hours`` and the ``stuck`` jobs waiting longest; 403 unless ``user`` operates."""
    if not is_operator(user):
        raise errors.Forbidden(
            "The operator overview is for operators (OPERATOR_USER_IDS, or the operator role in app_metadata)."
        )
    since = datetime.now(UTC) - timedelta(hours=hours)
    data: dict[str, Any] = get_db().call("operator_overview", since=since, stuck_limit=stuck)
    _ledger_checked(int(data["ledger_mismatches"]), int(data["purchase_mismatches"]))
    return OperatorOverview.model_validate(
        {
            **data,
            "window_hours": hours,
            "instance_started_at": _STARTED_AT,
            "instance_metrics": instance_metrics(),
        }
    )


def instance_metrics() -> list[MetricSeries]:
    """Every series this process has recorded (shared.metrics), labelled."""
    kinds = {m.name: m for m in metrics.METRICS}
    return [
        MetricSeries(
            metric=name,
            kind=kinds[name].kind,
            labels=dict(zip(kinds[name].labels, s.labels, strict=True)),
            value=s.value,
            count=s.count if kinds[name].kind == "histogram" else None,
        )
        for name, series in metrics.snapshot().items()
        for s in series
    ]


_last_check: list[float] = []
_check_lock = threading.Lock()


def check_ledger(*, force: bool = False) -> int | None:
    """Run both ledger checks (at most every LEDGER_CHECK_INTERVAL_S in this process unless ``force``): set the
    ``ledger_mismatches`` gauge and log an error naming the accounts when any disagrees. Returns how many
    accounts disagree, or None when the check was not due."""
    interval = get_settings().ledger_check_interval_s
    with _check_lock:
        if not force and _last_check and time.monotonic() - _last_check[0] < interval:
            return None
        _last_check[:] = [time.monotonic()]
    db = get_db()
    ledger = [str(row[0]) for row in db.call_rows("ledger_mismatches")]
    purchases = [str(row[0]) for row in db.call_rows("purchase_mismatches")]
    if ledger or purchases:
        log.error(
            "ledger check: accounts disagree with their ledger",
            extra={"event": "ledger_mismatch", "ledger": ledger[:20], "purchases": purchases[:20]},
        )
    _ledger_checked(len(ledger), len(purchases))
    return len(ledger) + len(purchases)


def _ledger_checked(ledger: int, purchases: int) -> None:
    metrics.LEDGER_MISMATCHES.set(ledger, check="ledger")
    metrics.LEDGER_MISMATCHES.set(purchases, check="purchases")
