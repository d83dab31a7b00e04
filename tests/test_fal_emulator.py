"""The fal emulator is faithful: the unmodified fal_client works against it, and its webhooks verify."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import fal_client
import httpx
import pytest

from shared.providers.fal.signature import FalJwks, FalSignatureError, verify_fal_webhook
from tests.emulators.fal import (
    DEFAULT_VIDEO_BYTES,
    FalEmulator,
    Fault,
    InfraError,
    JobPlan,
    MediaFile,
    ModelError,
    WebhookPlan,
    generated_bytes,
)

APP = "fal-ai/kling-video/v2.1/standard/image-to-video"
APP_OWNER_ALIAS = "fal-ai/kling-video"
INPUT = {"prompt": "a cat surfing", "image_url": "https://v3.fal.media/files/cat.png", "duration": "5"}

# The reference's reproducible signature test vector.
VECTOR_X = "A6EHv_POEL4dcN0Y50vAmWfk1jCbpQ1fHdyGZBJVMbg="
VECTOR_TS = 1752019770
VECTOR_HEADERS = {
    "X-Fal-Webhook-Request-Id": "5057fca7-2eb3-468f-b95d-cefe92b0b9d4",
    "X-Fal-Webhook-User-Id": "test-user-123",
    "X-Fal-Webhook-Timestamp": str(VECTOR_TS),
    "X-Fal-Webhook-Signature": "8fdadfe3e76092c6d129888fd66a5cdfa3328ef88a61a2867d0150f628563eca"
    "656a8a349babbab1e6c30786142c44c7c93b6790916ff353504c7735f71db001",
}
VECTOR_BODY = (
    b'{"error": null, "gateway_request_id": "5057fca7-2eb3-468f-b95d-cefe92b0b9d4", "payload": '
    b'{"has_nsfw_concepts": [false], "images": [{"content_type": "image/jpeg", "height": 1024, "url": '
    b'"https://v3.fal.media/files/lion/O853qAknYZGU8_2QCbJwd.jpeg", "width": 1024}], "prompt": "dog", '
    b'"seed": 17454220438242315174, "timings": {"inference": 2.107286686077714}}, '
    b'"request_id": "5057fca7-2eb3-468f-b95d-cefe92b0b9d4", "status": "OK"}'
)
VECTOR_SHA256 = "e73f0ca40e4b68c75eeb5d32d601691c3be2a32ee2da7efc07891152eeeff9cc"


@pytest.fixture
def emu() -> Iterator[FalEmulator]:
    """A running emulator."""
    with FalEmulator() as emulator:
        yield emulator


@pytest.fixture
def client(emu: FalEmulator) -> Iterator[Any]:
    """The official fal_client SyncClient, pointed at the emulator."""
    with emu.patch_fal_client() as sync_client:
        yield sync_client


@pytest.fixture
def jwks(emu: FalEmulator) -> FalJwks:
    """The production key cache, reading the emulator's JWKS."""
    return FalJwks(emu.jwks_url)


def _auth(emu: FalEmulator) -> dict[str, str]:
    """The fal auth header for the emulator's key."""
    return {"Authorization": f"Key {emu.key}"}


# ------------------------------------------------------------------------------------------ queue


def test_submit_answers_reference_shape_with_owner_app_urls(emu: FalEmulator, client: Any) -> None:
    """Submit takes the full endpoint id, the webhook query and the Key header; URLs drop the subpath."""
    handle = client.submit(APP, INPUT, webhook_url=emu.sink_url)
    base = f"{emu.queue_url}{APP_OWNER_ALIAS}/requests/{handle.request_id}"
    assert (handle.response_url, handle.status_url, handle.cancel_url) == (
        base,
        f"{base}/status",
        f"{base}/cancel",
    )
    (submit,) = emu.requests_for("submit")
    assert submit.method == "POST"
    assert submit.path == f"/queue/{APP}"
    assert submit.query == {"fal_webhook": emu.sink_url}
    assert submit.headers["authorization"] == f"Key {emu.key}"
    assert submit.json() == INPUT
    assert emu.job(handle.request_id).webhook_url == emu.sink_url

    raw = httpx.post(
        emu.queue_url + APP, json=INPUT, headers=_auth(emu), params={"fal_webhook": emu.sink_url}
    )
    body = raw.json()
    assert raw.status_code == 200
    assert set(body) == {
        "status", "request_id", "response_url", "status_url", "cancel_url", "queue_position",
        "gateway_request_id",
    }  # fmt: skip
    assert body["status"] == "IN_QUEUE"
    assert body["gateway_request_id"] == body["request_id"] == str(uuid.UUID(body["request_id"]))


