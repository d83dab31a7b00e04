"""Structured logs: JSON lines with request and job ids, and no token, key or signature in them, ever."""

from __future__ import annotations

import io
import json
import logging
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from functions import fal_webhook, get_credits, stripe_webhook
from shared import logs
from shared.settings import get_settings
from tests.billing_support import (
    Shop,
    emu_fixture,  # noqa: F401  (fixture)
    shop_fixture,  # noqa: F401  (fixture)
    stripe_server_fixture,  # noqa: F401  (fixture)
)
from tests.conftest import Caller
from tests.emulators.fal import FalEmulator
from tests.emulators.stripe import prepare_delivery
from tests.lambda_support import LambdaContext, http_event


@pytest.fixture
def captured() -> Iterator[io.StringIO]:
    """Every log record of the process at DEBUG, formatted by our JSON formatter, into a buffer."""
    buffer = io.StringIO()
    handler = logging.StreamHandler(buffer)
    handler.setFormatter(logs.JsonFormatter())
    root = logging.getLogger()
    level = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    try:
        yield buffer
    finally:
        root.removeHandler(handler)
        root.setLevel(level)


def lines(buffer: io.StringIO) -> list[dict[str, Any]]:
    """The captured log lines, each parsed as JSON (a line that is not JSON fails the test)."""
    return [json.loads(line) for line in buffer.getvalue().splitlines() if line.strip()]


def test_requests_and_job_transitions_are_json_lines_with_ids(caller: Caller, captured: io.StringIO) -> None:
    """A request logs one JSON line with its request id; each job transition logs the job id."""
    caller.grant(5)
    resp = caller.generate(
        model_id="local-motion",
        prompt="zoom in",
        image_url=caller.upload(),
        settings={"duration": 1},
    )
    assert resp.status_code == 202, resp.text
    job_id, request_id = resp.json()["job_id"], resp.headers["x-request-id"]
    entries = lines(captured)
    requests = [e for e in entries if e.get("event") == "request" and e.get("request_id") == request_id]
    assert len(requests) == 1
    assert requests[0]["path"] == "/functions/v1/generate-video" and requests[0]["status"] == 202
    assert requests[0]["job_id"] == job_id and requests[0]["duration_ms"] >= 0
    transitions = [e for e in entries if e.get("event") == "job_transition" and e.get("job_id") == job_id]
    assert transitions and transitions[0]["procedure"] == "start_generation"
    assert transitions[0]["request_id"] == request_id  # later ones may come from the engine's workers


def test_lambda_requests_carry_the_aws_request_id(caller: Caller, captured: io.StringIO) -> None:
    """Through a Lambda handler, the line carries API Gateway's request id and Lambda's aws_request_id."""
    event = http_event(
        "GET", "/functions/v1/get-credits", headers={"authorization": f"Bearer {caller.token}"}
    )
    context = LambdaContext()
    assert get_credits.handler(event, context)["statusCode"] == 200
    (line,) = [e for e in lines(captured) if e.get("event") == "request"]
    assert line["request_id"] == event["requestContext"]["requestId"]
    assert line["aws_request_id"] == context.aws_request_id


def test_no_secret_reaches_the_logs(
    caller: Caller, shop: Shop, stack: str, captured: io.StringIO, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Bearer tokens, fal keys and signatures, Stripe keys, signatures and secrets never appear in the logs."""
    secrets: list[str] = [
        caller.token,
        get_settings().jwt_secret(),
        shop.emu.api_key,
        shop.emu.webhook_secret,
    ]
    # Authenticated requests over HTTP (valid and forged tokens) and through a Lambda handler.
    caller.http.get("/functions/v1/get-credits")
    forged = caller.token[:-4] + "AAAA"
    httpx.get(f"{stack}/functions/v1/get-credits", headers={"Authorization": f"Bearer {forged}"})
    secrets.append(forged)
    get_credits.handler(
        http_event("GET", "/functions/v1/get-credits", headers={"authorization": f"Bearer {caller.token}"}),
        LambdaContext(),
    )
    # A Stripe purchase: the Checkout call (secret key) and its signed webhook, over HTTP and through Lambda.
    session_id = shop.start("pack_500")
    delivery = prepare_delivery(shop.emu.complete_session(session_id), shop.emu.webhook_secret)
    secrets += [delivery.signature, delivery.signature.split("v1=", 1)[1].split(",", 1)[0]]
    event = http_event(
        "POST",
        "/functions/v1/stripe-webhook",
        headers={k.lower(): v for k, v in delivery.headers.items()},
        body=delivery.body,
    )
    assert stripe_webhook.handler(event, LambdaContext())["statusCode"] == 200
    shop.emu.reset()
    # fal: signed webhooks (valid and forged) through the Lambda handler, with the fal key configured.
    with FalEmulator() as fal:
        for name, value in fal.env().items():
            monkeypatch.setenv(name, value)
        get_settings.cache_clear()
        try:
            secrets.append(fal.key)
            body = {"request_id": str(uuid.uuid4()), "status": "OK", "payload": {"video": {"url": "x"}}}
            for signed in (fal.build_webhook(body=body), fal.build_webhook(body=body, unknown_key=True)):
                secrets.append(signed.headers["X-Fal-Webhook-Signature"])
                hook = http_event(
                    "POST",
                    "/functions/v1/fal-webhook",
                    headers={k.lower(): v for k, v in signed.headers.items()},
                    body=signed.body,
                    base64_body=True,
                )
                assert fal_webhook.handler(hook, LambdaContext())["statusCode"] in (200, 400)
        finally:
            monkeypatch.undo()
            get_settings.cache_clear()
    text = captured.getvalue()
    assert len(lines(captured)) > 10
    leaked = [s for s in secrets if s and s in text]
    assert leaked == []


def test_secret_fields_and_secret_shaped_text_are_redacted(captured: io.StringIO) -> None:
    """A field named like a secret is replaced; a bearer token or key inside a message is scrubbed."""
    log = logging.getLogger("i2v.test")
    token = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.c2lnbmF0dXJl"
    log.warning(
        "calling with Bearer %s and sk_live_51Habc_def",
        token,
        extra={"authorization": f"Bearer {token}", "stripe_signature": "t=1,v1=abc", "job_id": "j1"},
    )
    # the stack's background threads (engine, reconciler) may log during the test: only this logger's line counts
    (line,) = [e for e in lines(captured) if e["logger"] == "i2v.test"]
    assert token not in captured.getvalue() and "sk_live_51Habc_def" not in captured.getvalue()
    assert line["authorization"] == line["stripe_signature"] == logs.REDACTED
    assert line["job_id"] == "j1" and line["level"] == "WARNING" and line["logger"] == "i2v.test"
