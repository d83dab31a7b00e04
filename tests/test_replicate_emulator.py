"""The Replicate emulator is faithful: the unmodified replicate client works against it, and its webhooks verify."""

from __future__ import annotations

import base64
import re
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pydantic.v1
import pytest
from replicate.client import Client
from replicate.exceptions import ModelError, ReplicateError
from replicate.helpers import FileOutput
from replicate.pagination import paginate
from replicate.prediction import Prediction
from replicate.webhook import InvalidSignatureError, InvalidTimestampError, Webhooks, WebhookSigningSecret
from standardwebhooks import Webhook, WebhookVerificationError

from tests.emulators.replicate import (
    DEFAULT_WEBHOOK_SECRET,
    Fault,
    MediaFile,
    PredictionPlan,
    ReplicateEmulator,
    WebhookPlan,
    sign,
)

KLING = "kwaivgi/kling-v2.1"
INPUT = {
    "prompt": "a cat surfing",
    "start_image": "https://example.com/cat.png",
    "mode": "standard",
    "duration": 5,
}
VIDEO = b"\x00\x00\x00\x20ftypisom" + bytes(range(256)) * 8
MANUAL = PredictionPlan(start_s=None, run_s=None)
RUNNING = PredictionPlan(start_s=0.0, run_s=None)

# The reference's test vector (Replicate's client tests; the Standard Webhooks package tests).
VECTOR_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
VECTOR_ID = "msg_p5jXN8AQM9LWM0D4loKWxJek"
VECTOR_TS = 1614265330
VECTOR_BODY = b'{"test": 2432232314}'
VECTOR_SIGNATURE = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="


@pytest.fixture
def emu() -> Iterator[ReplicateEmulator]:
    """A running emulator."""
    with ReplicateEmulator() as emulator:
        yield emulator


@pytest.fixture
def client(emu: ReplicateEmulator) -> Iterator[Client]:
    """The official v1 client, pointed at the emulator (base URL without /v1), polling fast."""
    with httpx.HTTPTransport() as transport:
        yield _client(emu, transport)


def _client(emu: ReplicateEmulator, transport: httpx.HTTPTransport, **kwargs: Any) -> Client:
    """A v1 client on the emulator with its own transport."""
    options: dict[str, Any] = {"api_token": emu.token, "base_url": emu.base_url, **kwargs}
    made = Client(transport=transport, **options)
    made.poll_interval = 0.01
    return made


def _create(client: Client, model: str = KLING, **params: Any) -> Prediction:
    """Create a prediction on an official model."""
    inputs = params.pop("input", INPUT)
    created: Prediction = client.models.predictions.create(model=model, input=inputs, **params)
    return created


def _secret(client: Client) -> str:
    """The account's signing secret, fetched as a receiver would."""
    key: str = client.webhooks.default.secret().key
    return key


# ------------------------------------------------------------------------------------------ predictions


def test_create_answers_201_with_the_reference_shape(emu: ReplicateEmulator, client: Client) -> None:
    """Create on an official model sends input/webhook/filter with Bearer auth and gets a starting prediction."""
    emu.set_plan(MANUAL)
    url = emu.sink_url + "?job=123"
    prediction = _create(client, webhook=url, webhook_events_filter=["start", "completed"])
    assert prediction.status == "starting" and prediction.model == KLING and prediction.version == "hidden"
    assert re.fullmatch(r"[a-z0-9]{26}", prediction.id)
    assert prediction.urls == {
        "get": f"{emu.api_url}/predictions/{prediction.id}",
        "cancel": f"{emu.api_url}/predictions/{prediction.id}/cancel",
        "web": f"{emu.base_url}/p/{prediction.id}",
    }
    (create,) = emu.requests_for("create")
    assert create.path == f"/v1/models/{KLING}/predictions"
    assert create.json() == {"input": INPUT, "webhook": url, "webhook_events_filter": ["start", "completed"]}
    assert create.headers["authorization"] == f"Bearer {emu.token}"
    assert create.headers["user-agent"] == "replicate-python/1.0.7"

    raw = httpx.post(
        f"{emu.api_url}/models/{KLING}/predictions", json={"input": INPUT}, headers=emu.auth_headers()
    )
    assert raw.status_code == 201 and raw.headers["content-type"] == "application/json"
    assert set(raw.json()) == {
        "id", "model", "version", "input", "logs", "output", "data_removed", "error", "status", "created_at", "urls",
    }  # fmt: skip
    assert raw.json()["logs"] == "" and raw.json()["output"] is None
    assert {"ratelimit-remaining", "ratelimit-reset"} <= set(raw.headers)

    emu.push_plan(PredictionPlan(reported_model="kwaivgi/kling-v2.1-master"))
    assert _create(client).model == "kwaivgi/kling-v2.1-master"


