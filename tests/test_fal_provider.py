"""The fal path end to end: our server, real Postgres, and the fal emulator speaking fal's wire protocol."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import pytest

from shared import http as _http
from shared.db import Database
from shared.jobs import reconcile
from shared.providers.catalog import find_model
from shared.providers.fal.provider import FalProvider
from shared.settings import get_settings
from tests.conftest import EXAMPLES, Caller, configured, debit_job
from tests.emulators.fal import FalEmulator, Fault, JobPlan, MediaFile, ModelError, WebhookPlan

KLING = "kling-2.1-standard"


@pytest.fixture(scope="module")
def emulator(stack: str) -> Iterator[FalEmulator]:
    """The fal emulator, with our settings pointed at it for the whole module."""
    with FalEmulator() as emu, configured(**emu.env()):
        yield emu


@pytest.fixture
def fal(emulator: FalEmulator, mp4: bytes) -> Iterator[FalEmulator]:
    """A clean emulator (real MP4 results, fast webhooks) and a closed circuit breaker for each test."""
    emulator.reset()
    emulator.set_plan(JobPlan(video=MediaFile(data=mp4)))
    _http.breaker("fal").reset()
    yield emulator
    _http.breaker("fal").reset()


def plan(mp4: bytes, **kwargs: Any) -> JobPlan:
    """A job plan whose result is the real MP4."""
    return JobPlan(video=MediaFile(data=mp4), **kwargs)


def wait_status(caller: Caller, job_id: str, statuses: set[str], timeout: float = 20) -> dict[str, Any]:
    """Poll get-video-status until the job reaches one of ``statuses``."""
    deadline = time.monotonic() + timeout
    job: dict[str, Any] = {}
    while time.monotonic() < deadline:
        job = caller.status(job_id).json()
        if job["status"] in statuses:
            return job
        time.sleep(0.1)
    raise AssertionError(f"job {job_id} stayed {job.get('status')}")


def start(
    caller: Caller, model: str = KLING, key: str | None = None, image: bytes | None = None, **settings: Any
) -> dict[str, Any]:
    """Create a fal job from an uploaded image; returns the 202 body."""
    caller.grant(500)
    body = {
        "model_id": model,
        "prompt": "a lighthouse at dusk",
        "image_url": caller.upload(data=image),
        "settings": settings or {"duration": 5},
    }
    resp = caller.generate(key, **body)
    assert resp.status_code == 202, resp.text
    created: dict[str, Any] = resp.json()
    return created


def request_id(db: Database, job_id: str) -> str:
    """fal's request id as recorded for a job."""
    job = db.call("job_for_provider", job=uuid.UUID(job_id))
    assert job["request_id"], job
    return str(job["request_id"])


def ledger_kinds(caller: Caller) -> list[str]:
    """The caller's ledger entry kinds, oldest first."""
    entries = caller.http.get("/functions/v1/get-credits").json()["entries"]
    return [e["kind"] for e in reversed(entries)]


def test_happy_path_mirrors_the_video_and_charges_once(
    caller: Caller, fal: FalEmulator, db: Database, mp4: bytes
) -> None:
    """Submit with a webhook URL, fal's signed webhook completes the job, the MP4 is copied into our storage."""
    created = start(caller)
    job = wait_status(caller, created["job_id"], {"completed", "failed"})
    assert job["status"] == "completed", job
    assert httpx.get(job["video_url"]).content == mp4
    assert httpx.get(job["thumbnail_url"]).headers["content-type"] == "image/jpeg"
    submit = fal.requests_for("submit")[0]
    assert submit.path == "/queue/fal-ai/kling-video/v2.1/standard/image-to-video"
    assert submit.query["fal_webhook"].endswith(f"/functions/v1/fal-webhook?job_id={created['job_id']}")
    assert submit.headers["authorization"] == f"Key {fal.key}"
    assert submit.json()["duration"] == "5" and submit.json()["prompt"] == "a lighthouse at dusk"
    assert ledger_kinds(caller) == ["grant", "generation"]
    assert db.call_rows("ledger_mismatches") == []


