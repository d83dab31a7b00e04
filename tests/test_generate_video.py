"""generate-video: the contract's every outcome, through the real HTTP API and Postgres."""

from __future__ import annotations

import uuid

import httpx
import pytest

from shared.db import Database
from tests.conftest import Caller, wait_for

LOCAL = {"model_id": "local-motion", "prompt": "zoom in", "settings": {"duration": 2, "resolution": "480p"}}


def _body(image_url: str, **overrides: object) -> dict[str, object]:
    return {**LOCAL, "image_url": image_url, **overrides}


def _jobs_of(db: Database, user: uuid.UUID) -> int:
    rows = db.call_rows("ledger_mismatches")
    assert rows == []
    data = db.call("get_credits", user=user, signup_credits=0, limit=200)
    return sum(1 for e in data["entries"] if e["kind"] == "generation")


def test_success_debits_and_returns_pending(caller: Caller) -> None:
    """A valid request answers 202 with the job id, status pending and the credits charged."""
    caller.grant(10)
    resp = caller.generate(**_body(caller.upload()))
    assert resp.status_code == 202, resp.text
    body = resp.json()
    assert set(body) == {"job_id", "status", "credits_used"}
    assert body["status"] == "pending" and body["credits_used"] == 2
    uuid.UUID(body["job_id"])
    assert caller.balance() == 8


def test_same_key_same_body_replays_without_charging(caller: Caller, db: Database) -> None:
    """A repeated Idempotency-Key with the same body returns the first response and charges once."""
    caller.grant(10)
    body = _body(caller.upload())
    first = caller.generate("key-1", **body)
    second = caller.generate("key-1", **body)
    assert first.status_code == second.status_code == 202
    assert second.json() == first.json()
    assert second.headers.get("idempotent-replayed") == "true"
    assert caller.balance() == 8
    assert _jobs_of(db, caller.id) == 1


def test_replay_of_a_completed_job_points_to_its_live_status(caller: Caller) -> None:
    """Replaying a completed job's key returns the stored 202 body and a Location header naming get-video-status,
    which shows the job completed."""
    caller.grant(10)
    body = _body(caller.upload(), settings={"duration": 1, "resolution": "480p"})
    first = caller.generate("key-done", **body)
    job_id = first.json()["job_id"]
    assert first.headers["location"] == f"/functions/v1/get-video-status?job_id={job_id}"
    wait_for(lambda: caller.status(job_id).json()["status"] == "completed", "the job to complete")
    replay = caller.generate("key-done", **body)
    assert replay.status_code == 202
    assert replay.json() == first.json() and replay.json()["status"] == "pending"
    assert replay.headers.get("idempotent-replayed") == "true"
    live = caller.http.get(replay.headers["location"])
    assert live.json()["job_id"] == job_id and live.json()["status"] == "completed"


def test_sf_string_key_is_the_same_key(caller: Caller) -> None:
    """An Idempotency-Key sent as an RFC 8941 sf-string names the same key as the bare token."""
    caller.grant(10)
    body = _body(caller.upload())
    first = caller.generate("abc-123", **body)
    second = caller.generate('"abc-123"', **body)
    assert second.json()["job_id"] == first.json()["job_id"]


def test_same_key_different_body_is_422(caller: Caller) -> None:
    """Reusing a key with a different body is refused with 422 and charges nothing more."""
    caller.grant(10)
    url = caller.upload()
    assert caller.generate("k", **_body(url)).status_code == 202
    resp = caller.generate("k", **_body(url, prompt="pan left"))
    assert resp.status_code == 422
    assert resp.json()["error"]["code"] == "idempotency_key_reused"
    assert caller.balance() == 8


def test_missing_key_is_400(caller: Caller) -> None:
    """A request without an Idempotency-Key is refused with 400 naming the header."""
    caller.grant(10)
    resp = caller.http.post("/functions/v1/generate-video", json=_body(caller.upload()))
    assert resp.status_code == 400
    assert resp.json()["error"]["details"]["field"] == "Idempotency-Key"
    assert caller.balance() == 10


