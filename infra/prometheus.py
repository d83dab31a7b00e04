"""GET /metrics on the local server: this process's metrics (shared.metrics) in the Prometheus text format.

prometheus-client renders them: a collector reads the totals at each scrape (nothing is counted twice), beside
the client's process and platform collectors. Names carry the ``i2v_`` prefix; counters end in ``_total``.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.platform_collector import PlatformCollector
from prometheus_client.process_collector import ProcessCollector

from shared import metrics

PREFIX = "i2v_"


class I2VCollector:
    """The metrics of shared.metrics, read at each scrape."""

    def collect(self) -> Iterator[Metric]:
        """One family per metric (every one listed, recorded or not)."""
        snapshot = metrics.snapshot()
        for metric in metrics.METRICS:
            yield _family(metric, snapshot[metric.name])

    def describe(self) -> Iterator[Metric]:
        """The families without values (registration checks names against these)."""
        for metric in metrics.METRICS:
            yield _family(metric, [])


def _family(metric: metrics.Metric, series: list[metrics.Series]) -> Metric:
    name = PREFIX + metric.name
    labels = list(metric.labels)
    family: Any
    if metric.kind == "counter":
        family = CounterMetricFamily(name, metric.help, labels=labels)
        for s in series:
            family.add_metric(list(s.labels), s.value)
    elif metric.kind == "gauge":
        family = GaugeMetricFamily(name, metric.help, labels=labels)
        for s in series:
            family.add_metric(list(s.labels), s.value)
    else:
        family = HistogramMetricFamily(name, metric.help, labels=labels)
        for s in series:
            family.add_metric(list(s.labels), _cumulative(metric.buckets, s), s.value)
    result: Metric = family
    return result


def _cumulative(bounds: tuple[float, ...], series: metrics.Series) -> list[tuple[str, float]]:
    """Prometheus buckets: observations <= each bound, then every observation at +Inf."""
    total, buckets = 0, []
    for bound, count in zip(bounds, series.buckets, strict=True):
        total += count
        buckets.append((repr(float(bound)), float(total)))
    buckets.append(("+Inf", float(series.count)))
    return buckets


def registry() -> CollectorRegistry:
    """A registry of i2v's metrics and the process's own (CPU, memory, file descriptors)."""
    reg = CollectorRegistry(auto_describe=True)
    reg.register(I2VCollector())
    ProcessCollector(registry=reg)
    PlatformCollector(registry=reg)
    return reg


_registry: list[CollectorRegistry] = []


def exposition() -> tuple[bytes, str]:
    """The body and content type of a /metrics answer."""
    if not _registry:
        _registry.append(registry())
    return generate_latest(_registry[0]), CONTENT_TYPE_LATEST