def test_jobs_go_through_queue_states_with_positions_and_logs(emu: FalEmulator, client: Any) -> None:
    """With one slot, later jobs wait with 0-based positions; the running one logs; completion frees it."""
    emu.set_concurrency(1)
    emu.set_plan(JobPlan(latency_s=None))
    first, second, third = (client.submit(APP, INPUT) for _ in range(3))

    assert second.status() == fal_client.Queued(position=0)
    assert third.status() == fal_client.Queued(position=1)
    running = first.status(with_logs=True)
    assert isinstance(running, fal_client.InProgress)
    assert [entry["message"] for entry in running.logs or []] == ["Loading model", "Generating video"]
    assert set((running.logs or [{}])[0]) == {"message", "level", "source", "timestamp"}
    assert first.status() == fal_client.InProgress(logs=None)

    emu.finish(first.request_id)
    done = first.status(with_logs=True)
    assert isinstance(done, fal_client.Completed)
    assert done.error is None and "inference_time" in done.metrics
    assert isinstance(second.status(), fal_client.InProgress)
    assert third.status() == fal_client.Queued(position=0)

    raw = httpx.get(first.status_url, headers=_auth(emu), params={"logs": "1"})
    assert raw.status_code == 200 and isinstance(raw.json()["logs"], list)
    assert httpx.get(third.status_url, headers=_auth(emu), params={"logs": "0"}).status_code == 202

    result = first.get()
    assert result["video"]["content_type"] == "video/mp4"
    assert result["video"]["file_size"] == len(DEFAULT_VIDEO_BYTES)
    assert isinstance(result["seed"], int)
    assert httpx.get(result["video"]["url"]).content == DEFAULT_VIDEO_BYTES


def test_latency_and_concurrency_shape_completion_times(emu: FalEmulator, client: Any) -> None:
    """Each job runs for its latency and at most `concurrency` run at once."""
    emu.set_concurrency(1)
    emu.set_plan(JobPlan(latency_s=0.15))
    first, second = client.submit(APP, INPUT), client.submit(APP, INPUT)
    a, b = emu.wait_for(first.request_id), emu.wait_for(second.request_id)
    assert a.completed_at is not None and b.completed_at is not None and b.started_at is not None
    assert b.started_at >= a.completed_at - 0.01
    assert b.completed_at - a.completed_at >= 0.14


def test_module_style_status_and_result_build_owner_app_urls(emu: FalEmulator, client: Any) -> None:
    """client.status/result by app id and request id reach the same job through owner/app URLs."""
    request_id = client.submit(APP, INPUT).request_id
    emu.wait_for(request_id)
    assert isinstance(client.status(APP, request_id, with_logs=True), fal_client.Completed)
    assert client.result(APP, request_id)["video"]["url"].startswith(emu.cdn_url + "/files/")
    status_calls = emu.requests_for("status")
    assert {call.path for call in status_calls} == {f"/queue/{APP_OWNER_ALIAS}/requests/{request_id}/status"}
    assert status_calls[0].query == {"logs": "true"}
    assert all(call.headers["authorization"] == f"Key {emu.key}" for call in emu.requests)


def test_subpath_status_url_is_rejected_unless_lenient(emu: FalEmulator, client: Any) -> None:
    """Status with the endpoint subpath kept answers 405, as fal does; lenient mode accepts it."""
    request_id = client.submit(APP, INPUT).request_id
    url = f"{emu.queue_url}{APP}/requests/{request_id}/status"
    assert httpx.get(url, headers=_auth(emu)).status_code == 405
    emu.strict_paths = False
    assert httpx.get(url, headers=_auth(emu)).status_code in (200, 202)