@pytest.mark.parametrize(
    ("model", "settings", "expected"),
    [
        (
            "hailuo-02-standard",
            {"duration": 6, "resolution": "480p"},
            {"duration": "6", "resolution": "512P"},
        ),
        (
            "wan-2.2",
            {"duration": 5, "resolution": "480p", "aspect_ratio": "9:16"},
            {"num_frames": 81, "resolution": "480p", "aspect_ratio": "9:16"},
        ),
        (
            "veo-3.1-fast",
            {"duration": 4, "generate_audio": False},
            {"duration": "4s", "generate_audio": False},
        ),
    ],
)
def test_settings_are_written_in_each_models_vocabulary(
    caller: Caller, fal: FalEmulator, model: str, settings: dict[str, Any], expected: dict[str, Any]
) -> None:
    """Our settings reach fal in each model's own field names and types, from catalog data."""
    created = start(caller, model, **settings)
    wait_status(caller, created["job_id"], {"completed"})
    sent = fal.requests_for("submit")[0].json()
    assert {k: sent[k] for k in expected} == expected


def test_local_image_goes_to_fals_cdn_once(caller: Caller, fal: FalEmulator) -> None:
    """An image in local storage is uploaded to fal's CDN with fal-client, once per content hash."""
    unique = (EXAMPLES / "portrait.jpg").read_bytes() + uuid.uuid4().bytes  # same picture, new content hash
    first = start(caller, image=unique)
    second = start(caller, image=unique)
    for created in (first, second):
        wait_status(caller, created["job_id"], {"completed"})
    uploads = fal.requests_for("upload")
    assert len(uploads) == 1
    image_urls = {r.json()["image_url"] for r in fal.requests_for("submit")}
    assert len(image_urls) == 1 and "/cdn" in image_urls.pop()


def test_duplicate_webhooks_change_nothing(
    caller: Caller, fal: FalEmulator, db: Database, mp4: bytes
) -> None:
    """The same delivery many times completes the job once and charges once; every delivery gets 2xx."""
    fal.set_plan(plan(mp4, webhook=WebhookPlan(copies=3)))
    created = start(caller)
    wait_status(caller, created["job_id"], {"completed", "failed"})
    rid = request_id(db, created["job_id"])
    for _ in range(5):
        assert fal.deliver_webhook(rid).status_code == 200
    assert caller.status(created["job_id"]).json()["status"] == "completed"
    assert ledger_kinds(caller) == ["grant", "generation"]


def test_error_after_success_is_ignored(caller: Caller, fal: FalEmulator, db: Database) -> None:
    """An ERROR delivered after the job completed neither fails nor refunds it."""
    created = start(caller)
    wait_status(caller, created["job_id"], {"completed"})
    rid = request_id(db, created["job_id"])
    body = {"request_id": rid, "gateway_request_id": rid, "status": "ERROR", "error": "late", "payload": None}
    assert fal.deliver_webhook(rid, body=body).status_code == 200
    assert caller.status(created["job_id"]).json()["status"] == "completed"
    assert "refund" not in ledger_kinds(caller)


def test_model_error_fails_and_refunds_once(caller: Caller, fal: FalEmulator, db: Database) -> None:
    """A model error (422 detail) fails the job with fal's message and refunds once, however often it arrives."""
    fal.set_plan(JobPlan(model_error=ModelError()))
    created = start(caller)
    job = wait_status(caller, created["job_id"], {"completed", "failed"})
    assert job["status"] == "failed" and "duration" in job["error_message"]
    rid = request_id(db, created["job_id"])
    fal.deliver_webhook(rid)
    fal.deliver_webhook(rid)
    assert ledger_kinds(caller) == ["grant", "generation", "refund"]
    assert caller.balance() == 500


