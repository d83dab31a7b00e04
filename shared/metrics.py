"""Operational metrics: recorded where things happen, read three ways.

Code records with one call at the point where something happens (``JOBS_STARTED.inc(model=..., provider=...)``,
``PROVIDER_CALL_SECONDS.observe(0.4, provider="fal", outcome="ok")``). This module keeps the totals of this
process (counters, histogram buckets, gauges) in memory; nothing here imports more than the standard library.

* Locally the server answers ``GET /metrics`` in the Prometheus text format (infra/prometheus.py renders
  :func:`snapshot` with prometheus-client).
* On AWS Lambda each invocation ends with CloudWatch Embedded Metric Format lines on stdout (:func:`flush_emf`):
  one JSON object per set of dimension values, which CloudWatch Logs turns into metrics. No call leaves the
  function for them.
* The operator overview (shared/operations.py) shows :func:`snapshot` beside the database's figures.

Job counters are counted once per transition that changed something, from the procedure calls themselves
(``shared.db`` passes every job transition to :func:`job_transition`): a repeated webhook or a second cancel
counts nothing. A job's model and provider (which never change) are remembered when the job is created or read
in this process (:func:`remember_job`), so a transition procedure that names only the job is still labelled.
"""

from __future__ import annotations

import json
import math
import sys
import threading
import time
from collections import OrderedDict
from collections.abc import Mapping
from typing import IO, TYPE_CHECKING, Any, Literal, NamedTuple

if TYPE_CHECKING:
    from datetime import datetime

Kind = Literal["counter", "histogram", "gauge"]
#: CloudWatch units of the metrics below.
Unit = Literal["Count", "Seconds", "Bytes", "None"]
UNKNOWN = "unknown"

_SECONDS_SHORT = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
_SECONDS_LONG = (1.0, 2.5, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0, 7200.0)
#: Values of one metric in one EMF line at most (CloudWatch's limit); more are written in further lines.
EMF_MAX_VALUES = 100


class Metric:
    """One metric: its name (Prometheus adds ``i2v_`` and, for counters, ``_total``), its labels and unit.

    (Plain classes here rather than dataclasses: every Lambda handler imports this module, and generating
    dataclasses at import costs a few milliseconds of cold start.)
    """

    __slots__ = ("buckets", "help", "kind", "labels", "name", "unit")

    def __init__(
        self,
        name: str,
        kind: Kind,
        help: str,
        labels: tuple[str, ...] = (),
        unit: Unit = "Count",
        buckets: tuple[float, ...] = (),
    ) -> None:
        self.name, self.kind, self.help, self.labels, self.unit, self.buckets = (
            name,
            kind,
            help,
            labels,
            unit,
            buckets,
        )

    def __repr__(self) -> str:
        return f"Metric({self.name!r})"

    def inc(self, value: float = 1.0, **labels: object) -> None:
        """Add ``value`` to a counter."""
        _record(self, value, labels)

    def observe(self, value: float, **labels: object) -> None:
        """Record one value of a histogram."""
        _record(self, value, labels)

    def set(self, value: float, **labels: object) -> None:
        """Set a gauge."""
        _record(self, value, labels)