def test_wait_polls_to_succeeded_and_the_output_url_serves_the_plan_bytes(
    emu: ReplicateEmulator, client: Client
) -> None:
    """Prediction.wait() polls GET until succeeded; output is one URL serving the plan's bytes; metrics appear."""
    emu.set_plan(PredictionPlan(run_s=0.05, output=VIDEO))
    prediction = _create(client)
    prediction.wait()
    assert prediction.status == "succeeded" and prediction.error is None
    assert isinstance(prediction.output, str) and prediction.output.startswith(emu.delivery_url + "/xezq/")
    assert prediction.output.endswith(".mp4")
    assert set(prediction.metrics or {}) == {"predict_time", "total_time"}
    assert prediction.created_at and prediction.started_at and prediction.completed_at
    stamps = [
        datetime.fromisoformat(s)
        for s in (prediction.created_at, prediction.started_at, prediction.completed_at)
    ]
    assert stamps == sorted(stamps) and all(
        s.endswith("Z") for s in (prediction.created_at, prediction.completed_at)
    )
    assert len(emu.requests_for("get")) >= 1

    video = httpx.get(prediction.output)
    assert video.content == VIDEO and video.headers["content-type"] == "video/mp4"
    ranged = httpx.get(prediction.output, headers={"Range": "bytes=4-11"})
    assert ranged.status_code == 206 and ranged.content == b"ftypisom"


def test_statuses_move_starting_processing_succeeded_under_control(
    emu: ReplicateEmulator, client: Client
) -> None:
    """A manual plan holds starting, then processing with logs, until finish() completes it."""
    emu.set_plan(MANUAL)
    prediction_id = _create(client).id
    assert client.predictions.get(prediction_id).status == "starting"

    emu.start_prediction(prediction_id)
    running = client.predictions.get(prediction_id)
    assert running.status == "processing" and running.started_at and running.completed_at is None
    assert running.logs == "Loading model\nGenerating video" and running.output is None
    emu.append_log(prediction_id, "50%|#####     | 5/10")
    assert client.predictions.get(prediction_id).progress == Prediction.Progress(0.5, 5, 10)

    emu.finish(prediction_id)
    done = client.predictions.get(prediction_id)
    assert done.status == "succeeded" and isinstance(done.output, str)


def test_image_model_outputs_one_image_url_in_the_requested_format(
    emu: ReplicateEmulator, client: Client
) -> None:
    """google/nano-banana answers one image URL: a JPEG by default, a PNG for output_format png."""
    for fmt, magic, content_type in (("jpg", b"\xff\xd8", "image/jpeg"), ("png", b"\x89PNG", "image/png")):
        prediction = _create(client, "google/nano-banana", input={"prompt": "a cat", "output_format": fmt})
        prediction.wait()
        assert isinstance(prediction.output, str) and prediction.output.endswith(f".{fmt}")
        image = httpx.get(prediction.output)
        assert image.content.startswith(magic) and image.headers["content-type"] == content_type


# ------------------------------------------------------------------------------------------ Prefer: wait


def test_run_uses_prefer_wait_and_returns_http_outputs_as_plain_strings(
    emu: ReplicateEmulator, client: Client
) -> None:
    """run() sends Prefer: wait, takes the finished answer without polling; http:// outputs stay plain strings."""
    emu.set_plan(PredictionPlan(run_s=0.05, output=VIDEO))
    output = client.run(KLING, input=INPUT)
    assert isinstance(output, str) and not isinstance(output, FileOutput)
    assert httpx.get(output).content == VIDEO
    (create,) = emu.requests_for("create")
    assert create.headers["prefer"] == "wait"
    assert emu.requests_for("get") == []

    raw = httpx.post(
        f"{emu.api_url}/models/{KLING}/predictions",
        json={"input": INPUT},
        headers={**emu.auth_headers(), "Prefer": "wait=5"},
    )
    assert raw.status_code == 201 and raw.headers["preference-applied"] == "wait"
    assert raw.json()["status"] == "succeeded"


