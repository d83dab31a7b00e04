"""Traces: nothing of OpenTelemetry loads without OTEL_EXPORTER_OTLP_ENDPOINT; with it, spans of each request,
procedure call and provider call reach an OTLP/HTTP collector, nested and continuing the caller's trace."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.trace.v1.trace_pb2 import Span

from shared import http as _http
from shared import tracing
from tests.conftest import Caller, configured, wait_for

ROOT = Path(__file__).resolve().parent.parent
TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"


class Collector:
    """A local OTLP/HTTP receiver: keeps the spans POSTed to /v1/traces."""

    def __init__(self) -> None:
        self.spans: list[Span] = []
        collector = self

        class Receive(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["content-length"]))
                request = ExportTraceServiceRequest()
                request.ParseFromString(body)
                for resource in request.resource_spans:
                    for scope in resource.scope_spans:
                        collector.spans.extend(scope.spans)
                self.send_response(200 if self.path == "/v1/traces" else 404)
                self.send_header("content-type", "application/x-protobuf")
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                return None

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Receive)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def named(self, name: str) -> list[Span]:
        """The spans received with this name."""
        return [s for s in self.spans if s.name == name]


@pytest.fixture
def collector() -> Iterator[Collector]:
    """A collector on a free loopback port, stopped afterwards."""
    found = Collector()
    yield found
    found.server.shutdown()
    found.server.server_close()


def test_nothing_of_opentelemetry_loads_without_the_setting(caller: Caller) -> None:
    """A Lambda handler serving an authenticated request (token, settings, procedure calls) in a fresh
    interpreter without OTEL_EXPORTER_OTLP_ENDPOINT imports no opentelemetry module and no prometheus_client."""
    script = (
        "import json, sys\n"
        "from functions import get_credits\n"
        "from tests.lambda_support import LambdaContext, http_event\n"
        "event = http_event('GET', '/functions/v1/get-credits', headers={'authorization': sys.argv[1]})\n"
        "status = get_credits.handler(event, LambdaContext())['statusCode']\n"
        "loaded = sorted(m for m in sys.modules if m.split('.')[0] in ('opentelemetry', 'prometheus_client'))\n"
        "print(json.dumps({'status': status, 'loaded': loaded}))\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    env["PYTHONPATH"] = str(ROOT)
    proc = subprocess.run(
        [sys.executable, "-c", script, f"Bearer {caller.token}"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=env,
        timeout=120,
        check=True,
    )
    assert json.loads(proc.stdout.strip().splitlines()[-1]) == {"status": 200, "loaded": []}


def test_a_request_is_a_span_with_its_procedure_calls_inside(caller: Caller, collector: Collector) -> None:
    """With OTEL_EXPORTER_OTLP_ENDPOINT set, a request is a server span continuing the caller's traceparent, and
    each procedure call it makes is a client span inside it."""
    traceparent = f"00-{TRACE_ID}-00f067aa0ba902b7-01"
    with configured(OTEL_EXPORTER_OTLP_ENDPOINT=collector.url + "/"):
        answer = caller.http.get("/functions/v1/get-credits", headers={"traceparent": traceparent})
        assert answer.status_code == 200
        assert tracing.flush()
        request = wait_for(lambda: collector.named("GET /functions/v1/get-credits"), "the request's span")[0]
    assert request.trace_id.hex() == TRACE_ID and request.parent_span_id.hex() == "00f067aa0ba902b7"
    assert request.kind == Span.SpanKind.SPAN_KIND_SERVER
    attributes = {a.key: a.value for a in request.attributes}
    assert attributes["http.response.status_code"].int_value == 200
    assert attributes["i2v.request_id"].string_value == answer.headers["x-request-id"]
    calls = [s for s in collector.spans if s.name.startswith("call ") and s.parent_span_id == request.span_id]
    assert calls and all(s.trace_id == request.trace_id for s in calls)
    assert {a.key: a.value.string_value for a in calls[0].attributes}["db.system.name"] == "postgresql"


def test_a_provider_call_is_a_client_span(collector: Collector) -> None:
    """With tracing on, a provider call is a client span named for the provider and method, with its status."""
    transport = httpx.MockTransport(lambda request: httpx.Response(200, json={}))
    with httpx.Client(transport=transport) as client, configured(OTEL_EXPORTER_OTLP_ENDPOINT=collector.url):
        with tracing.span("reconcile"):
            _http.request(
                client, "GET", "https://queue.provider.invalid/x", provider="tracetest", idempotent=True
            )
        assert tracing.flush()
        call = wait_for(lambda: collector.named("tracetest GET"), "the provider call's span")[0]
    parent = collector.named("reconcile")[0]
    assert call.kind == Span.SpanKind.SPAN_KIND_CLIENT and call.parent_span_id == parent.span_id
    attributes = {a.key: a.value for a in call.attributes}
    assert attributes["server.address"].string_value == "queue.provider.invalid"
    assert attributes["http.response.status_code"].int_value == 200