def test_cancel_answers_requested_already_completed_and_not_found(emu: FalEmulator, client: Any) -> None:
    """Cancel: 202 for queued/running jobs, 400 ALREADY_COMPLETED once done, 404 NOT_FOUND for unknown ids."""
    emu.set_concurrency(1)
    emu.set_plan(JobPlan(latency_s=None))
    running, queued = client.submit(APP, INPUT), client.submit(APP, INPUT)
    assert queued.cancel() is None
    cancelled = queued.status()
    assert isinstance(cancelled, fal_client.Completed) and cancelled.error_type == "client_cancelled"
    assert running.cancel() is None
    assert isinstance(running.status(), fal_client.Completed)

    with pytest.raises(fal_client.FalClientHTTPError) as done:
        running.cancel()
    assert done.value.status_code == 400 and done.value.response.json() == {"status": "ALREADY_COMPLETED"}
    with pytest.raises(fal_client.FalClientHTTPError) as unknown:
        client.cancel(APP, str(uuid.uuid4()))
    assert unknown.value.status_code == 404 and unknown.value.response.json() == {"status": "NOT_FOUND"}


def test_wrong_key_is_rejected_with_401(emu: FalEmulator) -> None:
    """Every queue call without a known `Authorization: Key` answers 401."""
    with (
        emu.patch_fal_client(key="wrong-id:wrong-secret") as bad_client,
        pytest.raises(fal_client.FalClientHTTPError) as denied,
    ):
        bad_client.submit(APP, INPUT)
    assert denied.value.status_code == 401
    assert denied.value.message == "No user found for Key ID and Secret"
    assert httpx.post(emu.queue_url + APP, json=INPUT).status_code == 401


def test_429_with_retry_after_then_success(emu: FalEmulator, client: Any) -> None:
    """Injected 429s carry Retry-After; fal_client retries them and the submit then succeeds."""
    emu.add_fault(Fault("submit", 429, times=1, retry_after=3))
    raw = httpx.post(emu.queue_url + APP, json=INPUT, headers=_auth(emu))
    assert raw.status_code == 429 and raw.headers["retry-after"] == "3"

    emu.add_fault(Fault("submit", 429, times=2))
    handle = client.submit(APP, INPUT)
    assert handle.request_id
    assert [r.op for r in emu.requests_for("submit")] == ["submit"] * 4


def test_persistent_500_on_result_is_not_retried(emu: FalEmulator, client: Any) -> None:
    """An app-level 500 carries x-fal-request-id and an error_type, so fal_client raises, not retries."""
    handle = client.submit(APP, INPUT)
    emu.add_fault(Fault("result", 500, times=None, request_id=handle.request_id))
    for _ in range(2):
        with pytest.raises(fal_client.FalClientHTTPError) as failed:
            handle.get()
        assert failed.value.status_code == 500
        assert failed.value.error_type == "internal_error"
        assert failed.value.response_headers["x-fal-request-id"] == handle.request_id
    assert len(emu.requests_for("result")) == 2


def test_latency_fault_slows_a_call(emu: FalEmulator, client: Any) -> None:
    """A fault without a status code only delays the call."""
    emu.add_fault(Fault("status", delay_s=0.2))
    handle = client.submit(APP, INPUT)
    started = time.monotonic()
    handle.status()
    assert time.monotonic() - started >= 0.2


def test_model_error_completes_then_result_and_webhook_report_it(
    emu: FalEmulator, client: Any, jwks: FalJwks
) -> None:
    """A model error is COMPLETED in status, a 422 with detail on result, and an ERROR webhook."""
    emu.push_plan(JobPlan(model_error=ModelError()), endpoint=APP)
    handle = client.submit(APP, INPUT, webhook_url=emu.sink_url)
    (received,) = emu.wait_for_sink(1)
    status = handle.status()
    assert isinstance(status, fal_client.Completed) and status.error is None
    with pytest.raises(fal_client.FalClientHTTPError) as failed:
        handle.get()
    assert failed.value.status_code == 422
    assert failed.value.response_headers["x-fal-retryable"] == "false"
    assert isinstance(failed.value.message, list) and failed.value.message[0]["type"] == "one_of"

    verify_fal_webhook(received.headers, received.body, jwks)
    body = received.json()
    assert body["status"] == "ERROR" and body["error"] == "Invalid status code: 422"
    assert body["payload"]["detail"][0]["loc"] == ["body", "duration"]


