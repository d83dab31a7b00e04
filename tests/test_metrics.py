"""Metrics: they move when jobs run (scraped from /metrics), Lambda writes them as EMF lines that parse, and
provider calls, breakers, webhooks and refunds are counted where they happen."""

from __future__ import annotations

import json
import os
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from functions import cancel_video
from shared import errors, metrics
from shared import http as _http
from shared.db import Database
from shared.jobs import lifecycle
from tests.conftest import Caller, configured, debit_job, wait_for
from tests.lambda_support import LambdaContext, http_event

LOCAL = {"model_id": "local-motion", "prompt": "zoom in", "settings": {"duration": 2, "resolution": "480p"}}


def scrape(http: httpx.Client) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """GET /metrics, parsed: (sample name, sorted labels) -> value."""
    answer = http.get("/metrics")
    assert answer.status_code == 200 and answer.headers["content-type"].startswith("text/plain")
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(answer.text)
        for sample in family.samples
    }


def value(scraped: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str, **labels: str) -> float:
    """One sample's value (0 when it has not been recorded)."""
    return scraped.get((name, tuple(sorted(labels.items()))), 0.0)


def series(name: str, **labels: str) -> metrics.Series | None:
    """This process's series of ``name`` with exactly ``labels``."""
    metric = next(m for m in metrics.METRICS if m.name == name)
    wanted = tuple(labels[label] for label in metric.labels)
    return next((s for s in metrics.snapshot()[name] if s.labels == wanted), None)


def test_metrics_move_when_a_job_runs(caller: Caller) -> None:
    """A local-engine job moves jobs started and completed and the generation-time histogram on /metrics."""
    caller.grant(5)
    before = scrape(caller.http)
    started = caller.generate(**LOCAL, image_url=caller.upload())
    assert started.status_code == 202, started.text
    job_id = started.json()["job_id"]
    done = wait_for(
        lambda: (s := caller.status(job_id).json())["status"] == "completed" and s, "the job to complete"
    )
    labels = {"model": done["model"], "provider": done["provider"]}
    after = scrape(caller.http)
    assert (
        value(after, "i2v_jobs_started_total", **labels)
        >= value(before, "i2v_jobs_started_total", **labels) + 1
    )
    assert value(after, "i2v_jobs_completed_total", **labels) >= (
        value(before, "i2v_jobs_completed_total", **labels) + 1
    )
    assert value(after, "i2v_generation_seconds_count", **labels) >= (
        value(before, "i2v_generation_seconds_count", **labels) + 1
    )
    assert value(after, "i2v_generation_seconds_sum", **labels) > value(
        before, "i2v_generation_seconds_sum", **labels
    )
    assert ("process_cpu_seconds_total", ()) in after  # the process's own metrics are there too


def test_a_cancel_counts_once_with_its_refund(caller: Caller, db: Database) -> None:
    """Canceling a job counts one cancel and one refund, labelled with its model and provider; a second cancel
    counts nothing."""
    caller.grant(3)
    job_id = debit_job(db, caller.id, cost=3)
    labels = {"model": "local-motion", "provider": "test"}
    before = scrape(caller.http)
    for _ in range(2):
        assert caller.http.post("/functions/v1/cancel-video", json={"job_id": str(job_id)}).status_code == 200
    after = scrape(caller.http)
    assert (
        value(after, "i2v_jobs_canceled_total", **labels)
        == value(before, "i2v_jobs_canceled_total", **labels) + 1
    )
    refund = {**labels, "cause": "canceled"}
    assert value(after, "i2v_refunds_total", **refund) == value(before, "i2v_refunds_total", **refund) + 1


def test_a_failure_is_counted_by_its_kind(caller: Caller, db: Database) -> None:
    """A job failed at its deadline counts under jobs failed with kind=deadline, and its refund."""
    caller.grant(2)
    job_id = debit_job(db, caller.id, cost=2)
    labels = {"model": "local-motion", "provider": "test"}
    before = series("jobs_failed", **labels, kind="deadline")
    assert lifecycle.fail(job_id, "too slow", kind="deadline")
    after = series("jobs_failed", **labels, kind="deadline")
    assert after is not None and after.value == (before.value if before else 0) + 1


