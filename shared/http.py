"""Outbound HTTP: the one client factory (provider calls, image fetches, mirroring, key fetches); for provider
calls, bounded retries with backoff and Retry-After and a circuit breaker per provider.

httpx errors are mapped to our errors here and nowhere else. Retries are declared per error: timeouts (only for
idempotent calls), connection failures, 408/409/429 and 5xx. A submit whose request may have reached the provider
(a read timeout) is never retried: it raises ``SubmitOutcomeUnknown`` and the webhook or the reconciler settles it.
Each attempt is counted (latency and outcome, errors, the breaker's state: shared.metrics) and, when tracing is
on, is a span.
"""

from __future__ import annotations

import email.utils
import threading
import time
from typing import Any

import httpx
import stamina

from shared import errors, metrics, tracing
from shared.settings import get_settings

_RETRY_AFTER_CAP_S = 10.0


class _Transient(Exception):
    """A failure worth retrying (mapped to ProviderUnavailable once retries are exhausted)."""

    def __init__(self, reason: str, status: int | None = None, retry_after: float | None = None) -> None:
        super().__init__(reason)
        self.reason, self.status, self.retry_after = reason, status, retry_after


class CircuitBreaker:
    """Fails fast after ``threshold`` consecutive failures, for ``cooldown_s``; then lets one call try again."""

    def __init__(self, name: str, threshold: int, cooldown_s: float) -> None:
        self.name, self.threshold, self.cooldown_s = name, threshold, cooldown_s
        self._failures = 0
        self._opened_at: float | None = None
        self._lock = threading.Lock()

    @property
    def is_open(self) -> bool:
        """True while calls are refused without being made."""
        with self._lock:
            return self._opened_at is not None and time.monotonic() - self._opened_at < self.cooldown_s

    def check(self) -> None:
        """Raise ``ProviderUnavailable`` while the breaker is open."""
        if self.is_open:
            metrics.PROVIDER_ERRORS.inc(provider=self.name, reason="breaker_open")
            raise errors.ProviderUnavailable(
                f"{self.name} is failing; calls are paused for up to {self.cooldown_s:.0f} s.",
                provider=self.name,
            )

    def record(self, ok: bool) -> None:
        """Count one call's outcome."""
        with self._lock:
            was_open = self._opened_at is not None
            if ok:
                self._failures, self._opened_at = 0, None
            else:
                self._failures += 1
                if self._failures >= self.threshold:
                    self._opened_at = time.monotonic()
            now_open = self._opened_at is not None
        if now_open != was_open:
            metrics.CIRCUIT_BREAKER_OPEN.set(1 if now_open else 0, provider=self.name)

    def reset(self) -> None:
        """Close the breaker (tests, operators)."""
        with self._lock:
            self._failures, self._opened_at = 0, None
        metrics.CIRCUIT_BREAKER_OPEN.set(0, provider=self.name)


_breakers: dict[str, CircuitBreaker] = {}
_breakers_lock = threading.Lock()


def breaker(provider: str) -> CircuitBreaker:
    """The circuit breaker of one provider."""
    settings = get_settings()
    with _breakers_lock:
        if provider not in _breakers:
            _breakers[provider] = CircuitBreaker(
                provider, settings.breaker_threshold, settings.breaker_cooldown_s
            )
            metrics.CIRCUIT_BREAKER_OPEN.set(0, provider=provider)
        return _breakers[provider]


USER_AGENT = "i2v/0.1.0"


def make_client(
    timeout: float | None = None,
    *,
    connect: float | None = None,
    follow_redirects: bool = False,
    **kwargs: Any,
) -> httpx.Client:
    """An outbound HTTP client: ``timeout`` per read/write (default: the provider call timeout from settings),
    ``connect`` for the connection (default: the smaller of 5 s and ``timeout``), our User-Agent."""
    total = get_settings().provider_http_timeout_s if timeout is None else timeout
    limit = httpx.Timeout(total, connect=min(5.0, total) if connect is None else connect)
    headers = {"User-Agent": USER_AGENT, **kwargs.pop("headers", {})}
    return httpx.Client(timeout=limit, follow_redirects=follow_redirects, headers=headers, **kwargs)


def _retry_hook(exc: Exception) -> bool | float:
    if isinstance(exc, _Transient):
        return min(exc.retry_after, _RETRY_AFTER_CAP_S) if exc.retry_after is not None else True
    return False