@pytest.mark.parametrize("mutate", ["tamper", "stale", "unsigned", "unknown_key", "wrong_header_id"])
def test_forged_webhooks_are_refused_and_change_nothing(
    caller: Caller, fal: FalEmulator, db: Database, stack: str, mutate: str
) -> None:
    """Tampered, stale, unsigned and foreign-key deliveries are refused and leave the job as it was."""
    fal.set_plan(JobPlan(latency_s=None))
    created = start(caller)
    rid = request_id(db, created["job_id"])
    url = f"{stack}/functions/v1/fal-webhook?job_id={created['job_id']}"
    body = {
        "request_id": rid,
        "gateway_request_id": rid,
        "status": "ERROR",
        "error": "forged",
        "payload": None,
    }
    signed = fal.build_webhook(
        body=body, unknown_key=mutate == "unknown_key", timestamp_offset_s=-3600 if mutate == "stale" else 0
    )
    headers, raw = dict(signed.headers), signed.body
    if mutate == "tamper":
        raw = raw.replace(b"forged", b"forgeD")
    elif mutate == "unsigned":
        headers = {k: v for k, v in headers.items() if "signature" not in k.lower()}
    elif mutate == "wrong_header_id":
        body["request_id"] = str(uuid.uuid4())
        raw = fal.build_webhook(body=body).body
    resp = httpx.post(url, content=raw, headers=headers)
    assert resp.status_code == 400, resp.text
    assert resp.json()["error"]["code"] == "invalid_signature"
    assert caller.status(created["job_id"]).json()["status"] == "pending"
    assert "refund" not in ledger_kinds(caller)
    fal.finish(rid)
    assert wait_status(caller, created["job_id"], {"completed", "failed"})["status"] == "completed"


def test_rate_limited_submit_is_retried(caller: Caller, fal: FalEmulator) -> None:
    """A 429 (with Retry-After) on submit is retried and the job then runs normally."""
    fal.add_fault(Fault(op="submit", status_code=429, times=2, retry_after=1))
    created = start(caller)
    assert wait_status(caller, created["job_id"], {"completed", "failed"})["status"] == "completed"
    assert len(fal.requests_for("submit")) == 3


def test_persistent_500_fails_and_refunds_once(caller: Caller, fal: FalEmulator) -> None:
    """A submit that keeps failing with 500 fails the job and refunds it exactly once."""
    fal.add_fault(Fault(op="submit", status_code=500, times=None))
    created = start(caller)
    job = caller.status(created["job_id"]).json()
    assert job["status"] == "failed" and "refused" in job["error_message"]
    assert ledger_kinds(caller) == ["grant", "generation", "refund"]
    assert len(fal.requests_for("submit")) == get_settings().provider_retry_attempts


def test_circuit_breaker_fails_fast(caller: Caller, fal: FalEmulator) -> None:
    """After repeated failures the job is refunded; while the breaker is open (and no other provider serves the
    model) further requests are refused before any charge (503, paused) without calling fal."""
    fal.add_fault(Fault(op="submit", status_code=503, times=None))
    created = start(caller)
    assert caller.status(created["job_id"]).json()["status"] == "failed"
    calls = len(fal.requests_for("submit"))
    before = caller.balance()
    body = {"model_id": KLING, "image_url": caller.upload(), "settings": {"duration": 5}}
    refused = caller.generate(**body)
    assert refused.status_code == 503 and refused.json()["error"]["code"] == "provider_unavailable"
    assert "paused" in refused.json()["error"]["message"]
    assert len(fal.requests_for("submit")) == calls and caller.balance() == before
    assert ledger_kinds(caller).count("refund") == 1


