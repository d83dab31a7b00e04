"""Each function's Lambda ``handler`` fed real API Gateway HTTP API v2 events, against the real database."""

from __future__ import annotations

import base64
import hashlib
import io
import json
import logging
import os
import socket
import subprocess
import sys
import uuid
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from functions import (
    cancel_video,
    create_upload_url,
    fal_webhook,
    generate_video,
    get_credits,
    get_video_status,
    health,
    list_credit_packs,
    list_models,
    list_videos,
    mirror_video,
    quote,
    reconcile,
    status,
    stripe_webhook,
)
from shared import http as _http
from shared import invoke as lambda_invoke
from shared.db import Database
from tests.billing_support import (
    Shop,
    emu_fixture,  # noqa: F401  (fixture)
    shop_fixture,  # noqa: F401  (fixture)
    stripe_server_fixture,  # noqa: F401  (fixture)
)
from tests.conftest import EXAMPLES, Caller, configured, debit_job
from tests.emulators.fal import FalEmulator, JobPlan, MediaFile, WebhookPlan
from tests.emulators.stripe import prepare_delivery
from tests.lambda_support import LambdaContext, http_event, json_body
from tests.teams_support import end_pending_deliveries
from tests.test_storage_s3 import s3_endpoint  # noqa: F401  (fixture)

ROOT = Path(__file__).resolve().parent.parent
KLING = "kling-2.1-standard"


def auth(caller: Caller, **extra: str) -> dict[str, str]:
    """Lower-case headers as API Gateway delivers them, with the caller's bearer token."""
    return {"authorization": f"Bearer {caller.token}", **extra}


def invoke(handler: Any, event: dict[str, Any]) -> dict[str, Any]:
    """Call a Lambda handler as the Python runtime does and check the proxy response's shape."""
    response: dict[str, Any] = handler(event, LambdaContext())
    assert isinstance(response["statusCode"], int)
    assert isinstance(response["body"], str) and isinstance(response["isBase64Encoded"], bool)
    assert all(name == name.lower() for name in response["headers"])
    return response


def test_health_answers_on_both_routes(stack: str) -> None:
    """health answers 200 {"status": "ok"} on /functions/v1/health and /api/health, tagged with the request id."""
    for path in ("/functions/v1/health", "/api/health"):
        event = http_event("GET", path)
        response = invoke(health.handler, event)
        assert response["statusCode"] == 200
        assert json_body(response) == {"status": "ok"}
        assert response["headers"]["content-type"] == "application/json"
        assert response["headers"]["x-request-id"] == event["requestContext"]["requestId"]
        assert response["headers"]["cache-control"] == "no-store"


def test_missing_token_is_401_in_the_error_shape(stack: str) -> None:
    """Without an Authorization header an authenticated function answers 401 in the one error shape."""
    event = http_event("GET", "/functions/v1/get-credits")
    response = invoke(get_credits.handler, event)
    assert response["statusCode"] == 401
    error = json_body(response)["error"]
    assert error["code"] == "unauthorized" and error["request_id"] == event["requestContext"]["requestId"]


def test_public_listings_answer_without_a_token(stack: str) -> None:
    """list-models and list-credit-packs answer JSON to anyone."""
    models = invoke(list_models.handler, http_event("GET", "/functions/v1/list-models"))
    packs = invoke(list_credit_packs.handler, http_event("GET", "/functions/v1/list-credit-packs"))
    assert models["statusCode"] == packs["statusCode"] == 200
    assert "local-motion" in {m["slug"] for m in json_body(models)["models"]}
    assert json_body(packs)["packs"]