def request(
    client: httpx.Client, method: str, url: str, *, provider: str, idempotent: bool, **kwargs: Any
) -> httpx.Response:
    """Make one provider call with bounded retries; a 4xx other than 408/409/429 is returned to the caller."""
    settings = get_settings()
    cb = breaker(provider)
    try:
        for attempt in stamina.retry_context(
            on=_retry_hook,
            attempts=settings.provider_retry_attempts,
            timeout=settings.provider_retry_timeout_s,
            wait_initial=0.2,
            wait_max=5.0,
        ):
            with attempt:
                cb.check()
                return _once(client, method, url, provider=provider, idempotent=idempotent, cb=cb, **kwargs)
    except _Transient as exc:
        if exc.status == 429:
            raise errors.ProviderRateLimited(f"{provider} is rate limiting us.", provider=provider) from exc
        raise errors.ProviderUnavailable(
            f"{provider} did not answer: {exc.reason}.", provider=provider
        ) from exc
    raise AssertionError("unreachable")  # pragma: no cover


def _once(
    client: httpx.Client,
    method: str,
    url: str,
    *,
    provider: str,
    idempotent: bool,
    cb: CircuitBreaker,
    **kwargs: Any,
) -> httpx.Response:
    started = time.perf_counter()
    attributes = {
        "http.request.method": method,
        "server.address": httpx.URL(url).host,
        "i2v.provider": provider,
    }
    with tracing.span(f"{provider} {method}", "client", attributes) as span:
        try:
            resp = client.request(method, url, **kwargs)
        except httpx.ConnectError as exc:  # nothing was delivered: always safe to retry
            _finished(cb, False, started, "connect")
            raise _Transient("connection failed") from exc
        except (httpx.TimeoutException, httpx.TransportError) as exc:
            timed_out = isinstance(exc, httpx.TimeoutException)
            _finished(cb, False, started, "timeout" if timed_out else "transport")
            if not idempotent:
                raise errors.SubmitOutcomeUnknown(
                    f"{provider} did not answer in time; the outcome is unknown.", provider=provider
                ) from exc
            raise _Transient("timed out" if timed_out else "transport error") from exc
        span.set("http.response.status_code", resp.status_code)
        outcome = _outcome(resp.status_code)
        if resp.status_code in (408, 409, 429) or resp.status_code >= 500:
            _finished(cb, resp.status_code < 500 and resp.status_code != 408, started, outcome)
            raise _Transient(f"HTTP {resp.status_code}", resp.status_code, _retry_after(resp))
        _finished(cb, True, started, outcome)
        if outcome != "ok":
            span.fail(f"HTTP {resp.status_code}")
        return resp


def _outcome(status: int) -> str:
    """How a provider call ended, as its metrics label it."""
    if status < 400:
        return "ok"
    if status == 429:
        return "http_429"
    return "http_5xx" if status >= 500 else "http_4xx"


def _finished(cb: CircuitBreaker, ok: bool, started: float, outcome: str) -> None:
    """Count one provider call: its breaker, its latency and (unless it succeeded) its error."""
    cb.record(ok)
    metrics.PROVIDER_CALL_SECONDS.observe(time.perf_counter() - started, provider=cb.name, outcome=outcome)
    if outcome != "ok":
        metrics.PROVIDER_ERRORS.inc(provider=cb.name, reason=outcome)


def _retry_after(resp: httpx.Response) -> float | None:
    value = resp.headers.get("retry-after")
    if not value:
        return None
    if value.strip().isdigit():
        return float(value.strip())
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def json_field(resp: httpx.Response, name: str) -> Any:
    """One field of a provider's JSON object answer (None when the body is not a JSON object or lacks it)."""
    try:
        body = resp.json()
    except ValueError:
        return None
    return body.get(name) if isinstance(body, dict) else None


def error_detail(resp: httpx.Response) -> str:
    """A short human message from a provider error body (FastAPI-style ``detail`` or plain text)."""
    try:
        body = resp.json()
    except ValueError:
        return resp.text[:300] or f"HTTP {resp.status_code}"
    return describe_error(body) or f"HTTP {resp.status_code}"


def describe_error(body: Any) -> str | None:
    """Flatten ``{"detail": ...}`` error bodies into one line."""
    if not isinstance(body, dict):
        return None
    detail = body.get("detail")
    if isinstance(detail, str):
        return detail[:500]
    if isinstance(detail, list):
        parts = []
        for item in detail[:5]:
            if isinstance(item, dict):
                loc = ".".join(str(p) for p in item.get("loc", []) if p != "body")
                parts.append(f"{loc}: {item.get('msg', '')}".strip(": "))
        return "; ".join(parts)[:500] or None
    return None