def test_key_in_progress_during_slow_submit_is_409(caller: Caller, fal: FalEmulator) -> None:
    """While the first request is still submitting to fal, the same Idempotency-Key answers 409."""
    fal.add_fault(Fault(op="submit", delay_s=1.5))
    caller.grant(500)
    body = {"model_id": KLING, "image_url": caller.upload(), "settings": {"duration": 5}}
    first: list[httpx.Response] = []
    thread = threading.Thread(target=lambda: first.append(caller.generate("slow-key", **body)))
    thread.start()
    deadline = time.monotonic() + 5
    while not fal.requests_for("submit") and time.monotonic() < deadline:
        time.sleep(0.02)
    second = caller.generate("slow-key", **body)
    thread.join()
    assert second.status_code == 409 and first[0].status_code == 202
    third = caller.generate("slow-key", **body)
    assert third.status_code == 202 and third.json() == first[0].json()


def test_lost_webhook_is_reconciled(caller: Caller, fal: FalEmulator, mp4: bytes) -> None:
    """When fal's webhook never comes, the reconciler polls fal and completes the job."""
    fal.set_plan(plan(mp4, webhook=WebhookPlan(send=False)))
    created = start(caller)
    time.sleep(0.3)
    assert caller.status(created["job_id"]).json()["status"] in ("pending", "processing")
    with configured(WEBHOOK_QUIET_S="0"):
        counts = reconcile.reconcile_once()
    assert counts.get("poll") == 1
    assert caller.status(created["job_id"]).json()["status"] == "completed"


def test_crash_between_debit_and_submit(caller: Caller, fal: FalEmulator, db: Database) -> None:
    """A job debited but never submitted is submitted exactly once by the reconciler, then completes."""
    caller.grant(100)
    url = caller.upload()
    caller.generate(model_id="local-motion", image_url=url, settings={"duration": 1})  # verifies the upload
    job_id = str(
        debit_job(
            db,
            caller.id,
            37,
            model=KLING,
            provider="fal",
            prompt="crash",
            image_url=url,
            settings={"duration": 5, "resolution": "auto", "aspect_ratio": "auto"},
            hold_s=60,
        )
    )
    with configured(WEBHOOK_QUIET_S="0"):
        first = reconcile.reconcile_once()
        second = reconcile.reconcile_once()
    assert first.get("submit") == 1 and "submit" not in second
    assert wait_status(caller, job_id, {"completed", "failed"})["status"] == "completed"
    assert len(fal.requests_for("submit")) == 1


def test_unknown_request_is_acknowledged(fal: FalEmulator, stack: str) -> None:
    """A verified delivery for a request we never made answers 2xx so fal stops retrying."""
    rid = str(uuid.uuid4())
    signed = fal.build_webhook(
        body={
            "request_id": rid,
            "gateway_request_id": rid,
            "status": "OK",
            "payload": {"video": {"url": "https://example.com/v.mp4"}},
        }
    )
    resp = httpx.post(f"{stack}/functions/v1/fal-webhook", content=signed.body, headers=signed.headers)
    assert resp.status_code == 200 and resp.json()["result"] == "unknown_request"


def test_result_reattached_by_job_id_after_crash(
    caller: Caller, fal: FalEmulator, db: Database, mp4: bytes
) -> None:
    """If we crashed before recording fal's request id, the job id in the webhook URL re-attaches the result."""
    fal.set_plan(plan(mp4, latency_s=None))
    created = start(caller)
    job_id = uuid.UUID(created["job_id"])
    rid = request_id(db, created["job_id"])
    with psycopg_conn(db) as conn:  # forget the request id, as if mark_submitted never ran
        conn.execute(b"update video_jobs set provider_request_id = null where id = %s", (job_id,))
    fal.finish(rid)
    job = wait_status(caller, created["job_id"], {"completed", "failed"})
    assert job["status"] == "completed"
    assert request_id(db, created["job_id"]) == rid


@contextmanager
def psycopg_conn(db: Database) -> Iterator[Any]:
    """A direct connection for test set-up that simulates a crash."""
    import psycopg

    with psycopg.connect(db.url, autocommit=True) as conn:
        yield conn