def test_generate_replay_status_and_listing_through_handlers(caller: Caller, db: Database) -> None:
    """generate-video charges once per idempotency-key; status, list-videos (query string) and status agree."""
    caller.grant(20)
    image_url = caller.upload()
    body = {
        "model_id": "local-motion",
        "prompt": "slow zoom in",
        "image_url": image_url,
        "settings": {"duration": 2},
    }
    key = f'"{uuid.uuid4()}"'  # an RFC 8941 sf-string, as in the reference event
    first = invoke(
        generate_video.handler,
        http_event(
            "POST",
            "/functions/v1/generate-video",
            headers=auth(caller, **{"idempotency-key": key}),
            body=body,
        ),
    )
    assert first["statusCode"] == 202, first["body"]
    job_id = json_body(first)["job_id"]
    replay = invoke(
        generate_video.handler,
        http_event(
            "POST",
            "/functions/v1/generate-video",
            headers=auth(caller, **{"idempotency-key": key}),
            body=body,
        ),
    )
    assert replay["statusCode"] == 202 and json_body(replay)["job_id"] == job_id
    assert replay["headers"]["idempotent-replayed"] == "true"
    assert caller.balance() == 18
    seen = invoke(
        get_video_status.handler,
        http_event("GET", "/functions/v1/get-video-status", query={"job_id": job_id}, headers=auth(caller)),
    )
    assert seen["statusCode"] == 200 and json_body(seen)["job_id"] == job_id
    listed = invoke(
        list_videos.handler,
        http_event("GET", "/functions/v1/list-videos", query="limit=1&status=", headers=auth(caller)),
    )
    assert [v["job_id"] for v in json_body(listed)["videos"]] == [job_id]
    counts = invoke(status.handler, http_event("GET", "/functions/v1/status", headers=auth(caller)))
    assert json_body(counts)["total"] == 1


def test_quote_upload_credits_and_cancel_through_handlers(caller: Caller) -> None:
    """quote prices without charging, create-upload-url signs a PUT, cancel-video refunds, get-credits shows it."""
    caller.grant(10)
    image = (EXAMPLES / "square.jpg").read_bytes()
    target = invoke(
        create_upload_url.handler,
        http_event(
            "POST",
            "/functions/v1/create-upload-url",
            headers=auth(caller),
            body={
                "content_type": "image/jpeg",
                "size": len(image),
                "sha256": hashlib.sha256(image).hexdigest(),
            },
        ),
    )
    assert target["statusCode"] == 200 and json_body(target)["upload_method"] == "PUT"
    image_url = caller.upload(data=image)
    body = {
        "model_id": "local-motion",
        "prompt": "pan left",
        "image_url": image_url,
        "settings": {"duration": 10},
    }
    priced = invoke(quote.handler, http_event("POST", "/functions/v1/quote", headers=auth(caller), body=body))
    assert json_body(priced)["credits"] == 10 and json_body(priced)["balance_after"] == 0
    created = caller.generate(**body)
    assert created.status_code == 202, created.text
    job_id = created.json()["job_id"]
    canceled = invoke(
        cancel_video.handler,
        http_event("POST", "/functions/v1/cancel-video", headers=auth(caller), body={"job_id": job_id}),
    )
    assert canceled["statusCode"] in (200, 409)
    credits = invoke(
        get_credits.handler,
        http_event("GET", "/functions/v1/get-credits", query="limit=5", headers=auth(caller)),
    )
    expected = 10 if canceled["statusCode"] == 200 else 0
    assert json_body(credits)["balance"] == expected


@pytest.fixture
def fal(stack: str, mp4: bytes) -> Iterator[FalEmulator]:
    """The fal emulator, whose webhooks are lost: the test delivers them to the Lambda handler itself."""
    with FalEmulator() as emu, configured(**emu.env()):
        emu.set_plan(JobPlan(video=MediaFile(data=mp4), webhook=WebhookPlan(send=False)))
        _http.breaker("fal").reset()
        yield emu
        _http.breaker("fal").reset()


def _fal_job(caller: Caller, db: Database, fal: FalEmulator) -> tuple[str, str]:
    """Start a fal job through the generate-video handler and wait until fal finished it; (job id, request id)."""
    caller.grant(500)
    body = {
        "model_id": KLING,
        "prompt": "a lighthouse at dusk",
        "image_url": caller.upload(),
        "settings": {"duration": 5},
    }
    headers = auth(caller, **{"idempotency-key": uuid.uuid4().hex})
    created = invoke(
        generate_video.handler, http_event("POST", "/functions/v1/generate-video", headers=headers, body=body)
    )
    assert created["statusCode"] == 202, created["body"]
    job_id = json_body(created)["job_id"]
    request_id = str(db.call("job_for_provider", job=uuid.UUID(job_id))["request_id"])
    fal.wait_for(request_id)
    return job_id, request_id


def _webhook_event(job_id: str, headers: dict[str, str], raw: bytes) -> dict[str, Any]:
    """fal's delivery as API Gateway passes it on: base64 body, lower-case headers, job_id in the query string."""
    return http_event(
        "POST",
        "/functions/v1/fal-webhook",
        query={"job_id": job_id},
        headers={k.lower(): v for k, v in headers.items()},
        body=raw,
        base64_body=True,
    )