def test_infra_error_sets_error_fields_on_status(emu: FalEmulator, client: Any) -> None:
    """An infrastructure failure is COMPLETED with error and error_type; result answers it without retries."""
    emu.push_plan(JobPlan(infra_error=InfraError()))
    handle = client.submit(APP, INPUT)
    emu.wait_for(handle.request_id)
    status = handle.status()
    assert status == fal_client.Completed(
        logs=None, metrics=status.metrics, error="Runner disconnected", error_type="runner_disconnected"
    )
    with pytest.raises(fal_client.FalClientHTTPError) as failed:
        handle.get()
    assert failed.value.status_code == 503 and failed.value.error_type == "runner_disconnected"
    assert len(emu.requests_for("result")) == 1


# ------------------------------------------------------------------------------------------ storage


def test_upload_bytes_and_file_through_cdn_token_flow(emu: FalEmulator, client: Any, tmp_path: Path) -> None:
    """upload/upload_file get a token from rest, POST raw bytes to the CDN, and the access URL serves them."""
    url = client.upload(b"\x89PNG fake", "image/png", file_name="cat.png")
    assert url.startswith(emu.cdn_b_url + "/files/b/") and url.endswith("_cat.png")
    assert httpx.get(url).content == b"\x89PNG fake"

    frame = tmp_path / "frame.jpg"
    frame.write_bytes(b"\xff\xd8 jpeg")
    file_url = client.upload_file(frame)
    served = httpx.get(file_url)
    assert served.content == b"\xff\xd8 jpeg" and served.headers["content-type"] == "image/jpeg"

    (token_call,) = emu.requests_for("token")
    assert token_call.path == "/rest/storage/auth/token"
    assert token_call.query == {"storage_type": "fal-cdn-v3"}
    assert token_call.headers["authorization"] == f"Key {emu.key}"
    uploads = emu.requests_for("upload")
    assert [u.path for u in uploads] == ["/cdn/files/upload"] * 2
    assert uploads[0].headers["content-type"] == "image/png"
    assert uploads[0].headers["x-fal-file-name"] == "cat.png"
    assert uploads[1].headers["x-fal-file-name"] == "frame.jpg"
    assert all(u.headers["authorization"].startswith("Bearer ") for u in uploads)
    assert httpx.post(emu.cdn_url + "/files/upload", content=b"x").status_code == 401


def test_media_faults_not_found_truncated_and_ranges(emu: FalEmulator) -> None:
    """Media URLs can 404, cut the body short of Content-Length, and serve byte ranges."""
    missing = emu.add_file("gone.mp4", MediaFile(fault="not_found"))
    assert httpx.get(missing).status_code == 404

    cut = emu.add_file("cut.mp4", MediaFile(size=4096, fault="truncate", truncate_at=1000))
    received = bytearray()
    with pytest.raises(httpx.RemoteProtocolError), httpx.stream("GET", cut) as response:
        assert response.headers["content-length"] == "4096"
        for chunk in response.iter_bytes():
            received += chunk
    assert bytes(received) == generated_bytes(0, 1000)

    whole = emu.add_file("whole.bin", MediaFile(size=5000))
    ranged = httpx.get(whole, headers={"Range": "bytes=4000-"})
    assert ranged.status_code == 206 and ranged.content == generated_bytes(4000, 1000)


def test_large_generated_video_is_streamed(emu: FalEmulator, client: Any) -> None:
    """A 200 MB generated result video streams with the announced size and deterministic bytes."""
    size = 200 * 1024 * 1024
    emu.set_plan(JobPlan(video=MediaFile(size=size)))
    video = client.submit(APP, INPUT).get()["video"]
    assert video["file_size"] == size
    total = 0
    with httpx.stream("GET", video["url"]) as response:
        assert int(response.headers["content-length"]) == size
        for chunk in response.iter_raw(1 << 20):
            if total == 0:
                assert chunk[:300] == generated_bytes(0, 300)
            total += len(chunk)
    assert total == size


