"""The Replicate path end to end: our server, real Postgres, and the Replicate emulator speaking Replicate's API."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from shared import http as _http
from shared.db import Database
from shared.jobs import reconcile
from shared.providers.base import JobRequest
from shared.providers.catalog import all_models, find_model
from shared.providers.registry import get_provider
from shared.records import load_job
from tests.conftest import Caller, configured, debit_job
from tests.emulators.fal import FalEmulator, JobPlan
from tests.emulators.replicate import (
    FORGED_WEBHOOK_SECRET,
    MediaFile,
    PredictionPlan,
    ReplicateEmulator,
    WebhookPlan,
)

KLING = "kling-2.1-standard"
MANUAL = PredictionPlan(start_s=None, run_s=None)
SETTINGS = {"duration": 5, "resolution": "auto", "aspect_ratio": "auto"}


@pytest.fixture(scope="module")
def emulator(stack: str) -> Iterator[ReplicateEmulator]:
    """The Replicate emulator with our settings pointed at it (and fal not configured) for the whole module."""
    with ReplicateEmulator() as emu, configured(**emu.env(), FAL_KEY=""):
        yield emu


@pytest.fixture
def rep(emulator: ReplicateEmulator, mp4: bytes) -> Iterator[ReplicateEmulator]:
    """A clean emulator whose predictions finish at once with a real MP4, and a closed breaker."""
    emulator.reset()
    emulator.set_plan(PredictionPlan(output=MediaFile(data=mp4)))
    _http.breaker("replicate").reset()
    yield emulator
    _http.breaker("replicate").reset()


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


def start(caller: Caller, model: str = KLING, **settings: Any) -> dict[str, Any]:
    """Create a job from an uploaded image; returns the 202 body."""
    caller.grant(1000)
    body = {"model_id": model, "prompt": "a lighthouse at dusk", "image_url": caller.upload()}
    body["settings"] = settings or {"duration": 5}
    resp = caller.generate(**body)
    assert resp.status_code == 202, resp.text
    created: dict[str, Any] = resp.json()
    return created


def prediction_of(db: Database, job_id: str) -> str:
    """The prediction id recorded for a job."""
    job = load_job(uuid.UUID(job_id))
    assert job is not None and job.request_id, job
    return job.request_id


def test_a_job_runs_as_a_replicate_prediction(
    caller: Caller, rep: ReplicateEmulator, db: Database, mp4: bytes
) -> None:
    """Kling without fal is routed to Replicate: official-model create with the model's own fields, webhook with
    our job id, start+completed events, Cancel-After; the signed completion completes the job with its video."""
    created = start(caller)
    done = wait_status(caller, created["job_id"], {"completed", "failed"})
    assert done["status"] == "completed", done
    assert done["provider"] == "replicate" and httpx.get(done["video_url"]).content == mp4
    (create,) = rep.requests_for("create")
    assert create.path == "/v1/models/kwaivgi/kling-v2.1/predictions"
    sent = create.json()
    assert sent["input"]["duration"] == 5 and sent["input"]["mode"] == "standard"
    assert sent["input"]["start_image"].startswith(rep.api_url + "/files/")  # our upload, via the Files API
    assert sent["webhook"].endswith(f"/functions/v1/replicate-webhook?job_id={created['job_id']}")
    assert sent["webhook_events_filter"] == ["start", "completed"]
    assert create.headers["cancel-after"] == "120m" and "prefer" not in create.headers
    job = load_job(uuid.UUID(created["job_id"]))
    assert job is not None and job.endpoint == "kwaivgi/kling-v2.1"


def test_forged_stale_and_unsigned_webhooks_are_refused(
    caller: Caller, rep: ReplicateEmulator, db: Database, stack: str
) -> None:
    """A delivery signed with another secret, one outside the 5-minute window and one without headers: 400
    invalid_signature, and the job does not move."""
    rep.set_plan(PredictionPlan(start_s=None, run_s=None, webhook=WebhookPlan(send=False)))
    created = start(caller)
    pid = wait_for_prediction(rep)
    rep.finish(pid)
    url = f"{stack}/functions/v1/replicate-webhook?job_id={created['job_id']}"
    for signed in (
        rep.build_webhook(pid, secret=FORGED_WEBHOOK_SECRET),
        rep.build_webhook(pid, timestamp_offset_s=-600),
        rep.build_webhook(pid, timestamp_offset_s=600),
    ):
        resp = httpx.post(url, content=signed.body, headers=signed.headers)
        assert resp.status_code == 400 and resp.json()["error"]["code"] == "invalid_signature", resp.text
    signed = rep.build_webhook(pid)
    tampered = signed.body.replace(b'"succeeded"', b'"failed"')
    resp = httpx.post(url, content=tampered, headers=signed.headers)
    assert resp.status_code == 400 and resp.json()["error"]["code"] == "invalid_signature"
    assert httpx.post(url, content=signed.body).status_code == 400
    assert caller.status(created["job_id"]).json()["status"] in ("pending", "processing")


def wait_for_prediction(rep: ReplicateEmulator, count: int = 1) -> str:
    """The id of the latest prediction once ``count`` exist."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        found = rep.predictions()
        if len(found) >= count:
            return found[-1].id
        time.sleep(0.05)
    raise AssertionError("no prediction was created")