JOBS_STARTED = Metric("jobs_started", "counter", "Jobs created and charged.", ("model", "provider"))
JOBS_COMPLETED = Metric("jobs_completed", "counter", "Jobs completed (video stored).", ("model", "provider"))
JOBS_FAILED = Metric(
    "jobs_failed",
    "counter",
    "Jobs failed and refunded, by why (provider, input, submit, deadline, mirror).",
    ("model", "provider", "kind"),
)
JOBS_CANCELED = Metric("jobs_canceled", "counter", "Jobs canceled and refunded.", ("model", "provider"))
GENERATION_SECONDS = Metric(
    "generation_seconds",
    "histogram",
    "From a job's creation to its completion.",
    ("model", "provider"),
    "Seconds",
    _SECONDS_LONG,
)
#: (How many credits went back is the ledger's to say: the operator overview sums the refund rows.)
REFUNDS = Metric("refunds", "counter", "Jobs refunded (failed or canceled).", ("model", "provider", "cause"))
PROVIDER_CALL_SECONDS = Metric(
    "provider_call_seconds",
    "histogram",
    "One HTTP call to a provider, by outcome (ok, http_4xx, http_429, http_5xx, timeout, connect, transport).",
    ("provider", "outcome"),
    "Seconds",
    _SECONDS_SHORT,
)
PROVIDER_ERRORS = Metric(
    "provider_errors",
    "counter",
    "Provider calls that failed or were refused by the open circuit breaker, by reason.",
    ("provider", "reason"),
)
CIRCUIT_BREAKER_OPEN = Metric(
    "circuit_breaker_open", "gauge", "1 while a provider's circuit breaker is open, else 0.", ("provider",)
)
WEBHOOK_LAG_SECONDS = Metric(
    "webhook_lag_seconds",
    "histogram",
    "From the time a provider signed a webhook delivery to its verification here.",
    ("provider",),
    "Seconds",
    _SECONDS_SHORT,
)
MIRROR_BYTES = Metric(
    "mirror_bytes", "counter", "Bytes of finished videos copied into storage.", ("provider",), "Bytes"
)
MIRROR_SECONDS = Metric(
    "mirror_seconds",
    "histogram",
    "Copying one finished video into storage (download, thumbnail, store), by outcome (ok, failed).",
    ("provider", "outcome"),
    "Seconds",
    _SECONDS_SHORT,
)
RECONCILER_ACTIONS = Metric(
    "reconciler_actions",
    "counter",
    "Jobs the reconciler acted on, by action (poll, submit, find, expire, mirror).",
    ("action",),
)
WEBHOOK_ENDPOINTS_DISABLED = Metric(
    "webhook_endpoints_disabled",
    "counter",
    "Customers' webhook endpoints the sender disabled, by reason (gone: a 410; failing: no 2xx for"
    " WEBHOOK_DISABLE_AFTER_S).",
    ("reason",),
)
LEDGER_MISMATCHES = Metric(
    "ledger_mismatches",
    "gauge",
    "Accounts whose balance or purchases disagree with the ledger at the last check: must be 0.",
    ("check",),
)

#: Every metric, in the order /metrics lists them.
METRICS: tuple[Metric, ...] = (
    JOBS_STARTED,
    JOBS_COMPLETED,
    JOBS_FAILED,
    JOBS_CANCELED,
    GENERATION_SECONDS,
    REFUNDS,
    PROVIDER_CALL_SECONDS,
    PROVIDER_ERRORS,
    CIRCUIT_BREAKER_OPEN,
    WEBHOOK_LAG_SECONDS,
    MIRROR_BYTES,
    MIRROR_SECONDS,
    RECONCILER_ACTIONS,
    WEBHOOK_ENDPOINTS_DISABLED,
    LEDGER_MISMATCHES,
)


class Series:
    """The totals of one metric for one set of label values: ``value`` is a counter's total, a gauge's value or a
    histogram's sum; ``count`` the observations; ``buckets`` the observations <= each bound (not cumulative)."""

    __slots__ = ("buckets", "count", "labels", "value")

    def __init__(
        self, labels: tuple[str, ...], value: float = 0.0, count: int = 0, buckets: list[int] | None = None
    ) -> None:
        self.labels, self.value, self.count, self.buckets = labels, value, count, buckets or []


_lock = threading.Lock()
_series: dict[tuple[str, tuple[str, ...]], Series] = {}
#: Values recorded since the last EMF flush (only while EMF is on), bounded should nothing ever flush them.
_pending: list[tuple[Metric, tuple[str, ...], float]] = []
_PENDING_MAX = 100_000
_emf_for: list[tuple[object, bool]] = []  # (the settings it was decided with, whether EMF is on)


def _label_values(metric: Metric, labels: Mapping[str, object]) -> tuple[str, ...]:
    return tuple(str(labels.get(name) or UNKNOWN) for name in metric.labels)


def _record(metric: Metric, value: float, labels: Mapping[str, object]) -> None:
    if not math.isfinite(value):
        return
    key = _label_values(metric, labels)
    emf = _emf_enabled()
    with _lock:
        series = _series.get((metric.name, key))
        if series is None:
            series = _series[(metric.name, key)] = Series(key, buckets=[0] * len(metric.buckets))
        if metric.kind == "gauge":
            series.value = value
        else:
            series.value += value
            series.count += 1
        if metric.kind == "histogram":
            for index, bound in enumerate(metric.buckets):
                if value <= bound:
                    series.buckets[index] += 1
                    break
        if emf and len(_pending) < _PENDING_MAX:
            _pending.append((metric, key, value))