def test_fal_webhook_base64_body_verifies_and_completes_the_job(
    caller: Caller, db: Database, fal: FalEmulator
) -> None:
    """A base64-encoded fal webhook verifies over the exact raw bytes, completes and mirrors the job."""
    job_id, request_id = _fal_job(caller, db, fal)
    signed = fal.build_webhook(request_id)
    # Bytes a re-serialisation would change: extra whitespace and a non-ASCII character the signature covers.
    raw = signed.body.replace(b'"status": "OK"', b'"status":   "OK"')[:-1] + b', "note": "\xc3\xa9t\xc3\xa9"}'
    assert json.loads(raw)["status"] == "OK" and raw != signed.body
    delivery = fal.build_webhook(request_id, body=raw)
    response = invoke(fal_webhook.handler, _webhook_event(job_id, delivery.headers, delivery.body))
    assert response["statusCode"] == 200, response["body"]
    assert json_body(response) == {"received": True, "result": "recorded"}
    seen = invoke(
        get_video_status.handler,
        http_event("GET", "/functions/v1/get-video-status", query=f"job_id={job_id}", headers=auth(caller)),
    )
    job = json_body(seen)
    assert job["status"] == "completed" and job["video_url"] and job["thumbnail_url"]


def test_fal_webhook_with_changed_bytes_is_refused(caller: Caller, db: Database, fal: FalEmulator) -> None:
    """The same JSON re-serialised (other bytes) fails the Ed25519 check: 400, and the job is untouched."""
    job_id, request_id = _fal_job(caller, db, fal)
    signed = fal.build_webhook(request_id)
    reserialised = json.dumps(json.loads(signed.body), separators=(",", ":")).encode()
    response = invoke(fal_webhook.handler, _webhook_event(job_id, signed.headers, reserialised))
    assert response["statusCode"] == 400
    assert json_body(response)["error"]["code"] == "invalid_signature"
    job = db.call("job_for_provider", job=uuid.UUID(job_id))
    assert job["status"] in ("pending", "processing")


@pytest.fixture
def lambda_api(s3_endpoint: str) -> Iterator[str]:  # noqa: F811  (the moto server fixture imported above)
    """moto's Lambda API (no Docker: invocations are accepted, not run) with mirrorVideo and deliverWebhooks
    functions; the first one's name (the second's is the same with deliverWebhooks)."""
    import boto3

    httpx.post(f"{s3_endpoint}/moto-api/config", json={"lambda": {"use_docker": False}}).raise_for_status()
    env = {
        "AWS_ENDPOINT_URL_LAMBDA": s3_endpoint,
        "AWS_ENDPOINT_URL_IAM": s3_endpoint,
        "AWS_DEFAULT_REGION": "us-east-1",
    }
    suffix = uuid.uuid4().hex[:8]
    with configured(**env):
        iam = boto3.client("iam")
        role = iam.create_role(
            RoleName=f"mirror-{uuid.uuid4().hex[:8]}",
            AssumeRolePolicyDocument=json.dumps({"Version": "2012-10-17", "Statement": []}),
        )["Role"]["Arn"]
        for module, name in (("mirror_video", "mirrorVideo"), ("deliver_webhooks", "deliverWebhooks")):
            code = io.BytesIO()
            with zipfile.ZipFile(code, "w") as archive:
                archive.writestr(f"functions/{module}.py", "def handler(event, context): return event\n")
            boto3.client("lambda").create_function(
                FunctionName=f"i2v-test-{name}-{suffix}",
                Runtime="python3.12",
                Role=role,
                Handler=f"functions/{module}.handler",
                Code={"ZipFile": code.getvalue()},
            )
        lambda_invoke.lambda_client.cache_clear()
        yield f"i2v-test-mirrorVideo-{suffix}"
    lambda_invoke.lambda_client.cache_clear()