def test_truncated_video_is_never_half_stored_and_retried(
    caller: Caller, fal: FalEmulator, db: Database, mp4: bytes
) -> None:
    """A truncated download stores nothing and keeps the job open; a later attempt mirrors it completely."""
    path = f"retry/{uuid.uuid4().hex}/out.mp4"
    url = fal.add_file(path, MediaFile(data=mp4, fault="truncate"))
    fal.set_plan(JobPlan(result={"video": {"url": url, "content_type": "video/mp4"}}))
    created = start(caller)
    time.sleep(1.0)
    job = caller.status(created["job_id"]).json()
    assert job["status"] == "processing" and job["video_url"] is None
    fal.add_file(path, MediaFile(data=mp4))
    counts = reconcile.reconcile_once()
    assert counts.get("mirror") == 1
    job = caller.status(created["job_id"]).json()
    assert job["status"] == "completed" and httpx.get(job["video_url"]).content == mp4


def test_missing_video_fails_after_bounded_attempts(caller: Caller, fal: FalEmulator, db: Database) -> None:
    """A result whose video URL keeps answering 404 fails and refunds once after the last mirroring attempt."""
    url = fal.add_file(f"gone/{uuid.uuid4().hex}.mp4", MediaFile(fault="not_found"))
    fal.set_plan(JobPlan(result={"video": {"url": url}}))
    created = start(caller)
    time.sleep(0.5)
    for _ in range(12):
        reconcile.reconcile_once()
    job = caller.status(created["job_id"]).json()
    assert job["status"] == "failed" and "copied" in job["error_message"]
    assert ledger_kinds(caller).count("refund") == 1


def test_cancel_before_completion_refunds(caller: Caller, fal: FalEmulator) -> None:
    """Canceling a queued fal job asks fal to cancel and refunds the credits."""
    fal.set_plan(JobPlan(latency_s=None))
    created = start(caller)
    assert caller.status(created["job_id"]).json()["status"] == "pending"
    resp = caller.http.post("/functions/v1/cancel-video", json={"job_id": created["job_id"]})
    assert resp.status_code == 200 and resp.json()["status"] == "canceled", resp.text
    assert len(fal.requests_for("cancel")) == 1
    assert ledger_kinds(caller) == ["grant", "generation", "refund"]


def test_cancel_after_completion_at_fal_completes_normally(
    caller: Caller, fal: FalEmulator, db: Database, mp4: bytes
) -> None:
    """When fal answers ALREADY_COMPLETED, the job is completed normally and keeps its charge."""
    fal.set_plan(plan(mp4, webhook=WebhookPlan(send=False)))
    created = start(caller)
    fal.wait_for(request_id(db, created["job_id"]))
    resp = caller.http.post("/functions/v1/cancel-video", json={"job_id": created["job_id"]})
    assert resp.status_code == 200 and resp.json()["status"] == "completed"
    assert "refund" not in ledger_kinds(caller)


def test_late_success_after_deadline_refund_is_delivered_free(
    caller: Caller, fal: FalEmulator, db: Database, mp4: bytes
) -> None:
    """A job refunded at our deadline that fal then finishes gets its video; the refund stands, no new charge."""
    fal.set_plan(plan(mp4, latency_s=None))
    created = start(caller)
    with configured(WEBHOOK_QUIET_S="0", JOB_DEADLINE_S="0"):
        reconcile.reconcile_once()
    job = caller.status(created["job_id"]).json()
    assert job["status"] == "failed"
    assert ledger_kinds(caller) == ["grant", "generation", "refund"]
    fal.finish(request_id(db, created["job_id"]))
    job = wait_status(caller, created["job_id"], {"completed"})
    assert httpx.get(job["video_url"]).status_code == 200
    assert ledger_kinds(caller) == ["grant", "generation", "refund"]
    assert db.call("job_for_provider", job=uuid.UUID(created["job_id"]))["status"] == "completed"