def test_an_expired_wait_answers_starting_even_while_processing(emu: ReplicateEmulator) -> None:
    """When the wait window passes first, the answer says starting (as documented), though the model runs."""
    emu.set_plan(RUNNING)
    emu.max_wait_s = 0.2
    raw = httpx.post(
        f"{emu.api_url}/models/{KLING}/predictions",
        json={"input": INPUT},
        headers={**emu.auth_headers(), "Prefer": "wait=1"},
    )
    assert raw.status_code == 201 and raw.headers["preference-applied"] == "wait"
    assert raw.json()["status"] == "starting"
    assert emu.prediction(raw.json()["id"]).status == "processing"


def test_inline_data_url_output_reads_through_file_output(emu: ReplicateEmulator, client: Client) -> None:
    """A synchronous answer may inline the file as a data: URL; run() wraps it in FileOutput, read() decodes it."""
    emu.set_plan(PredictionPlan(output=VIDEO, inline_output_on_wait=True))
    output = client.run(KLING, input=INPUT)
    assert isinstance(output, FileOutput) and output.url.startswith("data:video/mp4;base64,")
    assert output.read() == VIDEO
    (prediction,) = emu.predictions()
    assert str(client.predictions.get(prediction.id).output).startswith(emu.delivery_url)


def test_https_outputs_are_file_outputs_read_with_the_auth_header() -> None:
    """Over TLS, outputs become FileOutput; read() sends the client's Bearer token, which the host may require."""
    with (
        ReplicateEmulator(tls=True, require_delivery_auth=True, plan=PredictionPlan(output=VIDEO)) as emu,
        httpx.HTTPTransport(verify=emu.verify()) as transport,
    ):
        output = _client(emu, transport).run(KLING, input=INPUT)
        assert isinstance(output, FileOutput) and output.url.startswith(
            f"https://127.0.0.1:{emu.port}/delivery/"
        )
        assert output.read() == VIDEO
        assert emu.requests_for("delivery")[0].headers["authorization"] == f"Bearer {emu.token}"
        with emu.http_client() as http:
            assert http.get(output.url).status_code == 401
        assert emu.env()["SSL_CERT_FILE"] == emu.ca_file


# ------------------------------------------------------------------------------------------ cancel and list


def test_cancel_answers_canceled_then_the_terminal_prediction(emu: ReplicateEmulator, client: Client) -> None:
    """Cancel turns a running prediction canceled with completed_at; cancelling a finished one returns it as is."""
    emu.set_plan(RUNNING)
    prediction = _create(client, webhook=emu.sink_url, webhook_events_filter=["completed"])
    emu.wait_for(prediction.id, "processing")
    prediction.cancel()
    assert prediction.status == "canceled" and prediction.completed_at and prediction.output is None
    again = client.predictions.cancel(prediction.id)
    assert again.status == "canceled" and again.completed_at == prediction.completed_at
    (delivery,) = emu.wait_for_webhooks(1, prediction_id=prediction.id)
    assert delivery.event == "completed" and delivery.json()["status"] == "canceled"

    emu.set_plan(PredictionPlan())
    finished = _create(client)
    finished.wait()
    assert client.predictions.cancel(finished.id).status == "succeeded"
    assert emu.requests_for("cancel")[0].path == f"/v1/predictions/{prediction.id}/cancel"
    with pytest.raises(ReplicateError) as missing:
        client.predictions.cancel("nosuchprediction0000000000")
    assert (
        missing.value.status == 404 and missing.value.detail == "The requested resource could not be found."
    )


def test_list_pages_newest_first_with_absolute_cursor_urls(emu: ReplicateEmulator, client: Client) -> None:
    """The list is newest first in pages; next/previous are absolute URLs on the emulator the client follows."""
    emu.page_size = 2
    ids = [_create(client).id for _ in range(5)]
    first = client.predictions.list()
    assert [p.id for p in first] == ids[:-3:-1] and first.previous is None
    assert first.next is not None and first.next.startswith(emu.api_url + "/predictions?cursor=")
    second = client.predictions.list(first.next)
    assert [p.id for p in second] == [ids[2], ids[1]]
    assert (
        second.previous is not None
        and [p.id for p in client.predictions.list(second.previous)] == ids[:-3:-1]
    )
    every = [p.id for page in paginate(client.predictions.list) for p in page]
    assert every == ids[::-1]

    predictions = emu.predictions()
    middle = (predictions[2].created_at + predictions[3].created_at) / 2
    after = datetime.fromtimestamp(middle, UTC).isoformat()
    raw = httpx.get(f"{emu.api_url}/predictions", params={"created_after": after}, headers=emu.auth_headers())
    assert [p["id"] for p in raw.json()["results"]] == [ids[4], ids[3]] and raw.json()["next"] is None