def test_fal_webhook_hands_the_copy_to_the_mirror_function(
    caller: Caller, db: Database, fal: FalEmulator, lambda_api: str, caplog: pytest.LogCaptureFixture
) -> None:
    """With MIRROR_FUNCTION, the webhook records the verdict, invokes the function asynchronously (202) and
    answers without copying; the mirror handler, given the job id, then copies the video and completes the job."""
    job_id, request_id = _fal_job(caller, db, fal)
    delivery = fal.build_webhook(request_id)
    with configured(MIRROR_FUNCTION=lambda_api), caplog.at_level(logging.INFO, logger="i2v.mirror"):
        response = invoke(fal_webhook.handler, _webhook_event(job_id, delivery.headers, delivery.body))
    assert response["statusCode"] == 200 and json_body(response)["result"] == "recorded"
    handed = [r for r in caplog.records if r.getMessage() == "mirror handed off"]
    assert [(r.__dict__["job_id"], r.__dict__["status"]) for r in handed] == [(job_id, 202)]
    assert db.call("job_for_provider", job=uuid.UUID(job_id))["status"] == "processing"  # not copied here
    result = mirror_video.handler({"job_id": job_id}, LambdaContext())
    assert result == {"job_id": job_id, "mirrored": True}
    job = db.call("job_for_provider", job=uuid.UUID(job_id))
    assert job["status"] == "completed"
    again = mirror_video.handler({"job_id": job_id}, LambdaContext())  # Lambda may deliver an event twice
    assert again == {"job_id": job_id, "mirrored": False}


@pytest.mark.parametrize("subscribed", [True, False])
def test_a_job_change_wakes_the_webhook_function_only_when_a_delivery_is_due(
    caller: Caller, db: Database, lambda_api: str, caplog: pytest.LogCaptureFixture, subscribed: bool
) -> None:
    """With WEBHOOK_FUNCTION, a cancel through the Lambda handler that queued a job.canceled delivery invokes
    deliverWebhooks asynchronously (202) as the invocation ends; with no endpoint subscribed nothing is invoked."""
    sender = lambda_api.replace("mirrorVideo", "deliverWebhooks")
    end_pending_deliveries(db)
    caller.grant(3)
    if subscribed:
        with configured(ALLOW_PRIVATE_WEBHOOK_URLS="true"):
            endpoint = caller.http.post(
                "/functions/v1/create-webhook-endpoint",
                json={"url": "http://127.0.0.1:9/hooks", "events": ["job.canceled"]},
            )
        assert endpoint.status_code == 201, endpoint.text
    job = debit_job(db, caller.id, 3)
    with configured(WEBHOOK_FUNCTION=sender), caplog.at_level(logging.INFO, logger="i2v.invoke"):
        canceled = invoke(
            cancel_video.handler,
            http_event("POST", "/functions/v1/cancel-video", headers=auth(caller), body={"job_id": str(job)}),
        )
    assert canceled["statusCode"] == 200, canceled
    woken = [r for r in caplog.records if r.getMessage() == "webhook sender woken"]
    assert [r.__dict__["function"] for r in woken] == ([sender] if subscribed else [])


def test_failed_hand_off_is_left_to_the_reconciler(
    caller: Caller, db: Database, fal: FalEmulator, caplog: pytest.LogCaptureFixture
) -> None:
    """When the Lambda API cannot be reached the hand-off is logged, not retried here; the reconciler copies it."""
    job_id, request_id = _fal_job(caller, db, fal)
    delivery = fal.build_webhook(request_id)
    with socket.socket() as closed:  # a port nobody listens on: connections are refused
        closed.bind(("127.0.0.1", 0))
        unreachable = f"http://127.0.0.1:{closed.getsockname()[1]}"
    env = {
        "MIRROR_FUNCTION": "i2v-test-mirrorVideo",
        "AWS_ENDPOINT_URL_LAMBDA": unreachable,
        "AWS_MAX_ATTEMPTS": "1",
    }
    lambda_invoke.lambda_client.cache_clear()
    with (
        configured(AWS_DEFAULT_REGION="us-east-1", **env),
        caplog.at_level(logging.INFO, logger="i2v.mirror"),
    ):
        response = invoke(fal_webhook.handler, _webhook_event(job_id, delivery.headers, delivery.body))
    lambda_invoke.lambda_client.cache_clear()
    assert response["statusCode"] == 200
    failed = [r for r in caplog.records if r.getMessage().startswith("mirror hand-off failed")]
    assert [r.__dict__["job_id"] for r in failed] == [job_id]
    assert db.call("job_for_provider", job=uuid.UUID(job_id))["status"] == "processing"
    reconcile.handler({"source": "aws.events"}, LambdaContext())
    assert db.call("job_for_provider", job=uuid.UUID(job_id))["status"] == "completed"