def test_status_shows_queue_position_from_fal(caller: Caller, fal: FalEmulator, db: Database) -> None:
    """A stale queued job's status asks fal (once, rate-limited) and shows fal's 0-based queue position."""
    fal.set_concurrency(1)
    fal.set_plan(JobPlan(latency_s=None))
    try:
        start(caller)
        second = start(caller)
        rid = request_id(db, second["job_id"])
        with configured(STATUS_STALE_S="0"):
            job = caller.status(second["job_id"]).json()
            again = caller.status(second["job_id"]).json()
        polls = [r for r in fal.requests_for("status") if rid in r.path]
        assert (
            job["status"] == "pending"
            and isinstance(job["queue_position"], int)
            and job["queue_position"] >= 0
        )
        assert again["queue_position"] == job["queue_position"]
        assert len(polls) == 1
    finally:
        fal.set_concurrency(100)


def test_fal_models_listed_unavailable_without_key(caller: Caller, stack: str) -> None:
    """Without FAL_KEY, fal models are listed unavailable with the reason, and refused before any charge."""
    with configured(FAL_KEY=""):
        models = {m["slug"]: m for m in httpx.get(f"{stack}/functions/v1/list-models").json()["models"]}
        caller.grant(100)
        resp = caller.generate(model_id=KLING, image_url=caller.upload(), settings={"duration": 5})
    assert models[KLING]["available"] is False and "FAL_KEY" in models[KLING]["unavailable_reason"]
    assert resp.status_code == 400 and resp.json()["error"]["code"] == "model_unavailable"
    assert caller.balance() == 100


def test_sora_is_listed_unavailable(fal: FalEmulator, stack: str) -> None:
    """Sora 2 is in the catalog but unavailable (shut down), with the reason."""
    models = {m["slug"]: m for m in httpx.get(f"{stack}/functions/v1/list-models").json()["models"]}
    assert models["sora-2"]["available"] is False and "2026-09-24" in models["sora-2"]["unavailable_reason"]


def test_every_fal_model_is_in_the_catalog() -> None:
    """The catalog lists each fal image-to-video model the reference names, with fal as its first route."""
    expected = {
        "kling-2.1-standard",
        "kling-2.5-turbo-pro",
        "wan-2.5",
        "wan-2.2",
        "wan-2.1",
        "veo-3.1",
        "veo-3.1-fast",
        "hailuo-02-standard",
        "hailuo-02-pro",
        "seedance-pro",
        "ltx-video",
        "sora-2",
    }
    for slug in expected:
        assert find_model(slug).routes[0].provider == "fal"


def test_public_image_urls_pass_through(fal: FalEmulator) -> None:
    """A public https image URL is handed to fal unchanged (no upload)."""
    url = "https://images.example.org/cat.jpg"
    assert FalProvider().image_for_fal(url, uuid.uuid4()) == url
    assert fal.requests_for("upload") == []


def test_output_url_follows_each_models_output_path() -> None:
    """The video URL is read from the output by the route's path (objects, lists, or the output itself)."""
    spec = find_model(KLING).route("fal")
    assert spec.output_url({"video": {"url": "https://v3.fal.media/a.mp4"}}) == "https://v3.fal.media/a.mp4"
    assert spec.output_url({"detail": "bad"}) is None
    bare = find_model(KLING).route("replicate")
    assert bare.output_url("https://replicate.delivery/x/out.mp4") == "https://replicate.delivery/x/out.mp4"
    assert bare.output_url(None) is None and bare.output_url({"url": "https://x/c.mp4"}) is None
    listed = spec.model_copy(update={"output_video": "videos.0.url"})
    assert listed.output_url({"videos": [{"url": "https://x/b.mp4"}]}) == "https://x/b.mp4"
    assert listed.output_url({"videos": []}) is None