def test_replayed_and_reordered_webhooks_change_nothing(
    caller: Caller, rep: ReplicateEmulator, db: Database, stack: str
) -> None:
    """A completion delivered twice completes once; a late start after the completion is ignored; the debit
    stands once."""
    rep.set_plan(PredictionPlan(start_s=None, run_s=None, webhook=WebhookPlan(send=False)))
    created = start(caller)
    before = caller.balance()
    pid = wait_for_prediction(rep)
    rep.start_prediction(pid)
    start_msg = rep.build_webhook(pid)  # the "start" message, kept for a late delivery
    rep.finish(pid)
    url = f"{stack}/functions/v1/replicate-webhook?job_id={created['job_id']}"
    done = rep.build_webhook(pid)
    first = httpx.post(url, content=done.body, headers=done.headers)
    assert first.status_code == 200 and first.json()["result"] == "recorded"
    wait_status(caller, created["job_id"], {"completed"})
    again = httpx.post(url, content=done.body, headers=done.headers)
    assert again.status_code == 200 and again.json()["result"] in ("already_completed", "ignored")
    late = httpx.post(url, content=start_msg.body, headers=start_msg.headers)
    assert late.status_code == 200 and late.json()["result"] == "ignored"
    assert caller.status(created["job_id"]).json()["status"] == "completed"
    assert caller.balance() == before


def test_a_failed_prediction_refunds_once(caller: Caller, rep: ReplicateEmulator, stack: str) -> None:
    """Replicate's failure fails the job with its message and refunds once, however often it is delivered."""
    rep.set_plan(PredictionPlan(error="CUDA out of memory"))
    caller.grant(1000)
    before = caller.balance()
    created = start(caller)
    failed = wait_status(caller, created["job_id"], {"failed", "completed"})
    assert failed["status"] == "failed" and "CUDA out of memory" in failed["error_message"]
    pid = rep.predictions()[-1].id
    url = f"{stack}/functions/v1/replicate-webhook?job_id={created['job_id']}"
    signed = rep.build_webhook(pid)
    assert httpx.post(url, content=signed.body, headers=signed.headers).json()["result"] == "already_failed"
    assert caller.balance() == before + 1000


def test_cancel_stops_the_prediction_and_refunds(caller: Caller, rep: ReplicateEmulator) -> None:
    """cancel-video cancels the prediction at Replicate; the job ends canceled with one refund."""
    rep.set_plan(MANUAL)
    caller.grant(1000)
    before = caller.balance()
    created = start(caller)
    pid = wait_for_prediction(rep)
    resp = caller.http.post("/functions/v1/cancel-video", json={"job_id": created["job_id"]})
    assert resp.status_code == 200, resp.text
    assert rep.wait_for(pid, "canceled").status == "canceled"
    assert wait_status(caller, created["job_id"], {"canceled"})["status"] == "canceled"
    assert caller.balance() == before + 1000
    assert len(rep.requests_for("cancel")) == 1


def test_a_lost_webhook_is_found_by_the_reconciler(
    caller: Caller, rep: ReplicateEmulator, mp4: bytes
) -> None:
    """With every webhook lost, the reconciler polls the prediction and completes the job."""
    rep.set_plan(PredictionPlan(output=MediaFile(data=mp4), webhook=WebhookPlan(send=False)))
    created = start(caller)
    pid = wait_for_prediction(rep)
    rep.wait_for(pid, "succeeded")
    with configured(WEBHOOK_QUIET_S="0", STATUS_STALE_S="3600"):
        counts = reconcile.reconcile_once()
    assert counts.get("poll", 0) >= 1
    assert wait_status(caller, created["job_id"], {"completed", "failed"})["status"] == "completed"