def test_lambda_invocations_end_with_emf_lines_that_parse(
    caller: Caller, db: Database, capsys: pytest.CaptureFixture[str]
) -> None:
    """With EMF on (as inside AWS Lambda), an invocation that cancels a job writes EMF lines on stdout: JSON
    whose _aws.CloudWatchMetrics declares the namespace, dimensions and units of values the line carries."""
    caller.grant(3)
    job_id = debit_job(db, caller.id, cost=3)
    metrics.emf_lines("drain")  # nothing recorded before this test is written by its invocation
    with configured(AWS_LAMBDA_FUNCTION_NAME="i2v-ci-cancelVideo", METRICS_NAMESPACE="i2v-test"):
        capsys.readouterr()
        event = http_event(
            "POST",
            "/functions/v1/cancel-video",
            headers={"authorization": f"Bearer {caller.token}"},
            body={"job_id": str(job_id)},
        )
        context = LambdaContext()
        response = cancel_video.handler(event, context)
        out = capsys.readouterr().out
    assert response["statusCode"] == 200
    lines = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    documents = {tuple(m["Name"] for m in d["_aws"]["CloudWatchMetrics"][0]["Metrics"]): d for d in lines}
    canceled = next(d for names, d in documents.items() if "jobs_canceled" in names)
    declared = canceled["_aws"]["CloudWatchMetrics"][0]
    assert declared["Namespace"] == "i2v-test" and declared["Dimensions"] == [["model", "provider"]]
    assert declared["Metrics"] == [{"Name": "jobs_canceled", "Unit": "Count"}]
    assert (
        canceled["jobs_canceled"] == 1
        and canceled["model"] == "local-motion"
        and canceled["provider"] == "test"
    )
    assert canceled["aws_request_id"] == context.aws_request_id
    assert isinstance(canceled["_aws"]["Timestamp"], int)
    refunded = next(d for names, d in documents.items() if "refunds" in names)
    assert refunded["refunds"] == 1 and refunded["cause"] == "canceled"
    assert refunded["_aws"]["CloudWatchMetrics"][0]["Dimensions"] == [["model", "provider", "cause"]]


def test_emf_lines_carry_at_most_100_values_of_a_metric() -> None:
    """150 observations of a histogram in one invocation are written as two EMF lines (100 and 50 values)."""
    metrics.emf_lines("drain")
    with configured(METRICS_EMF="true"):
        for index in range(150):
            metrics.WEBHOOK_LAG_SECONDS.observe(index / 10, provider="emf-test")
        lines = [json.loads(line) for line in metrics.emf_lines("i2v")]
    assert [len(d["webhook_lag_seconds"]) for d in lines] == [100, 50]
    assert all(d["provider"] == "emf-test" for d in lines)
    assert lines[0]["_aws"]["CloudWatchMetrics"][0]["Metrics"] == [
        {"Name": "webhook_lag_seconds", "Unit": "Seconds"}
    ]


def test_no_emf_lines_outside_lambda() -> None:
    """Outside AWS Lambda (and without METRICS_EMF) nothing is kept for EMF and a flush writes nothing."""
    metrics.emf_lines("drain")
    metrics.JOBS_STARTED.inc(model="emf-off", provider="test")
    assert metrics.emf_lines("i2v") == [] and metrics.flush_emf() == 0


def _failing(status: int) -> httpx.Client:
    return httpx.Client(transport=httpx.MockTransport(lambda request: httpx.Response(status)))