# ------------------------------------------------------------------------------------------ errors


def test_invalid_input_is_a_422_problem_the_client_raises(emu: ReplicateEmulator, client: Client) -> None:
    """Unknown keys, wrong types, values outside enums and missing required inputs are 422 problem+json."""
    bad = {"prompt": "x", "duration": "5", "cfg_scale": 0.5, "aspect_ratio": "4:3"}
    with pytest.raises(ReplicateError) as failed:
        _create(client, "kwaivgi/kling-v2.5-turbo-pro", input=bad)
    error = failed.value
    assert (error.status, error.title) == (422, "Input validation failed")
    assert error.detail == (
        "- input.cfg_scale: Unexpected field 'cfg_scale'\n"
        '- input.aspect_ratio: aspect_ratio must be one of the following: "16:9", "9:16", "1:1"\n'
        "- input.duration: Invalid type. Expected: integer, given: string\n"
    )

    raw = httpx.post(
        f"{emu.api_url}/models/{KLING}/predictions",
        json={"input": {"prompt": "x", "duration": 7}},
        headers=emu.auth_headers(),
    )
    assert raw.status_code == 422 and raw.headers["content-type"] == "application/problem+json"
    assert raw.json()["invalid_fields"] == [
        {"type": "required", "field": "input.start_image", "description": "start_image is required"},
        {
            "type": "enum",
            "field": "input.duration",
            "description": "duration must be one of the following: 5, 10",
        },
    ]
    assert emu.predictions() == []
    emu.coerce_numeric_strings = True
    assert _create(client, input={**INPUT, "duration": "10"}).input == {**INPUT, "duration": "10"}


def test_unknown_models_404_and_versions_resolve_on_the_predictions_endpoint(
    emu: ReplicateEmulator, client: Client
) -> None:
    """Unknown models are 404; POST /v1/predictions takes owner/name (official) or a known hex version, else 422."""
    with pytest.raises(ReplicateError) as unknown:
        _create(client, "openai/sora-2", input={"prompt": "x"})
    assert unknown.value.status == 404 and unknown.value.title is None

    official = client.predictions.create(version=KLING, input=INPUT)
    assert official.model == KLING and official.version == "hidden"
    with pytest.raises(ReplicateError) as bad:
        client.predictions.create(version="0" * 64, input=INPUT)
    assert (bad.value.status, bad.value.title) == (422, "Invalid version or not permitted")

    version = emu.add_version(KLING)
    assert client.predictions.create(version=version, input=INPUT).version == version
    assert client.predictions.create(version=f"{KLING}:{version}", input=INPUT).model == KLING
    assert emu.requests_for("create")[-1].json()["version"] == f"{KLING}:{version}"


def test_bad_tokens_get_401_and_the_token_scheme_is_accepted(emu: ReplicateEmulator) -> None:
    """A wrong token is a 401 problem ReplicateError; `Authorization: Token` works like Bearer."""
    with httpx.HTTPTransport() as transport, pytest.raises(ReplicateError) as denied:
        _client(emu, transport, api_token="r8_wrong").predictions.list()
    assert (denied.value.status, denied.value.title) == (401, "Unauthenticated")
    assert denied.value.detail == "You did not pass a valid authentication token"
    assert httpx.get(f"{emu.api_url}/predictions").status_code == 401
    token = httpx.get(f"{emu.api_url}/predictions", headers={"Authorization": f"Token {emu.token}"})
    assert token.status_code == 200


def test_injected_429_is_retried_on_get_but_not_on_create(emu: ReplicateEmulator, client: Client) -> None:
    """The v1 client retries GETs on 429 honouring Retry-After, and never retries a create."""
    prediction_id = _create(client).id
    emu.add_fault(Fault("get", 429, times=2, retry_after=0))
    assert client.predictions.get(prediction_id).id == prediction_id
    gets = emu.requests_for("get")
    assert len(gets) == 3

    emu.add_fault(Fault("create", 429, retry_after=0))
    with pytest.raises(ReplicateError) as throttled:
        _create(client)
    assert throttled.value.status == 429
    assert throttled.value.detail == "Request was throttled. Your rate limit resets in ~30s."
    assert len(emu.requests_for("create")) == 2

    emu.add_fault(Fault("create", 402))
    with pytest.raises(ReplicateError) as broke:
        _create(client)
    assert (broke.value.status, broke.value.title) == (402, "Insufficient credit")