def test_mirror_event_without_a_job_id_is_refused_without_retry(stack: str) -> None:
    """An event that names no job is logged and answered (a retry could not succeed)."""
    assert mirror_video.handler({"nothing": 1}, LambdaContext()) == {"mirrored": False, "error": "no job_id"}


def test_stripe_webhook_event_through_the_handler(shop: Shop) -> None:
    """A signed Stripe event, passed on as API Gateway does, credits the pack once; a replay is a duplicate."""
    session_id = shop.start("pack_500")
    delivery = prepare_delivery(shop.emu.complete_session(session_id), shop.emu.webhook_secret)
    event = http_event(
        "POST",
        "/functions/v1/stripe-webhook",
        headers={k.lower(): v for k, v in delivery.headers.items()},
        body=delivery.body,
    )
    first = invoke(stripe_webhook.handler, event)
    again = invoke(stripe_webhook.handler, event)
    assert first["statusCode"] == again["statusCode"] == 200, first["body"]
    assert [json_body(first)["outcome"], json_body(again)["outcome"]] == ["credited", "duplicate"]
    assert shop.check_books()["balance"] == 500


def test_reconciler_is_a_plain_handler(stack: str) -> None:
    """The scheduled reconciler takes an EventBridge event and returns its counts."""
    event = {
        "version": "0",
        "id": str(uuid.uuid4()),
        "detail-type": "Scheduled Event",
        "source": "aws.events",
        "account": "123456789012",
        "time": "2026-11-22T10:00:00Z",
        "region": "us-east-1",
        "resources": ["arn:aws:events:us-east-1:123456789012:rule/i2v-ci-reconcile"],
        "detail": {},
    }
    result = reconcile.handler(event, LambdaContext())
    assert set(result) == {"reconciled", "purged_keys", "purged_stripe_events"}
    assert isinstance(result["purged_keys"], int) and isinstance(result["purged_stripe_events"], int)


# Libraries a handler's init must not load: each comes with the first request that uses it, if any.
_HEAVY = (
    "fastapi", "starlette", "pydantic", "psycopg", "jwt",
    "stripe", "boto3", "fal_client", "av", "cv2", "numpy", "uvicorn", "pgserver", "appstoreserverlibrary",
    "opentelemetry", "prometheus_client",
)  # fmt: skip


def test_handlers_import_no_heavy_library_they_do_not_use() -> None:
    """Importing and initialising a handler (Mangum included) loads no web framework, pydantic, psycopg, PyJWT,
    stripe, app-store-server-library, boto3, fal-client, PyAV, OpenCV, numpy, OpenTelemetry or
    prometheus-client."""
    modules = sorted(p.stem for p in (ROOT / "functions").glob("*.py") if p.stem != "__init__")
    script = (
        "import importlib, json, sys\n"
        "m = importlib.import_module('functions.' + sys.argv[1])\n"
        "prepare = getattr(m.handler, 'prepare', None)\n"
        "prepare and prepare()\n"
        f"print(json.dumps(sorted(n for n in {list(_HEAVY)!r} if n in sys.modules)))\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    procs = {
        name: subprocess.Popen(
            [sys.executable, "-c", script, name], stdout=subprocess.PIPE, text=True, cwd=ROOT, env=env
        )
        for name in modules
    }
    loaded = {name: set(json.loads(proc.communicate(timeout=60)[0])) for name, proc in procs.items()}
    assert loaded == {name: set() for name in modules}


def test_api_gateway_base64_decoding_is_honoured_for_json_bodies(caller: Caller) -> None:
    """A JSON body that API Gateway base64-encoded is decoded before the app reads it."""
    body = {
        "model_id": "local-motion",
        "prompt": "x",
        "image_url": caller.upload(),
        "settings": {"duration": 1},
    }
    event = http_event(
        "POST",
        "/functions/v1/quote",
        headers=auth(caller, **{"content-type": "application/json"}),
        body=json.dumps(body).encode(),
        base64_body=True,
    )
    assert base64.b64decode(event["body"]) == json.dumps(body).encode()
    response = invoke(quote.handler, event)
    assert response["statusCode"] == 200 and json_body(response)["credits"] == 1