def _emf_enabled() -> bool:
    """Whether values are kept for EMF lines: inside AWS Lambda, or with METRICS_EMF=true."""
    from shared.settings import get_settings

    settings = get_settings()
    decided = _emf_for[0] if _emf_for else None
    if decided is None or decided[0] is not settings:
        decided = (settings, settings.emf_enabled())
        _emf_for[:] = [decided]
    return decided[1]


def snapshot() -> dict[str, list[Series]]:
    """Metric name -> a copy of each of its series (every metric listed, recorded or not)."""
    with _lock:
        found: dict[str, list[Series]] = {metric.name: [] for metric in METRICS}
        for (name, _), series in sorted(_series.items()):
            found[name].append(Series(series.labels, series.value, series.count, list(series.buckets)))
        return found


def reset() -> None:
    """Forget every total, pending EMF value and remembered job (tests)."""
    with _lock:
        _series.clear()
        _pending.clear()
        _jobs.clear()


def emf_lines(
    namespace: str, timestamp_ms: int | None = None, properties: Mapping[str, str] | None = None
) -> list[str]:
    """Take the values recorded since the last call as CloudWatch EMF lines (one per metric's label values).

    Each line is one JSON object: ``_aws`` declares the namespace, the dimension names and each metric's unit;
    the label values are the dimensions' values; ``properties`` (the request id) are kept in the log line
    without becoming dimensions. Counters are summed, gauges keep their last value, histogram values are
    listed (CloudWatch computes the statistics), at most ``EMF_MAX_VALUES`` per line.
    """
    with _lock:
        pending = list(_pending)
        _pending.clear()
    groups: dict[tuple[tuple[str, ...], tuple[str, ...]], dict[Metric, list[float]]] = {}
    for metric, key, value in pending:
        groups.setdefault((metric.labels, key), {}).setdefault(metric, []).append(value)
    stamp = timestamp_ms if timestamp_ms is not None else int(time.time() * 1000)
    lines: list[str] = []
    for (names, values), metrics in groups.items():
        for chunk in _emf_chunks(metrics):
            document: dict[str, Any] = {
                "_aws": {
                    "Timestamp": stamp,
                    "CloudWatchMetrics": [
                        {
                            "Namespace": namespace,
                            "Dimensions": [list(names)],
                            "Metrics": [{"Name": m.name, "Unit": m.unit} for m in chunk],
                        }
                    ],
                },
                **(properties or {}),
                **dict(zip(names, values, strict=True)),
            }
            document.update({m.name: v[0] if len(v) == 1 else v for m, v in chunk.items()})
            lines.append(json.dumps(document, separators=(",", ":")))
    return lines


def _emf_chunks(metrics: dict[Metric, list[float]]) -> list[dict[Metric, list[float]]]:
    """One line's worth of values per metric (a counter summed, a gauge's last value, up to 100 observations)."""
    folded: dict[Metric, list[float]] = {}
    for metric, values in metrics.items():
        if metric.kind == "counter":
            folded[metric] = [sum(values)]
        elif metric.kind == "gauge":
            folded[metric] = [values[-1]]
        else:
            folded[metric] = values
    chunks: list[dict[Metric, list[float]]] = []
    index = 0
    while True:
        chunk = {
            m: v[index : index + EMF_MAX_VALUES]
            for m, v in folded.items()
            if v[index : index + EMF_MAX_VALUES]
        }
        if not chunk:
            return chunks
        chunks.append(chunk)
        index += EMF_MAX_VALUES


def flush_emf(stream: IO[str] | None = None, properties: Mapping[str, str] | None = None) -> int:
    """Write the EMF lines of what was recorded since the last flush (Lambda handlers call this as an invocation
    ends); returns how many lines were written. With nothing recorded for EMF, nothing is read or written."""
    if not _pending:
        return 0
    from shared.settings import get_settings

    lines = emf_lines(get_settings().metrics_namespace, properties=properties)
    if lines:
        out = stream or sys.stdout
        out.write("".join(line + "\n" for line in lines))
        out.flush()
    return len(lines)