def test_the_rate_limiter_throttles_creates_with_retry_after(emu: ReplicateEmulator) -> None:
    """Past the create limit the API answers 429 with ratelimit-* headers and Retry-After."""
    emu.rate_limits = {"create": 2, "other": 100}
    url, headers = f"{emu.api_url}/models/{KLING}/predictions", emu.auth_headers()
    answers = [httpx.post(url, json={"input": INPUT}, headers=headers) for _ in range(3)]
    assert [a.status_code for a in answers] == [201, 201, 429]
    assert [a.headers["ratelimit-remaining"] for a in answers] == ["1", "0", "0"]
    assert 0 < int(answers[2].headers["retry-after"]) <= 60
    assert answers[2].json()["detail"].startswith("Request was throttled. Your rate limit resets in ~")
    assert httpx.get(f"{emu.api_url}/predictions", headers=headers).status_code == 200


def test_a_create_can_take_effect_although_the_caller_sees_an_error(
    emu: ReplicateEmulator, client: Client
) -> None:
    """An `after` fault answers 500 to a create that did start a prediction: what a blind retry would duplicate."""
    emu.add_fault(Fault("create", 500, after=True))
    with pytest.raises(ReplicateError) as failed:
        _create(client)
    assert failed.value.status == 500
    assert len(client.predictions.list().results) == 1


def test_failures_surface_as_failed_predictions_and_model_errors(
    emu: ReplicateEmulator, client: Client
) -> None:
    """A model failure is status failed with error; run() raises ModelError; cross-field rules fail at run time."""
    emu.push_plan(PredictionPlan(error="CUDA out of memory"))
    failed = _create(client)
    failed.wait()
    assert (failed.status, failed.error, failed.output) == ("failed", "CUDA out of memory", None)
    emu.push_plan(PredictionPlan(error="NSFW content detected"))
    with pytest.raises(ModelError) as raised:
        client.run(KLING, input=INPUT)
    assert raised.value.prediction.error == "NSFW content detected"

    mismatch = _create(client, input={**INPUT, "end_image": "https://example.com/end.png"})
    mismatch.wait()
    assert (mismatch.status, mismatch.error) == ("failed", 'end_image requires mode "pro"')
    pro = _create(client, input={**INPUT, "end_image": "https://example.com/end.png", "mode": "pro"})
    pro.wait()
    assert pro.status == "succeeded"


def test_a_v1_client_given_the_v1_base_url_gets_404s(emu: ReplicateEmulator) -> None:
    """The base-URL pitfall: the v1 client adds /v1 itself, so a base ending in /v1 reaches /v1/v1/... (404)."""
    with httpx.HTTPTransport() as transport, pytest.raises(ReplicateError) as lost:
        _create(_client(emu, transport, base_url=emu.api_url))
    assert lost.value.status == 404
    assert emu.requests_for("any")[0].path == f"/v1/v1/models/{KLING}/predictions"


# ------------------------------------------------------------------------------------------ Cancel-After and data


def test_cancel_after_aborts_before_start_and_cancels_while_running(emu: ReplicateEmulator) -> None:
    """Cancel-After: aborted if it passes before the start, canceled while running; the v1 client rejects aborted."""
    url, headers = f"{emu.api_url}/models/{KLING}/predictions", emu.auth_headers()
    emu.push_plan(MANUAL)
    queued = httpx.post(url, json={"input": INPUT}, headers={**headers, "Cancel-After": "100ms"}).json()
    assert "deadline" in queued and queued["status"] == "starting"
    emu.push_plan(RUNNING)
    running = httpx.post(url, json={"input": INPUT}, headers={**headers, "Cancel-After": "0.1s"}).json()

    aborted = emu.wait_for(queued["id"])
    assert aborted.status == "aborted" and aborted.started_at is None and aborted.completed_at is not None
    canceled = emu.wait_for(running["id"])
    assert canceled.status == "canceled" and canceled.started_at is not None
    with httpx.HTTPTransport() as transport, pytest.raises(pydantic.v1.ValidationError):
        _client(emu, transport).predictions.get(queued["id"])

    refused = httpx.post(url, json={"input": INPUT}, headers={**headers, "Cancel-After": "soon"})
    assert refused.status_code == 422 and refused.headers["content-type"] == "application/problem+json"


