"""The client library's retries, with the API played by ``httpx.MockTransport`` (stamina does not sleep in tests)."""

from __future__ import annotations

import httpx
import pytest

from client import api
from client.api import ApiError, ApiUnreachable, I2VClient, _backoff


def _client(answers: list[httpx.Response | Exception]) -> tuple[I2VClient, list[httpx.Request]]:
    seen: list[httpx.Request] = []

    def handle(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        answer = answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer

    return I2VClient("http://api.test", "token", transport=httpx.MockTransport(handle)), seen


def _error(status: int, code: str, **headers: str) -> httpx.Response:
    return httpx.Response(status, json={"error": {"code": code, "message": code}}, headers=headers)


def test_429_and_network_errors_are_retried() -> None:
    """A 429, a 503 and a dropped connection are retried until the answer comes."""
    client, seen = _client(
        [
            _error(429, "rate_limited", **{"Retry-After": "2"}),
            httpx.ConnectError("refused"),
            _error(503, "service_unavailable"),
            httpx.Response(200, json={"balance": 3, "entries": []}),
        ]
    )
    assert client.credits()["balance"] == 3
    assert len(seen) == 4


def test_client_errors_are_not_retried() -> None:
    """A 402 is raised at once with its code and details."""
    client, seen = _client([_error(402, "insufficient_credits")])
    with pytest.raises(ApiError) as caught:
        client.generate({"model_id": "m"}, "key-1")
    assert caught.value.code == "insufficient_credits" and len(seen) == 1


def test_unreachable_api_is_one_error() -> None:
    """When every attempt fails to connect, one ApiUnreachable is raised naming the URL."""
    client, _ = _client([httpx.ConnectError("refused")] * 10)
    with pytest.raises(ApiUnreachable, match=r"api\.test"):
        client.status("job")


def test_retry_after_is_honoured_up_to_a_cap() -> None:
    """The backoff waits what Retry-After says (at most 30 s), waits for an in-flight key, and skips 4xx."""
    assert _backoff(api._error(_error(429, "rate_limited", **{"Retry-After": "7"}))) == 7.0
    assert _backoff(api._error(_error(503, "service_unavailable", **{"Retry-After": "600"}))) == 30.0
    assert _backoff(api._error(_error(502, "provider_error"))) is True
    assert _backoff(api._error(_error(409, "idempotency_in_flight"))) == 5.0
    assert _backoff(api._error(_error(400, "invalid_field"))) is False