def test_key_in_flight_is_409(caller: Caller, db: Database, postgres: object) -> None:
    """While another transaction holds the same key, the request answers 409 and charges nothing."""
    import psycopg

    caller.grant(10)
    body = _body(caller.upload())
    lock = f"{caller.id} POST /functions/v1/generate-video held-key"
    with psycopg.connect(db.url, autocommit=True) as other:
        other.execute("select pg_advisory_lock(hashtextextended(%s, 0))", (lock,))
        resp = caller.generate("held-key", **body)
        other.execute("select pg_advisory_unlock(hashtextextended(%s, 0))", (lock,))
    assert resp.status_code == 409
    assert resp.json()["error"]["code"] == "idempotency_in_flight"
    assert caller.balance() == 10
    assert caller.generate("held-key", **body).status_code == 202


def test_insufficient_credits_is_402(caller: Caller, db: Database) -> None:
    """A request the balance cannot pay answers 402 with balance and cost, and creates no job."""
    caller.grant(1)
    resp = caller.generate(**_body(caller.upload()))
    assert resp.status_code == 402
    err = resp.json()["error"]
    assert err["code"] == "insufficient_credits"
    assert err["details"] == {"balance": 1, "cost": 2}
    assert _jobs_of(db, caller.id) == 0
    assert caller.balance() == 1


def test_insufficient_is_not_stored_under_the_key(caller: Caller) -> None:
    """After a 402, the same key succeeds once the user has credits (failed requests are not replayed)."""
    url = caller.upload()
    assert caller.generate("retry-me", **_body(url)).status_code == 402
    caller.grant(5)
    assert caller.generate("retry-me", **_body(url)).status_code == 202


@pytest.mark.parametrize("model", ["no-such-model", str(uuid.uuid4())])
def test_unknown_model_is_404(caller: Caller, model: str) -> None:
    """An unknown model slug or id answers 404 listing the valid slugs."""
    caller.grant(10)
    resp = caller.generate(**_body(caller.upload(), model_id=model))
    assert resp.status_code == 404
    err = resp.json()["error"]
    assert err["code"] == "unknown_model" and "local-motion" in err["details"]["allowed"]


def test_model_by_uuid_works(caller: Caller) -> None:
    """A model may be named by its uuid from list-models."""
    caller.grant(10)
    models = caller.http.get("/functions/v1/list-models").json()["models"]
    model_id = next(m["id"] for m in models if m["slug"] == "local-motion")
    assert caller.generate(**_body(caller.upload(), model_id=model_id)).status_code == 202


def test_unavailable_model_is_400(caller: Caller) -> None:
    """A model whose provider cannot take jobs answers 400 model_unavailable and charges nothing."""
    from shared.providers.local.engine_provider import get_local_engine

    caller.grant(10)
    url = caller.upload()
    engine = get_local_engine()
    engine.stop()
    try:
        resp = caller.generate(**_body(url))
        listed = caller.http.get("/functions/v1/list-models").json()["models"]
    finally:
        engine.start(2)
    assert resp.status_code == 400
    assert resp.json()["error"]["code"] == "model_unavailable"
    local = next(m for m in listed if m["slug"] == "local-motion")
    assert local["available"] is False and "local server" in local["unavailable_reason"]
    assert caller.balance() == 10


def test_image_required_is_400(caller: Caller) -> None:
    """A model that needs an image refuses a request with neither an image nor a prompt to make one from,
    naming the field, and charges nothing."""
    caller.grant(10)
    resp = caller.generate(**{**LOCAL, "prompt": "  "})
    assert resp.status_code == 400
    assert resp.json()["error"]["details"]["field"] == "image_url"
    assert caller.balance() == 10