def test_removed_data_nulls_output_and_deletes_the_file(emu: ReplicateEmulator, client: Client) -> None:
    """After the retention purge, output/input/logs are null, data_removed is true and the file is gone."""
    prediction = _create(client)
    prediction.wait()
    output = str(prediction.output)
    assert httpx.get(output).status_code == 200
    emu.remove_data(prediction.id)
    purged = client.predictions.get(prediction.id)
    assert (
        purged.output is None
        and purged.input is None
        and purged.logs is None
        and purged.status == "succeeded"
    )
    assert httpx.get(f"{emu.api_url}/predictions/{prediction.id}", headers=emu.auth_headers()).json()[
        "data_removed"
    ]
    assert httpx.get(output).status_code == 404

    emu.data_retention_s = 0.0
    later = _create(client)
    later.wait()
    assert client.predictions.get(later.id).output is None


def test_media_faults_truncate_and_404(emu: ReplicateEmulator) -> None:
    """Output files can be cut short of their Content-Length or be missing."""
    cut = emu.add_file("xezq/a/tmpcut.mp4", MediaFile(data=VIDEO, fault="truncate", truncate_at=100))
    with pytest.raises(httpx.RemoteProtocolError), httpx.stream("GET", cut) as response:
        assert response.headers["content-length"] == str(len(VIDEO))
        response.read()
    assert httpx.get(emu.add_file("xezq/b/gone.mp4", MediaFile(fault="not_found"))).status_code == 404


# ------------------------------------------------------------------------------------------ files API


def test_files_api_uploads_and_the_client_turns_paths_into_file_urls(
    emu: ReplicateEmulator, client: Client, tmp_path: Path
) -> None:
    """files.create posts multipart `content` (201); get/list/delete work; Path inputs are uploaded first."""
    image = tmp_path / "cat.png"
    image.write_bytes(b"\x89PNG fake image")
    uploaded = client.files.create(image, metadata={"job": "123"})
    assert (uploaded.name, uploaded.content_type, uploaded.size) == ("cat.png", "image/png", 15)
    assert uploaded.metadata == {"job": "123"} and set(uploaded.checksums) == {"sha256", "md5"}
    assert (
        uploaded.etag == uploaded.checksums["md5"]
        and uploaded.urls["get"] == f"{emu.api_url}/files/{uploaded.id}"
    )
    assert base64.b64decode(uploaded.id).count(b"-") == 4  # a base64-encoded UUID, like the reference's ids
    assert client.files.get(uploaded.id).id == uploaded.id
    assert [f.id for f in client.files.list()] == [uploaded.id]
    assert emu.uploads[uploaded.id].data == b"\x89PNG fake image"

    prediction = _create(client, input={**INPUT, "start_image": image})
    assert prediction.input is not None and prediction.input["start_image"].startswith(
        f"{emu.api_url}/files/"
    )
    assert len(emu.uploads) == 2

    assert client.files.delete(uploaded.id) is True
    with pytest.raises(ReplicateError) as gone:
        client.files.get(uploaded.id)
    assert gone.value.status == 404


def test_fetch_inputs_reads_uri_inputs_and_fails_on_unreachable_ones(
    emu: ReplicateEmulator, client: Client
) -> None:
    """With fetch_inputs, URI and data-URL inputs are fetched at start; an unreachable one fails the prediction."""
    emu.fetch_inputs = True
    image_url = emu.add_file("inputs/cat.png", MediaFile(data=b"cat bytes", content_type="image/png"))
    end = "data:image/png;base64," + base64.b64encode(b"end bytes").decode()
    ok = _create(client, input={**INPUT, "mode": "pro", "start_image": image_url, "end_image": end})
    ok.wait()
    assert ok.status == "succeeded"
    assert emu.prediction(ok.id).fetched_inputs == {"start_image": b"cat bytes", "end_image": b"end bytes"}

    missing = _create(client, input={**INPUT, "start_image": emu.delivery_url + "/inputs/missing.png"})
    missing.wait()
    assert missing.status == "failed" and (missing.error or "").startswith(
        "Failed to fetch input start_image"
    )


# ------------------------------------------------------------------------------------------ webhooks