def orphan(caller: Caller, rep: ReplicateEmulator, db: Database) -> tuple[uuid.UUID, str]:
    """A debited job whose prediction reached Replicate but whose id was never recorded (a crash in between)."""
    prompt = f"crash {uuid.uuid4()}"
    caller.grant(1000)
    url = caller.upload()
    spec = find_model(KLING)
    route = spec.route("replicate")
    job_id = debit_job(
        db,
        caller.id,
        25,
        model=KLING,
        provider="replicate",
        prompt=prompt,
        image_url=url,
        settings=SETTINGS,
        hold_s=60,
        provider_endpoint=route.endpoint,
    )
    request = JobRequest(job_id, caller.id, spec, route, prompt, url, SETTINGS)
    submission = get_provider("replicate").submit(request)  # reached Replicate; then the process died
    assert submission.request_id
    return job_id, submission.request_id


def test_crash_between_submit_and_record_is_found_not_resubmitted(
    caller: Caller, rep: ReplicateEmulator, db: Database
) -> None:
    """The reconciler lists recent predictions before it would submit again: the orphan is re-attached, no second
    prediction is made, and the job completes."""
    rep.set_plan(PredictionPlan(output=rep.plan.output, webhook=WebhookPlan(send=False)))
    job_id, pid = orphan(caller, rep, db)
    with configured(WEBHOOK_QUIET_S="0", STATUS_STALE_S="3600"):
        first = reconcile.reconcile_once()
    assert first.get("submit") == 1
    assert len(rep.requests_for("create")) == 1 and rep.requests_for("list")
    job = load_job(job_id)
    assert job is not None and job.request_id == pid
    assert wait_status(caller, str(job_id), {"completed", "failed"})["status"] == "completed"


def test_the_webhook_re_attaches_an_orphan(caller: Caller, rep: ReplicateEmulator, db: Database) -> None:
    """The job id in the webhook URL re-attaches a prediction whose id was never recorded; it completes."""
    job_id, pid = orphan(caller, rep, db)
    rep.wait_for(pid, "succeeded")
    assert wait_status(caller, str(job_id), {"completed", "failed"})["status"] == "completed"
    job = load_job(job_id)
    assert job is not None and job.request_id == pid and len(rep.requests_for("create")) == 1


def test_a_job_that_never_reached_replicate_is_submitted_once(
    caller: Caller, rep: ReplicateEmulator, db: Database
) -> None:
    """A debited job Replicate has no prediction for (a crash before the create) is submitted by the reconciler,
    exactly once."""
    caller.grant(1000)
    url = caller.upload()
    job_id = debit_job(
        db,
        caller.id,
        25,
        model=KLING,
        provider="replicate",
        prompt=f"never sent {uuid.uuid4()}",
        image_url=url,
        settings=SETTINGS,
        hold_s=60,
        provider_endpoint="kwaivgi/kling-v2.1",
    )
    with configured(WEBHOOK_QUIET_S="0"):
        first = reconcile.reconcile_once()
        second = reconcile.reconcile_once()
    assert first.get("submit") == 1 and "submit" not in second
    assert wait_status(caller, str(job_id), {"completed", "failed"})["status"] == "completed"
    assert len(rep.requests_for("create")) == 1


def test_replicate_models_are_unavailable_without_a_token(caller: Caller, stack: str) -> None:
    """Without REPLICATE_API_TOKEN (and without fal), a Replicate-only route is listed unavailable with the reason."""
    with configured(REPLICATE_API_TOKEN="", FAL_KEY=""):
        models = {m["slug"]: m for m in caller.http.get("/functions/v1/list-models").json()["models"]}
    kling = models[KLING]
    replicate_route = next(r for r in kling["routes"] if r["provider"] == "replicate")
    assert not replicate_route["available"] and "REPLICATE_API_TOKEN" in replicate_route["unavailable_reason"]
    assert not kling["available"]