# ------------------------------------------------------------------------------------------ signatures


def test_reference_vector_verifies_with_padded_and_unpadded_jwks(emu: FalEmulator, jwks: FalJwks) -> None:
    """The reference vector verifies with padded or unpadded JWKS x; the emulator signs it identically."""
    assert len(VECTOR_BODY) == 426 and hashlib.sha256(VECTOR_BODY).hexdigest() == VECTOR_SHA256
    assert emu.jwks()["keys"][0]["x"] == VECTOR_X
    verify_fal_webhook(VECTOR_HEADERS, VECTOR_BODY, jwks, now=VECTOR_TS)

    unpadded = {"keys": [{"kty": "OKP", "crv": "Ed25519", "x": VECTOR_X.rstrip("=")}]}
    transport = httpx.MockTransport(lambda request: httpx.Response(200, json=unpadded))
    with httpx.Client(transport=transport) as http:
        verify_fal_webhook(
            VECTOR_HEADERS, VECTOR_BODY, FalJwks("https://jwks.test/", client=http), now=VECTOR_TS
        )

    signed = emu.sign(
        VECTOR_BODY, VECTOR_HEADERS["X-Fal-Webhook-Request-Id"], timestamp=VECTOR_TS, user_id="test-user-123"
    )
    assert signed["X-Fal-Webhook-Signature"] == VECTOR_HEADERS["X-Fal-Webhook-Signature"]


def test_emulator_deliveries_verify_and_forgeries_fail(emu: FalEmulator, client: Any, jwks: FalJwks) -> None:
    """Emulator-signed deliveries verify; tampered body/request id, stale timestamp or unknown key fail."""
    request_id = client.submit(APP, INPUT).request_id
    emu.wait_for(request_id)
    good = emu.build_webhook(request_id)
    assert good.json()["status"] == "OK" and good.json()["payload"]["video"]["url"]
    verify_fal_webhook(good.headers, good.body, jwks)
    verify_fal_webhook({k.lower(): v for k, v in good.headers.items()}, good.body, jwks)

    forgeries = {
        "bad signature": (good.headers, good.body.replace(b'"OK"', b'"ERROR"')),
        "stale timestamp": (emu.build_webhook(request_id, timestamp_offset_s=-301).headers, good.body),
        "missing header": ({k: v for k, v in good.headers.items() if "Timestamp" not in k}, good.body),
    }
    for problem, (headers, body) in forgeries.items():
        with pytest.raises(FalSignatureError, match=problem):
            verify_fal_webhook(headers, body, jwks)
    with pytest.raises(FalSignatureError, match="bad signature"):
        verify_fal_webhook({**good.headers, "X-Fal-Webhook-Request-Id": str(uuid.uuid4())}, good.body, jwks)
    forged = emu.build_webhook(request_id, unknown_key=True)
    with pytest.raises(FalSignatureError, match="bad signature"):
        verify_fal_webhook(forged.headers, forged.body, jwks)
    with pytest.raises(FalSignatureError, match="no keys"):
        verify_fal_webhook(good.headers, good.body, FalJwks(emu.base_url + "/nowhere.json"))


def test_rotated_key_is_found_after_refetch(emu: FalEmulator, client: Any, jwks: FalJwks) -> None:
    """Keys are cached; after a rotation a refetch (once the cache is old enough) picks up the new key."""
    request_id = client.submit(APP, INPUT).request_id
    emu.wait_for(request_id)
    verify_fal_webhook(*_headers_body(emu.build_webhook(request_id)), jwks)
    emu.rotate_signing_key()
    rotated = emu.build_webhook(request_id)
    with pytest.raises(FalSignatureError, match="bad signature"):
        verify_fal_webhook(rotated.headers, rotated.body, jwks)  # cache younger than 60 s: no refetch
    assert jwks.refresh(min_age_s=0)
    verify_fal_webhook(rotated.headers, rotated.body, jwks)
    verify_fal_webhook(rotated.headers, rotated.body, FalJwks(emu.jwks_url, ttl_s=0))
    assert len(emu.requests_for("jwks")) == 3