def test_webhooks_for_every_event_verify_with_both_libraries(emu: ReplicateEmulator, client: Client) -> None:
    """start/logs/output/completed carry the prediction object, signed so standardwebhooks and the client verify."""
    prediction = _create(
        client,
        webhook=emu.sink_url + "?job=123",
        webhook_events_filter=["start", "output", "logs", "completed"],
    )
    deliveries = emu.wait_for_webhooks(4, prediction_id=prediction.id)
    received = emu.wait_for_sink(4)
    by_event = {d.event: d for d in deliveries}
    assert set(by_event) == {"start", "logs", "output", "completed"} and all(d.ok for d in deliveries)
    assert by_event["start"].json()["status"] == "processing"
    assert by_event["logs"].json()["logs"] == "Loading model\nGenerating video"
    assert by_event["output"].json()["status"] == "processing" and by_event["output"].json()["output"]
    completed = by_event["completed"].json()
    assert (
        completed
        == httpx.get(f"{emu.api_url}/predictions/{prediction.id}", headers=emu.auth_headers()).json()
    )
    assert completed["status"] == "succeeded"
    assert len({d.webhook_id for d in deliveries}) == 4

    secret = _secret(client)
    assert secret == DEFAULT_WEBHOOK_SECRET
    for hook in received:
        assert hook.query == {"job": "123"} and hook.headers["content-type"] == "application/json"
        assert re.fullmatch(r"msg_[A-Za-z0-9]{27}", hook.headers["webhook-id"])
        assert Webhook(secret).verify(hook.body, hook.headers)["id"] == prediction.id
        Webhooks.validate(
            headers=hook.headers,
            body=hook.body.decode(),
            secret=WebhookSigningSecret(key=secret),
            tolerance=300,
        )


def test_the_events_filter_limits_what_is_sent(emu: ReplicateEmulator, client: Client) -> None:
    """Only the events in webhook_events_filter are delivered; without a webhook nothing is sent."""
    wanted = _create(client, webhook=emu.sink_url, webhook_events_filter=["completed"])
    _create(client)
    emu.wait_for(wanted.id)
    (delivery,) = emu.wait_for_webhooks(1)
    assert (delivery.prediction_id, delivery.event) == (wanted.id, "completed")
    with pytest.raises(ReplicateError) as bad:
        _create(client, webhook=emu.sink_url, webhook_events_filter=["finished"])
    assert bad.value.status == 422


def test_the_reference_vector_signs_identically(emu: ReplicateEmulator) -> None:
    """The reference test vector: stdlib sign(), the emulator and standardwebhooks agree; the client validates it."""
    assert sign(VECTOR_SECRET, VECTOR_ID, VECTOR_TS, VECTOR_BODY) == VECTOR_SIGNATURE
    built = emu.build_webhook(
        body=VECTOR_BODY, webhook_id=VECTOR_ID, timestamp=VECTOR_TS, secret=VECTOR_SECRET
    )
    assert built.headers["webhook-signature"] == VECTOR_SIGNATURE and built.body == VECTOR_BODY
    stamp = datetime.fromtimestamp(VECTOR_TS, UTC)
    assert Webhook(VECTOR_SECRET).sign(VECTOR_ID, stamp, VECTOR_BODY.decode()) == VECTOR_SIGNATURE
    vector_headers = {
        "webhook-id": VECTOR_ID,
        "webhook-timestamp": str(VECTOR_TS),
        "webhook-signature": VECTOR_SIGNATURE,
    }
    Webhooks.validate(
        headers=vector_headers, body=VECTOR_BODY.decode(), secret=WebhookSigningSecret(key=VECTOR_SECRET)
    )
    with pytest.raises(WebhookVerificationError, match="too old"):
        Webhook(VECTOR_SECRET).verify(VECTOR_BODY, vector_headers)  # the package checks the real clock

    fresh = emu.build_webhook(body=VECTOR_BODY, webhook_id=VECTOR_ID)
    assert Webhook(VECTOR_SECRET).verify(fresh.body, fresh.headers) == {"test": 2432232314}