@pytest.mark.parametrize(
    ("settings", "field", "allowed"),
    [
        ({"duration": 11}, "settings.duration", list(range(1, 11))),
        ({"resolution": "4k"}, "settings.resolution", ["auto", "480p", "720p", "1080p"]),
        ({"aspect_ratio": "4:3"}, "settings.aspect_ratio", ["auto", "16:9", "9:16", "1:1"]),
        ({"motion_bucket": 3}, "settings.motion_bucket", None),
    ],
)
def test_unsupported_settings_are_400_with_allowed_values(
    caller: Caller, settings: dict[str, object], field: str, allowed: list[object] | None
) -> None:
    """A setting the model does not support answers 400 naming the field and the allowed values."""
    caller.grant(10)
    resp = caller.generate(**_body(caller.upload(), settings=settings))
    assert resp.status_code == 400
    details = resp.json()["error"]["details"]
    assert details["field"] == field
    if allowed is not None:
        assert details["allowed"] == allowed
    assert caller.balance() == 10


def test_user_id_must_match_token(caller: Caller, other: Caller) -> None:
    """A body user_id other than the token's user is refused with 403; the matching one is accepted."""
    caller.grant(10)
    url = caller.upload()
    assert caller.generate(**_body(url, user_id=str(other.id))).status_code == 403
    assert caller.generate(**_body(url, user_id=str(caller.id))).status_code == 202


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"model_id": 5}, "model_id"),
        ({"model_id": "local-motion", "settings": {"duration": "four"}}, "settings.duration"),
        ({"model_id": "local-motion", "settings": {"duration": "4"}}, "settings.duration"),
        ({"model_id": "local-motion", "surprise": True}, "surprise"),
        ({"prompt": "no model"}, "model_id"),
        ([1, 2], "body"),
    ],
)
def test_wrong_types_are_400_with_the_field(caller: Caller, body: object, field: str) -> None:
    """Wrong types, unknown fields and missing fields answer 400 naming the field."""
    resp = caller.http.post("/functions/v1/generate-video", json=body, headers={"Idempotency-Key": "t"})
    assert resp.status_code == 400
    assert resp.json()["error"]["details"]["field"] == field


def test_invalid_json_is_400(caller: Caller) -> None:
    """A body that is not JSON answers 400 naming the body."""
    resp = caller.http.post(
        "/functions/v1/generate-video",
        content=b'{"model_id": ',
        headers={"Idempotency-Key": "t", "Content-Type": "application/json"},
    )
    assert resp.status_code == 400
    assert resp.json()["error"]["details"]["field"] == "body"


@pytest.mark.parametrize(
    "url",
    [
        "http://example.com/cat.jpg",
        "https://127.0.0.1/cat.jpg",
        "https://10.1.2.3/cat.jpg",
        "https://169.254.169.254/latest/meta-data",
        "https://[::1]/cat.jpg",
        "https://localhost/cat.jpg",
        "ftp://example.com/cat.jpg",
    ],
)
def test_unsafe_image_urls_are_400(caller: Caller, url: str) -> None:
    """Non-https URLs and hosts on private, loopback or link-local networks are refused before any charge."""
    caller.grant(10)
    resp = caller.generate(**_body(url))
    assert resp.status_code == 400
    assert resp.json()["error"]["details"]["field"] == "image_url"
    assert caller.balance() == 10


def test_someone_elses_upload_is_refused(caller: Caller, other: Caller) -> None:
    """A user cannot make a video from another user's upload URL."""
    caller.grant(10)
    url = other.upload()
    resp = caller.generate(**_body(url))
    assert resp.status_code == 400
    assert resp.json()["error"]["details"]["field"] == "image_url"


def test_error_shape_is_uniform(anon: httpx.Client) -> None:
    """Every error, even an unknown route, has the one JSON shape with a request id."""
    for resp in (
        anon.get("/functions/v1/nope"),
        anon.get("/functions/v1/get-credits"),
        anon.delete("/functions/v1/list-models"),
    ):
        err = resp.json()["error"]
        assert set(err) == {"code", "message", "details", "request_id"}
        assert resp.headers["x-request-id"] == err["request_id"]
    assert anon.delete("/functions/v1/list-models").status_code == 405
