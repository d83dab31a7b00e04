"""GET /metrics on the local server: the metrics of shared.metrics in the Prometheus text format.

prometheus-client renders them: a collector reads the totals at each scrape (nothing is counted twice), beside
the client's process and platform collectors. Names carry the ``i2v_`` prefix; counters end in ``_total``.

With ``i2v serve --workers N`` every worker keeps its own totals, so each one also writes them, every
``WRITE_EVERY_S`` and as it stops, to a JSON file named by its pid in the directory ``I2V_METRICS_DIR`` names
(the server's parent process makes it and removes it as the server stops). Whichever worker answers a scrape
adds up its own live totals and every other file: counters and histograms are summed, gauges take the largest
value (a breaker open in any worker is open). A restarted worker's predecessor stays in the sum, so counters
never go back.
"""

from __future__ import annotations

import contextlib
import json
import os
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.platform_collector import PlatformCollector
from prometheus_client.process_collector import ProcessCollector

from shared import metrics

PREFIX = "i2v_"
#: The environment variable naming the directory where the workers of one server share their totals.
METRICS_DIR_ENV = "I2V_METRICS_DIR"
WRITE_EVERY_S = 2.0


class I2VCollector:
    """The metrics of shared.metrics, read at each scrape."""

    def collect(self) -> Iterator[Metric]:
        """One family per metric (every one listed, recorded or not), over every worker when they share."""
        directory = os.environ.get(METRICS_DIR_ENV)
        snapshot = merged_snapshot(Path(directory)) if directory else metrics.snapshot()
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


def _encode(snapshot: dict[str, list[metrics.Series]]) -> str:
    return json.dumps(
        {
            name: [[list(x.labels), x.value, x.count, x.buckets] for x in series]
            for name, series in snapshot.items()
        }
    )


def write_snapshot(directory: Path) -> None:
    """Write this process's totals to ``directory/<pid>.json`` (atomically: a reader sees the old or the new)."""
    target = directory / f"{os.getpid()}.json"
    temporary = directory / f".{os.getpid()}.json.tmp"
    temporary.write_text(_encode(metrics.snapshot()))
    os.replace(temporary, target)


def merged_snapshot(directory: Path) -> dict[str, list[metrics.Series]]:
    """This process's live totals added to those the other workers last wrote in ``directory``."""
    kinds = {metric.name: metric.kind for metric in metrics.METRICS}
    merged: dict[str, dict[tuple[str, ...], metrics.Series]] = {name: {} for name in kinds}
    own = f"{os.getpid()}.json"
    snapshots = [metrics.snapshot()]
    for path in sorted(directory.glob("*.json")):
        if path.name == own:
            continue
        try:
            raw = json.loads(path.read_text())
        except (OSError, ValueError):
            continue  # a worker gone before its first write, or a file being replaced
        snapshots.append(
            {
                name: [metrics.Series(tuple(x[0]), x[1], x[2], list(x[3])) for x in rows]
                for name, rows in raw.items()
            }
        )
    for snapshot in snapshots:
        for name, series in snapshot.items():
            if name not in kinds:
                continue
            for one in series:
                total = merged[name].get(one.labels)
                if total is None:
                    merged[name][one.labels] = metrics.Series(
                        one.labels, one.value, one.count, list(one.buckets)
                    )
                elif kinds[name] == "gauge":
                    total.value = max(total.value, one.value)
                else:
                    total.value += one.value
                    total.count += one.count
                    total.buckets = [a + b for a, b in zip(total.buckets, one.buckets, strict=True)]
    return {name: [found[key] for key in sorted(found)] for name, found in merged.items()}


class SnapshotWriter:
    """Write this worker's totals to the shared directory every WRITE_EVERY_S, and once more as it stops."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="i2v-metrics-writer", daemon=True)

    def start(self) -> None:
        """Start writing."""
        self._thread.start()

    def stop(self) -> None:
        """Stop, after a last write."""
        self._stop.set()
        self._thread.join(5)

    def _run(self) -> None:
        while True:
            with contextlib.suppress(OSError):  # the directory is gone: the server is stopping
                write_snapshot(self.directory)
            if self._stop.wait(WRITE_EVERY_S):
                with contextlib.suppress(OSError):
                    write_snapshot(self.directory)
                return


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