def _headers_body(delivery: Any) -> tuple[dict[str, str], bytes]:
    """A signed delivery as (headers, body)."""
    return delivery.headers, delivery.body


# ------------------------------------------------------------------------------------------ webhook delivery


def test_webhook_is_posted_signed_with_the_reference_body_shape(
    emu: FalEmulator, client: Any, jwks: FalJwks
) -> None:
    """A finished job's webhook has sorted keys, error null, the result as payload, and the four headers."""
    handle = client.submit(APP, INPUT, webhook_url=emu.sink_url)
    (received,) = emu.wait_for_sink(1)
    body = received.json()
    assert list(body) == ["error", "gateway_request_id", "payload", "request_id", "status"]
    assert body["status"] == "OK" and body["error"] is None and body["request_id"] == handle.request_id
    assert body["payload"] == handle.get()
    assert b'", "' in received.body and received.headers["content-type"] == "application/json"
    assert received.headers["x-fal-webhook-request-id"] == handle.request_id
    assert received.headers["x-fal-webhook-user-id"] == emu.user_id
    assert len(received.headers["x-fal-webhook-signature"]) == 128
    verify_fal_webhook(received.headers, received.body, jwks)


def test_webhook_options_lost_twice_unknown_key_retries_and_on_demand(
    emu: FalEmulator, client: Any, jwks: FalJwks
) -> None:
    """Webhooks can be lost, duplicated, signed by an unknown key, retried on failure, or resent on demand."""
    emu.push_plan(JobPlan(webhook=WebhookPlan(send=False)))
    lost = client.submit(APP, INPUT, webhook_url=emu.sink_url)
    emu.push_plan(JobPlan(webhook=WebhookPlan(copies=2)))
    twice = client.submit(APP, INPUT, webhook_url=emu.sink_url)
    emu.wait_for(lost.request_id)
    duplicates = emu.wait_for_webhooks(2, request_id=twice.request_id)
    assert duplicates[0].body == duplicates[1].body and all(d.ok for d in duplicates)

    emu.push_plan(JobPlan(webhook=WebhookPlan(unknown_key=True)))
    forged = client.submit(APP, INPUT, webhook_url=emu.sink_url)
    (forged_delivery,) = emu.wait_for_webhooks(1, request_id=forged.request_id)
    with pytest.raises(FalSignatureError):
        verify_fal_webhook(forged_delivery.headers, forged_delivery.body, jwks)

    emu.sink_status = 500
    emu.push_plan(JobPlan(webhook=WebhookPlan(retries=2, retry_base_s=0.01)))
    failing = client.submit(APP, INPUT, webhook_url=emu.sink_url)
    attempts = emu.wait_for_webhooks(3, request_id=failing.request_id)
    assert [(a.attempt, a.status_code) for a in attempts] == [(0, 500), (1, 500), (2, 500)]
    emu.sink_status = 200

    resent = emu.deliver_webhook(lost.request_id, emu.sink_url)
    assert resent.status_code == 200
    verify_fal_webhook(resent.headers, resent.body, jwks)
    assert not [d for d in emu.webhook_deliveries if d.request_id == lost.request_id and d is not resent]


def test_env_configured_fal_client_in_another_process_reaches_the_tls_emulator() -> None:
    """fal_client imported with FAL_QUEUE_RUN_HOST and SSL_CERT_FILE set talks to the emulator over TLS."""
    script = (
        "import sys, fal_client\n"
        "handle = fal_client.SyncClient().submit(sys.argv[1], {'prompt': 'x'})\n"
        "print(handle.status_url)\n"
        "print(handle.get()['video']['url'])\n"
    )
    with FalEmulator(tls=True) as emu:
        env = {**os.environ, **emu.fal_client_env(), "FAL_KEY": emu.key}
        done = subprocess.run(
            [sys.executable, "-c", script, APP],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        )
        status_url, video_url = done.stdout.split()
        assert status_url.startswith(f"https://127.0.0.1:{emu.port}/queue/{APP_OWNER_ALIAS}/requests/")
        with emu.http_client() as http:
            assert http.get(video_url).content == DEFAULT_VIDEO_BYTES
        assert emu.requests_for("submit")[0].path == f"/queue/{APP}"