def test_quote_equals_debit_for_every_replicate_model(caller: Caller, rep: ReplicateEmulator) -> None:
    """For every model with a Replicate route, each price row published for that route is what quote answers,
    and one job per model debits that price."""
    caller.grant(1_000_000)
    image_url = caller.upload()
    models = {m["slug"]: m for m in caller.http.get("/functions/v1/list-models").json()["models"]}
    checked = 0
    for slug, spec in all_models().items():
        if spec.makes_images or not any(r.provider == "replicate" for r in spec.routes):
            continue  # image models: tests/test_images.py
        listed = models[slug]
        assert listed["provider"] == "replicate" and listed["available"], listed
        route = next(r for r in listed["routes"] if r["provider"] == "replicate")
        assert route["price"] == listed["price"]
        for row in route["price"]["by_settings"]:
            body = {"model_id": slug, "prompt": "a harbour", "image_url": image_url}
            body["settings"] = {k: v for k, v in row.items() if k != "credits"}
            quoted = caller.http.post("/functions/v1/quote", json=body)
            assert quoted.status_code == 200, (slug, row, quoted.text)
            assert quoted.json()["credits"] == row["credits"] and quoted.json()["provider"] == "replicate"
        row = max(route["price"]["by_settings"], key=lambda r: r["credits"])
        before = caller.balance()
        settings = {k: v for k, v in row.items() if k != "credits"}
        created = caller.generate(model_id=slug, prompt="a harbour", image_url=image_url, settings=settings)
        assert created.status_code == 202, (slug, created.text)
        assert created.json()["credits_used"] == row["credits"] == before - caller.balance()
        checked += 1
    assert checked == 7
    creates = {r.path for r in rep.requests_for("create")}
    assert "/v1/models/minimax/hailuo-02/predictions" in creates and len(creates) == 6


def test_failover_to_replicate_when_fals_breaker_is_open(caller: Caller, rep: ReplicateEmulator) -> None:
    """With both configured, Kling goes to fal; while fal's breaker is open it goes to Replicate at Replicate's
    price, which quote shows before the charge; nothing is sent to fal."""
    with FalEmulator() as fal, configured(**fal.env()):
        fal.set_plan(JobPlan())
        _http.breaker("fal").reset()
        body = {
            "model_id": KLING,
            "prompt": "harbour",
            "image_url": caller.upload(),
            "settings": {"duration": 5},
        }
        assert caller.http.post("/functions/v1/quote", json=body).json()["provider"] == "fal"
        cb = _http.breaker("fal")
        for _ in range(cb.threshold):
            cb.record(False)
        try:
            listed = {m["slug"]: m for m in caller.http.get("/functions/v1/list-models").json()["models"]}
            assert listed[KLING]["provider"] == "replicate"
            quoted = caller.http.post("/functions/v1/quote", json=body).json()
            assert quoted["provider"] == "replicate"
            caller.grant(1000)
            created = caller.generate(**body)
            assert created.status_code == 202 and created.json()["credits_used"] == quoted["credits"]
            job = load_job(uuid.UUID(created.json()["job_id"]))
            assert job is not None and job.provider == "replicate" and job.endpoint == "kwaivgi/kling-v2.1"
            assert fal.requests_for("submit") == [] and len(rep.requests_for("create")) == 1
        finally:
            cb.reset()


def test_text_only_routes_never_leave_out_a_required_image() -> None:
    """The catalog sends a prompt alone (text_only) only to Replicate endpoints whose image input the reference
    (the emulator's schemas) does not require and that make a video from text: Kling 2.5 Turbo Pro, Veo 3.1,
    Hailuo-02 and Seedance; never Kling 2.1 or Wan 2.2 (image required), nor Wan 2.5 i2v (an image-to-video
    endpoint whose image the reference leaves unmarked), nor any fal endpoint (image_url required, reference §7)."""
    from tests.emulators.replicate import OFFICIAL_MODELS

    text_only = set()
    for spec in all_models().values():
        for route in spec.routes:
            if not route.text_only:
                continue
            assert route.provider == "replicate" and not spec.makes_images, route.key
            field = route.inputs["image"].field
            assert not OFFICIAL_MODELS[route.endpoint].fields[field].required, route.key
            text_only.add(route.endpoint)
    assert text_only == {
        "kwaivgi/kling-v2.5-turbo-pro",
        "google/veo-3.1",
        "minimax/hailuo-02",
        "bytedance/seedance-1-pro",
    }
