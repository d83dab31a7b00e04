"""The HTTP edge every function shares (shared/web.py), over real HTTP to the local server."""

from __future__ import annotations

import json

import httpx

from infra import openapi
from tests.conftest import Caller


def test_cors_preflight_is_answered_for_the_apps_headers(anon: httpx.Client) -> None:
    """An OPTIONS preflight for generate-video allows the headers the app sends (token, Idempotency-Key)."""
    response = anon.options(
        "/functions/v1/generate-video",
        headers={
            "Origin": "https://app.example",
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization, content-type, idempotency-key",
        },
    )
    assert response.status_code == 200
    assert response.headers["access-control-allow-origin"] == "*"
    assert "POST" in response.headers["access-control-allow-methods"]
    allowed = {h.strip() for h in response.headers["access-control-allow-headers"].split(",")}
    assert {"authorization", "content-type", "idempotency-key"} <= allowed


def test_cross_origin_responses_expose_the_request_id(caller: Caller) -> None:
    """A request with an Origin gets Access-Control-Allow-Origin and may read X-Request-Id."""
    response = caller.http.get("/functions/v1/get-credits", headers={"Origin": "https://app.example"})
    assert response.status_code == 200
    assert response.headers["access-control-allow-origin"] == "*"
    assert "x-request-id" in response.headers["access-control-expose-headers"]


def test_every_answer_carries_request_id_timing_and_no_store(caller: Caller) -> None:
    """Success and error responses both carry X-Request-Id (echoing the caller's), Server-Timing, no-store."""
    ok = caller.http.get("/functions/v1/get-credits", headers={"X-Request-Id": "trace-123"})
    bad = caller.http.get("/functions/v1/get-video-status", params={"job_id": "nope"})
    assert ok.headers["x-request-id"] == "trace-123"
    assert bad.status_code == 400
    assert bad.json()["error"]["details"]["field"] == "job_id"
    for response in (ok, bad):
        assert response.headers["cache-control"] == "no-store"
        assert response.headers["server-timing"].startswith("db;dur=")
    assert bad.json()["error"]["request_id"] == bad.headers["x-request-id"]


def test_query_parameters_are_typed_and_bounded(caller: Caller) -> None:
    """A missing required parameter, a non-integer and an out-of-range value each answer 400 naming it."""
    missing = caller.http.get("/functions/v1/get-video-status")
    not_int = caller.http.get("/functions/v1/get-credits", params={"limit": "ten"})
    too_big = caller.http.get("/functions/v1/get-credits", params={"limit": "201"})
    for response in (missing, not_int, too_big):
        assert response.status_code == 400, response.text
        assert response.json()["error"]["code"] == "invalid_field"
    assert missing.json()["error"]["details"]["field"] == "job_id"
    assert not_int.json()["error"]["details"]["field"] == "limit"
    assert "less than or equal to 200" in too_big.json()["error"]["message"]


def test_oversized_body_is_413_in_the_error_shape(caller: Caller) -> None:
    """A body over the route's limit (64 KiB for API bodies) is refused with 413 before anything runs."""
    response = caller.http.post(
        "/functions/v1/quote",
        content=b"{" + b" " * (64 * 1024 + 1) + b"}",
        headers={"Content-Type": "application/json"},
    )
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "payload_too_large"


def test_unknown_path_is_404_in_the_error_shape(anon: httpx.Client) -> None:
    """A path no function or local route serves answers 404 with the one error body."""
    response = anon.get("/functions/v1/no-such-function")
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"


def test_local_server_serves_the_committed_openapi_document(anon: httpx.Client) -> None:
    """GET /openapi.json on the local server is the generated document, and /docs renders it."""
    served = anon.get("/openapi.json")
    assert served.status_code == 200
    assert served.json() == json.loads(openapi.render())
    docs = anon.get("/docs")
    assert docs.status_code == 200 and "/openapi.json" in docs.text
