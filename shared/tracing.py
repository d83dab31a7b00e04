"""OpenTelemetry traces when OTEL_EXPORTER_OTLP_ENDPOINT is set: a span around each request, each procedure call
and each provider call, exported over OTLP/HTTP to ``<endpoint>/v1/traces``.

When the setting is unset nothing of OpenTelemetry is imported and :func:`span` hands back one shared span that
does nothing: the cost is a settings lookup. When it is set, the SDK loads with the first span; spans are batched
and exported on a background thread, and a Lambda handler calls :func:`flush` as each invocation ends (a frozen
container exports nothing). A request's span continues the caller's trace when it sends a ``traceparent``.
A change of settings (tests) is noticed: the tracer follows the settings object in use.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager
from types import TracebackType
from typing import Any, Literal

SpanKind = Literal["server", "client", "internal"]
_FLUSH_TIMEOUT_MS = 2000


class Span:
    """A span being recorded (or, when tracing is off, one that records nothing)."""

    def __init__(self, live: Any = None) -> None:
        self._live = live

    def set(self, key: str, value: str | int | float | bool) -> None:
        """Set one attribute of the span."""
        if self._live is not None:
            self._live.set_attribute(key, value)

    def fail(self, description: str) -> None:
        """Mark the span as an error (an answer that is a failure although nothing was raised)."""
        if self._live is not None:
            from opentelemetry.trace import Status, StatusCode

            self._live.set_status(Status(StatusCode.ERROR, description))


class _NoSpan(Span, AbstractContextManager[Span]):
    """The span of every operation while tracing is off: entering and leaving it does nothing."""

    def __enter__(self) -> Span:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        return None


_NO_SPAN = _NoSpan()
_lock = threading.Lock()
_state: list[tuple[object, Any, Any]] = []  # (settings, tracer provider or None, tracer or None)


Attributes = Mapping[str, str | int | float | bool | None]


def span(
    name: str,
    kind: SpanKind = "internal",
    attributes: Attributes | None = None,
    *,
    headers: Mapping[str, str] | None = None,
) -> AbstractContextManager[Span]:
    """A span named ``name`` around a block (current while it runs); ``headers`` of an incoming request carry the
    caller's trace context. Attributes that are None are left out."""
    tracer = _tracer()
    if tracer is None:
        return _NO_SPAN
    kept = {k: v for k, v in (attributes or {}).items() if v is not None}
    return _live_span(tracer, name, kind, headers, kept)


@contextmanager
def _live_span(
    tracer: Any, name: str, kind: SpanKind, headers: Mapping[str, str] | None, attributes: dict[str, Any]
) -> Iterator[Span]:
    from opentelemetry.propagate import extract
    from opentelemetry.trace import SpanKind as OtelKind

    otel_kind = {"server": OtelKind.SERVER, "client": OtelKind.CLIENT}.get(kind, OtelKind.INTERNAL)
    context = extract(headers) if headers else None
    with tracer.start_as_current_span(name, context=context, kind=otel_kind, attributes=attributes) as live:
        yield Span(live)


def enabled() -> bool:
    """True when spans are recorded and exported (OTEL_EXPORTER_OTLP_ENDPOINT is set)."""
    return _tracer() is not None


def _tracer() -> Any:
    from shared.settings import get_settings

    settings = get_settings()
    state = _state[0] if _state else None
    if state is not None and state[0] is settings:
        return state[2]
    with _lock:
        state = _state[0] if _state else None
        if state is not None and state[0] is settings:
            return state[2]
        if state is not None and state[1] is not None:
            state[1].shutdown()  # the settings changed: export what the old tracer holds, then replace it
        provider = _provider(settings) if settings.otel_exporter_otlp_endpoint else None
        tracer = provider.get_tracer("i2v") if provider is not None else None
        _state[:] = [(settings, provider, tracer)]
        return tracer


def _provider(settings: Any) -> Any:
    """A tracer provider exporting in batches over OTLP/HTTP to the configured collector."""
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    attributes = {"service.name": settings.otel_service_name}
    if settings.aws_lambda_function_name:
        attributes.update({"cloud.provider": "aws", "faas.name": settings.aws_lambda_function_name})
    provider = TracerProvider(resource=Resource.create(attributes))
    endpoint = f"{settings.otel_exporter_otlp_endpoint.rstrip('/')}/v1/traces"
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=endpoint)))
    return provider


def flush(timeout_ms: int = _FLUSH_TIMEOUT_MS) -> bool:
    """Export the spans recorded so far (a Lambda invocation's end); True when there was nothing to do or it
    finished in time. Does nothing, and loads nothing, while tracing is off."""
    state = _state[0] if _state else None
    if state is None or state[1] is None:
        return True
    done: bool = state[1].force_flush(timeout_ms)
    return done