def invocation_end(context: Any) -> None:
    """What every Lambda invocation does as it ends (shared.web's handler and the two functions without a route):
    write the EMF lines of its metrics (stdout, which CloudWatch Logs reads: no call leaves the function) and,
    when tracing is on, export its spans."""
    from shared import tracing

    aws_request_id = getattr(context, "aws_request_id", None)
    flush_emf(properties={"aws_request_id": str(aws_request_id)} if aws_request_id else None)
    tracing.flush()


# --- jobs ---------------------------------------------------------------------------------------------------


class JobFacts(NamedTuple):
    """What never changes about a job and labels its metrics."""

    model: str
    provider: str
    created_at: datetime | None
    credits: int


_JOBS_REMEMBERED = 10_000
_jobs: OrderedDict[str, JobFacts] = OrderedDict()


def remember_job(
    job_id: object, model: str, provider: str, created_at: datetime | None, credits: int
) -> None:
    """Keep a job's model, provider, creation time and price for labelling its later transitions."""
    with _lock:
        _jobs[str(job_id)] = JobFacts(model, provider, created_at, credits)
        _jobs.move_to_end(str(job_id))
        while len(_jobs) > _JOBS_REMEMBERED:
            _jobs.popitem(last=False)


def _now() -> datetime:
    from datetime import UTC, datetime

    return datetime.now(UTC)


def _facts(job_id: object) -> JobFacts:
    with _lock:
        return _jobs.get(str(job_id)) or JobFacts(UNKNOWN, UNKNOWN, None, 0)


def job_transition(procedure: str, params: Mapping[str, Any], result: Any) -> None:
    """Count one job-transition procedure call that changed something (``shared.db`` calls this)."""
    if procedure == "start_generation":
        if isinstance(result, dict) and result.get("outcome") == "created":
            body = result.get("body") or {}
            model, provider = str(params.get("model_slug")), str(params.get("provider"))
            remember_job(body.get("job_id"), model, provider, _now(), int(params.get("cost") or 0))
            JOBS_STARTED.inc(model=model, provider=provider)
        return
    if result is not True or procedure not in (
        "complete_job",
        "complete_image_job",
        "fail_job",
        "cancel_job",
    ):
        return
    facts = _facts(params.get("job"))
    if procedure in ("complete_job", "complete_image_job"):
        JOBS_COMPLETED.inc(model=facts.model, provider=facts.provider)
        if facts.created_at is not None:
            elapsed = (_now() - facts.created_at).total_seconds()
            GENERATION_SECONDS.observe(max(0.0, elapsed), model=facts.model, provider=facts.provider)
        return
    if procedure == "fail_job":
        JOBS_FAILED.inc(model=facts.model, provider=facts.provider, kind=params.get("kind") or "provider")
        cause = "failed"
    else:
        JOBS_CANCELED.inc(model=facts.model, provider=facts.provider)
        cause = "canceled"
    if facts.credits > 0:
        REFUNDS.inc(model=facts.model, provider=facts.provider, cause=cause)


# --- webhooks -----------------------------------------------------------------------------------------------

#: The signed header that carries a delivery's send time (Unix seconds): Standard Webhooks (Replicate), fal.
_WEBHOOK_TIME_HEADERS = ("webhook-timestamp", "x-fal-webhook-timestamp")


def webhook_received(provider: str, headers: Mapping[str, str]) -> None:
    """Record how long a verified delivery took to reach us (by its signed timestamp header)."""
    lowered = {k.lower(): v for k, v in headers.items()}
    for name in _WEBHOOK_TIME_HEADERS:
        sent = lowered.get(name, "").strip()
        if sent.isdigit():
            WEBHOOK_LAG_SECONDS.observe(max(0.0, time.time() - int(sent)), provider=provider)
            return


def mirrored(provider: str, size: int | None, seconds: float) -> None:
    """Record one copy of a finished video into storage: its bytes, or None when it failed, and its duration."""
    if size is not None:
        MIRROR_BYTES.inc(size, provider=provider)
    MIRROR_SECONDS.observe(seconds, provider=provider, outcome="ok" if size is not None else "failed")