def test_failed_deliveries_are_retried_with_the_same_id_and_fresh_signatures(
    emu: ReplicateEmulator, client: Client
) -> None:
    """Non-2xx answers (redirects too) are retried; every attempt keeps the webhook-id and verifies."""
    emu.fail_sink(1, 500)
    emu.fail_sink(1, 302)
    prediction = _create(client, webhook=emu.sink_url, webhook_events_filter=["completed"])
    attempts = emu.wait_for_webhooks(3, prediction_id=prediction.id)
    assert [(a.attempt, a.status_code) for a in attempts] == [(0, 500), (1, 302), (2, 200)]
    assert len({a.webhook_id for a in attempts}) == 1 and attempts[0].body == attempts[2].body
    for hook in emu.wait_for_sink(3):
        Webhook(DEFAULT_WEBHOOK_SECRET).verify(hook.body, hook.headers)

    emu.sink_status = 503
    emu.push_plan(PredictionPlan(webhook=WebhookPlan(retries=1, retry_base_s=0.01)))
    doomed = _create(client, webhook=emu.sink_url, webhook_events_filter=["completed"])
    assert [a.ok for a in emu.wait_for_webhooks(2, prediction_id=doomed.id)] == [False, False]
    emu.sink_status = 200
    resent = emu.deliver_webhook(doomed.id)
    assert (
        resent.ok and Webhook(DEFAULT_WEBHOOK_SECRET).verify(resent.body, resent.headers)["id"] == doomed.id
    )


def test_forged_stale_and_tampered_deliveries_fail_verification(
    emu: ReplicateEmulator, client: Client
) -> None:
    """Deliveries signed with another secret, stamped 10 minutes ago, or altered do not verify."""
    emu.push_plan(PredictionPlan(webhook=WebhookPlan(forged=True)))
    forged = _create(client, webhook=emu.sink_url, webhook_events_filter=["completed"])
    emu.push_plan(PredictionPlan(webhook=WebhookPlan(timestamp_offset_s=-600)))
    stale = _create(client, webhook=emu.sink_url, webhook_events_filter=["completed"])
    (forged_hook,) = emu.wait_for_webhooks(1, prediction_id=forged.id)
    (stale_hook,) = emu.wait_for_webhooks(1, prediction_id=stale.id)
    secret = WebhookSigningSecret(key=DEFAULT_WEBHOOK_SECRET)
    with pytest.raises(WebhookVerificationError, match="No matching signature"):
        Webhook(DEFAULT_WEBHOOK_SECRET).verify(forged_hook.body, forged_hook.headers)
    with pytest.raises(InvalidSignatureError):
        Webhooks.validate(headers=forged_hook.headers, body=forged_hook.body.decode(), secret=secret)
    with pytest.raises(WebhookVerificationError, match="too old"):
        Webhook(DEFAULT_WEBHOOK_SECRET).verify(stale_hook.body, stale_hook.headers)
    with pytest.raises(InvalidTimestampError):
        Webhooks.validate(
            headers=stale_hook.headers, body=stale_hook.body.decode(), secret=secret, tolerance=300
        )
    good = emu.build_webhook(stale.id)
    with pytest.raises(WebhookVerificationError, match="No matching signature"):
        Webhook(DEFAULT_WEBHOOK_SECRET).verify(good.body.replace(b"succeeded", b"failed"), good.headers)


def test_logs_events_are_throttled(client: Client) -> None:
    """Log lines arriving faster than the throttle window are coalesced into fewer logs webhooks."""
    lines = tuple(f"step {i}" for i in range(6))
    plan = PredictionPlan(logs=lines, log_interval_s=0.05, run_s=0.5)
    with ReplicateEmulator(webhook_throttle_s=0.2, plan=plan) as emu, httpx.HTTPTransport() as transport:
        prediction = _create(
            _client(emu, transport), webhook=emu.sink_url, webhook_events_filter=["logs", "completed"]
        )
        emu.wait_for_webhooks(1, prediction_id=prediction.id, event="completed")
        logs = [d for d in emu.webhook_deliveries if d.event == "logs"]
        assert 2 <= len(logs) < len(lines)
        assert logs[0].json()["logs"] == "step 0"
        assert emu.prediction(prediction.id).logs == list(lines)


def test_env_names_the_settings_our_server_reads(emu: ReplicateEmulator, client: Client) -> None:
    """env() gives the token and the API base without /v1 (our server fetches the signing secret itself)."""
    env = emu.env()
    assert env == {"REPLICATE_API_TOKEN": emu.token, "REPLICATE_API_URL": emu.base_url}
    assert _secret(client) == DEFAULT_WEBHOOK_SECRET
    assert (
        httpx.get(env["REPLICATE_API_URL"] + "/v1/predictions", headers=emu.auth_headers()).status_code == 200
    )