def test_provider_errors_latency_and_the_breaker_are_counted() -> None:
    """A provider answering 503 to every attempt counts each attempt's latency and error, and its breaker's gauge
    reads 1 once it opens (then 0 once reset)."""
    provider = f"metrics-{uuid.uuid4().hex[:6]}"
    with configured(BREAKER_THRESHOLD="3"), pytest.raises(errors.ProviderUnavailable):
        _http.request(_failing(503), "GET", "https://provider.invalid/x", provider=provider, idempotent=True)
    calls = series("provider_call_seconds", provider=provider, outcome="http_5xx")
    assert calls is not None and calls.count == 3  # the breaker opened after the third: no more attempts made
    refused = series("provider_errors", provider=provider, reason="breaker_open")
    assert refused is not None and refused.value >= 1
    assert series("provider_errors", provider=provider, reason="http_5xx").value == 3  # type: ignore[union-attr]
    assert series("circuit_breaker_open", provider=provider).value == 1  # type: ignore[union-attr]
    _http.breaker(provider).reset()
    assert series("circuit_breaker_open", provider=provider).value == 0  # type: ignore[union-attr]


def test_a_successful_provider_call_is_timed_as_ok() -> None:
    """A provider call answered 200 is one observation of its latency with outcome ok, and no error."""
    provider = f"metrics-{uuid.uuid4().hex[:6]}"
    _http.request(_failing(200), "GET", "https://provider.invalid/x", provider=provider, idempotent=True)
    ok = series("provider_call_seconds", provider=provider, outcome="ok")
    assert ok is not None and ok.count == 1 and ok.value >= 0
    assert not any(s.labels[0] == provider for s in metrics.snapshot()["provider_errors"])


@pytest.mark.parametrize("header", ["webhook-timestamp", "X-Fal-Webhook-Timestamp"])
def test_webhook_lag_is_measured_from_the_signed_timestamp(header: str) -> None:
    """A delivery signed 5 s ago is recorded as about 5 s of webhook lag for its provider."""
    provider = f"lag-{uuid.uuid4().hex[:6]}"
    metrics.webhook_received(provider, {header: str(int(time.time()) - 5)})
    lag: Any = series("webhook_lag_seconds", provider=provider)
    assert lag.count == 1 and 4 <= lag.value <= 7


def test_workers_totals_add_up_counters_and_histograms_and_take_the_largest_gauge(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Merged with two other workers' files, counters and histogram counts are summed per label set, a gauge is
    the largest value, this process's own (stale) file is replaced by its live totals, and a torn file is
    skipped."""
    from infra import prometheus

    metrics.reset()
    metrics.JOBS_STARTED.inc(model="m", provider="p")
    metrics.CIRCUIT_BREAKER_OPEN.set(0, provider="fal")
    metrics.MIRROR_SECONDS.observe(0.3, provider="p")
    prometheus.write_snapshot(tmp_path)  # as another worker would: moved to another pid's name below
    (tmp_path / f"{os.getpid()}.json").rename(tmp_path / "1.json")
    metrics.JOBS_STARTED.inc(2, model="m", provider="p")
    metrics.CIRCUIT_BREAKER_OPEN.set(1, provider="fal")
    prometheus.write_snapshot(tmp_path)
    (tmp_path / f"{os.getpid()}.json").rename(tmp_path / "2.json")
    (tmp_path / "3.json").write_text('{"jobs_started": [[["m", "p"], 1')  # a file being written
    metrics.reset()
    metrics.JOBS_STARTED.inc(10, model="m", provider="p")
    (tmp_path / f"{os.getpid()}.json").write_text(json.dumps({"jobs_started": [[["m", "p"], 1000.0, 0, []]]}))
    merged = prometheus.merged_snapshot(tmp_path)
    assert [(s.labels, s.value) for s in merged["jobs_started"]] == [(("m", "p"), 1 + 3 + 10)]
    assert [(s.labels, s.value) for s in merged["circuit_breaker_open"]] == [(("fal",), 1)]
    assert [s.count for s in merged["mirror_seconds"]] == [2]
    metrics.reset()
