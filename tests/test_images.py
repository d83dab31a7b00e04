"""Images: generate-image through fal and Replicate (text to image, edits), image ids as references, billing."""

from __future__ import annotations

import io
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest
from PIL import Image

from shared import http as _http
from tests.conftest import Caller, configured
from tests.emulators.fal import FalEmulator, JobPlan, MediaFile
from tests.emulators.replicate import PredictionPlan, ReplicateEmulator, WebhookPlan


def png(color: tuple[int, int, int] = (200, 40, 90), size: tuple[int, int] = (64, 48)) -> bytes:
    """A small real PNG."""
    out = io.BytesIO()
    Image.new("RGB", size, color).save(out, "PNG")
    return out.getvalue()


@pytest.fixture(scope="module")
def emulator(stack: str) -> Iterator[ReplicateEmulator]:
    """The Replicate emulator, our settings pointed at it and fal not configured, for the whole module."""
    with ReplicateEmulator() as emu, configured(**emu.env(), FAL_KEY=""):
        yield emu


@pytest.fixture
def rep(emulator: ReplicateEmulator) -> Iterator[ReplicateEmulator]:
    """A clean emulator whose predictions finish at once with a real PNG, and closed breakers."""
    emulator.reset()
    emulator.set_plan(
        PredictionPlan(output=MediaFile(data=png(), content_type="image/png", file_name="o.png"))
    )
    _http.breaker("replicate").reset()
    _http.breaker("fal").reset()
    yield emulator


def image_job(caller: Caller, key: str | None = None, **body: Any) -> httpx.Response:
    """POST generate-image with an Idempotency-Key."""
    headers = {"Idempotency-Key": key or uuid.uuid4().hex}
    return caller.http.post("/functions/v1/generate-image", json=body, headers=headers)


def wait_done(caller: Caller, job_id: str, timeout: float = 20) -> dict[str, Any]:
    """Poll get-video-status until the job is finished."""
    deadline = time.monotonic() + timeout
    job: dict[str, Any] = {}
    while time.monotonic() < deadline:
        job = caller.status(job_id).json()
        if job["status"] in ("completed", "failed", "canceled"):
            return job
        time.sleep(0.1)
    raise AssertionError(f"job {job_id} stayed {job.get('status')}")


def test_text_to_image_at_replicate(caller: Caller, rep: ReplicateEmulator) -> None:
    """nano-banana without fal runs as google/nano-banana-2 at Replicate with its own field values; the image is
    copied into our storage and listed with an image_id; the price is per image, charged once."""
    caller.grant(100)
    resp = image_job(caller, model_id="nano-banana", prompt="a red kite", settings={"output_format": "png"})
    assert resp.status_code == 202, resp.text
    assert resp.headers["location"].endswith(resp.json()["job_id"])
    cost = resp.json()["credits_used"]
    assert cost == 11  # $0.08 x 100 credits/USD x 1.3 margin, rounded up
    done = wait_done(caller, resp.json()["job_id"])
    assert done["status"] == "completed" and done["kind"] == "image" and done["provider"] == "replicate", done
    (image,) = done["images"]
    assert uuid.UUID(image["image_id"]) and image["content_type"] == "image/png"
    assert httpx.get(image["url"]).content == png()
    (create,) = rep.requests_for("create")
    assert create.path == "/v1/models/google/nano-banana-2/predictions"
    assert create.json()["input"] == {"prompt": "a red kite", "output_format": "png"}
    assert caller.balance() == 100 - cost
    listed = caller.http.get("/functions/v1/list-jobs", params={"kind": "image"}).json()["jobs"]
    assert [j["job_id"] for j in listed] == [done["job_id"]] and listed[0]["images"][0]["image_id"]
    videos = caller.http.get("/functions/v1/list-videos").json()["videos"]
    assert videos == []  # list-videos keeps listing videos only


def test_edit_with_an_image_id_sends_our_copy(caller: Caller, rep: ReplicateEmulator) -> None:
    """An edit names an earlier image by image_id: Replicate receives our stored copy (through its Files API),
    never the provider's expiring URL."""
    caller.grant(100)
    first = wait_done(caller, image_job(caller, model_id="nano-banana", prompt="a kite").json()["job_id"])
    image_id = first["images"][0]["image_id"]
    resp = image_job(caller, model_id="nano-banana", prompt="make it blue", image_ids=[image_id])
    assert resp.status_code == 202, resp.text
    assert wait_done(caller, resp.json()["job_id"])["status"] == "completed"
    sent = rep.requests_for("create")[-1].json()["input"]
    (ref,) = sent["image_input"]
    assert ref.startswith(rep.api_url + "/files/")
    (upload,) = [f for f in rep.uploads.values() if f.data == png()]
    assert upload.content_type == "image/png"


def test_another_users_image_id_is_not_found(caller: Caller, other: Caller, rep: ReplicateEmulator) -> None:
    """Referencing another user's image answers 404 and charges nothing, for images and videos alike."""
    caller.grant(100)
    other.grant(100)
    done = wait_done(caller, image_job(caller, model_id="nano-banana", prompt="mine").json()["job_id"])
    image_id = done["images"][0]["image_id"]
    resp = image_job(other, model_id="nano-banana", prompt="theirs", image_ids=[image_id])
    assert resp.status_code == 404 and resp.json()["error"]["details"].get("field") == "image_ids", resp.text
    video = other.generate(model_id="local-motion", image_id=image_id, settings={"duration": 1})
    assert video.status_code == 404
    assert other.balance() == 100


def test_a_video_from_a_generated_image(caller: Caller, rep: ReplicateEmulator) -> None:
    """generate-video with image_id animates an image the caller generated (the local engine reads our copy)."""
    caller.grant(100)
    done = wait_done(caller, image_job(caller, model_id="nano-banana", prompt="a harbour").json()["job_id"])
    resp = caller.generate(
        model_id="local-motion", image_id=done["images"][0]["image_id"], settings={"duration": 1}
    )
    assert resp.status_code == 202, resp.text
    video = wait_done(caller, resp.json()["job_id"], timeout=60)
    assert video["status"] == "completed" and video["kind"] == "video" and video["video_url"]


def test_a_failed_image_refunds_once_and_replays_answer_the_same(
    caller: Caller, rep: ReplicateEmulator
) -> None:
    """A failed prediction refunds the image job exactly once; the same key and body replays the first answer,
    the same key with another body is refused (422)."""
    rep.set_plan(PredictionPlan(error="safety filter"))
    caller.grant(100)
    key = uuid.uuid4().hex
    body = {"model_id": "nano-banana", "prompt": "refused"}
    first = image_job(caller, key, **body)
    assert first.status_code == 202
    failed = wait_done(caller, first.json()["job_id"])
    assert failed["status"] == "failed" and "safety filter" in failed["error_message"]
    again = image_job(caller, key, **body)
    assert again.status_code == 202 and again.json() == first.json()
    assert again.headers.get("idempotent-replayed") == "true"
    assert image_job(caller, key, model_id="nano-banana", prompt="other").status_code == 422
    assert caller.balance() == 100
    assert len(rep.requests_for("create")) == 1


def test_image_settings_are_checked_before_any_charge(caller: Caller, rep: ReplicateEmulator) -> None:
    """Bad image settings, a video model on generate-image, an image model on generate-video and an image_model
    that makes no images are 400s naming the field (with the image models allowed); nothing is charged."""
    caller.grant(10)
    bad = image_job(caller, model_id="nano-banana", prompt="x", settings={"num_images": 9})
    assert bad.status_code == 400 and bad.json()["error"]["details"]["field"] == "settings.num_images"
    fmt = image_job(caller, model_id="nano-banana", prompt="x", settings={"output_format": "gif"})
    assert fmt.status_code == 400 and fmt.json()["error"]["details"]["allowed"] == ["jpeg", "png"]
    wrong = image_job(caller, model_id="local-motion", prompt="x")
    assert wrong.status_code == 400 and wrong.json()["error"]["details"]["field"] == "model_id"
    video = caller.generate(model_id="nano-banana", prompt="x")
    assert video.status_code == 400 and video.json()["error"]["details"]["field"] == "model_id"
    for image_model in ("nope", "local-motion", 7):
        start = caller.generate(model_id=KLING, prompt="a cat", settings={"image_model": image_model})
        details = start.json()["error"]["details"]
        assert start.status_code == 400 and details["field"] == "settings.image_model", start.text
        assert details["allowed"] == ["local-card", "nano-banana"]
    assert caller.balance() == 10


def test_several_images_need_a_route_that_makes_them(caller: Caller, rep: ReplicateEmulator) -> None:
    """Replicate makes one image per prediction: asking for 2 without fal configured is refused before a charge
    with each route's reason."""
    caller.grant(100)
    resp = image_job(caller, model_id="nano-banana", prompt="x", settings={"num_images": 2})
    assert resp.status_code == 400 and "does not support these settings" in resp.json()["error"]["message"]
    assert caller.balance() == 100


def test_text_to_image_at_fal_with_several_images(caller: Caller, rep: ReplicateEmulator) -> None:
    """With fal configured, nano-banana goes to fal-ai/nano-banana-2 first; its images list is copied in order,
    each with its own image_id, at the per-image price."""
    picture = png((10, 120, 200))
    with FalEmulator() as fal, configured(**fal.env()):
        media = MediaFile(data=picture, content_type="image/png", file_name="out.png")
        fal.set_plan(
            JobPlan(
                video=media,
                result=lambda job: {
                    "images": [{"url": job.video_url}, {"url": job.video_url}],
                    "description": "",
                },
            )
        )
        caller.grant(100)
        resp = image_job(caller, model_id="nano-banana", prompt="two kites", settings={"num_images": 2})
        assert resp.status_code == 202, resp.text
        assert resp.json()["credits_used"] == 21  # 2 x $0.08 x 130, rounded up
        done = wait_done(caller, resp.json()["job_id"])
        assert done["status"] == "completed" and done["provider"] == "fal", done
        assert len({i["image_id"] for i in done["images"]}) == 2
        assert all(httpx.get(i["url"]).content == picture for i in done["images"])
        (submit,) = fal.requests_for("submit")
        assert submit.path.endswith("/fal-ai/nano-banana-2") and submit.json()["num_images"] == 2
    assert rep.requests_for("create") == []


def test_list_models_shows_image_models_and_retired_routes(caller: Caller, rep: ReplicateEmulator) -> None:
    """list-models lists nano-banana as text-to-image with its settings, and the retired v1 endpoints as
    unavailable routes with the reason."""
    models = {m["slug"]: m for m in caller.http.get("/functions/v1/list-models").json()["models"]}
    banana = models["nano-banana"]
    assert banana["kind"] == "text-to-image" and banana["max_images"] == 4 and banana["output_formats"]
    retired = [r for r in banana["routes"] if r["endpoint"] in ("fal-ai/nano-banana", "google/nano-banana")]
    assert len(retired) == 2 and all(
        not r["available"] and "retired" in r["unavailable_reason"] for r in retired
    )
    assert [r["credits"] for r in banana["price"]["by_settings"]] == [11]


def test_late_webhook_for_an_image_changes_nothing(
    caller: Caller, rep: ReplicateEmulator, stack: str
) -> None:
    """A completion delivered again after the images were stored keeps the same images (no second set)."""
    rep.set_plan(
        PredictionPlan(
            output=MediaFile(data=png(), content_type="image/png", file_name="o.png"),
            webhook=WebhookPlan(copies=2),
        )
    )
    caller.grant(100)
    done = wait_done(caller, image_job(caller, model_id="nano-banana", prompt="twice").json()["job_id"])
    time.sleep(0.5)
    again = caller.status(done["job_id"]).json()
    assert [i["image_id"] for i in again["images"]] == [i["image_id"] for i in done["images"]]


KLING = "kling-2.1-standard"


def test_a_video_from_a_prompt_alone(caller: Caller, rep: ReplicateEmulator, mp4: bytes) -> None:
    """generate-video with a prompt and no image makes the start image first (nano-banana), then the video with
    our stored copy of it: one request, one charge covering both parts as quoted, the image kept and listed."""
    rep.set_plan(PredictionPlan(output=MediaFile(data=mp4)), model="kwaivgi/kling-v2.1")
    caller.grant(200)
    body = {"model_id": KLING, "prompt": "a lighthouse at dusk", "settings": {"duration": 5}}
    quoted = caller.http.post("/functions/v1/quote", json=body).json()
    assert quoted["parts"] == {"image": 11, "video": 33} and quoted["credits"] == 44, quoted
    resp = caller.generate(**body)
    assert resp.status_code == 202 and resp.json()["credits_used"] == 44, resp.text
    done = wait_done(caller, resp.json()["job_id"], timeout=30)
    assert done["status"] == "completed" and done["stage"] == "video" and done["kind"] == "video", done
    assert httpx.get(done["video_url"]).content == mp4
    (start_image,) = done["images"]
    assert httpx.get(start_image["url"]).content == png()
    creates = rep.requests_for("create")
    assert [c.path for c in creates] == [
        "/v1/models/google/nano-banana-2/predictions",
        "/v1/models/kwaivgi/kling-v2.1/predictions",
    ]
    assert creates[1].json()["input"]["start_image"].startswith(rep.api_url + "/files/")
    assert caller.balance() == 200 - 44
    kinds = [e["kind"] for e in caller.http.get("/functions/v1/get-credits").json()["entries"]]
    assert kinds.count("generation") == 1 and "refund" not in kinds


def test_a_failed_start_image_refunds_everything(caller: Caller, rep: ReplicateEmulator) -> None:
    """When the start image fails, the job fails and both parts are refunded; no video is requested."""
    rep.set_plan(PredictionPlan(error="safety filter"), model="google/nano-banana-2")
    caller.grant(200)
    resp = caller.generate(model_id=KLING, prompt="refused", settings={"duration": 5})
    assert resp.status_code == 202
    failed = wait_done(caller, resp.json()["job_id"])
    assert failed["status"] == "failed" and "safety filter" in failed["error_message"]
    assert caller.balance() == 200
    assert [c.path for c in rep.requests_for("create")] == ["/v1/models/google/nano-banana-2/predictions"]


def test_a_failed_video_after_its_image_refunds_the_video_part(
    caller: Caller, rep: ReplicateEmulator
) -> None:
    """When the video fails after its start image was made, only the video part is refunded; the image stays
    the user's (shown on the job, usable by image_id)."""
    rep.set_plan(PredictionPlan(error="video model down"), model="kwaivgi/kling-v2.1")
    caller.grant(200)
    resp = caller.generate(model_id=KLING, prompt="half way", settings={"duration": 5})
    failed = wait_done(caller, resp.json()["job_id"], timeout=30)
    assert failed["status"] == "failed" and "video model down" in failed["error_message"], failed
    assert caller.balance() == 200 - 11
    (image,) = failed["images"]
    again = image_job(caller, model_id="nano-banana", prompt="reuse", image_ids=[image["image_id"]])
    assert again.status_code == 202, again.text


def test_continue_a_shot_from_a_videos_last_frame(
    caller: Caller, other: Caller, rep: ReplicateEmulator, mp4: bytes
) -> None:
    """video_id makes the last frame of the caller's completed video the next video's start image (and an
    image edit's reference); another user's video is 404, an unfinished one 409; nothing is charged for those."""
    caller.grant(200)
    other.grant(50)
    first = caller.generate(model_id="local-motion", image_url=caller.upload(), settings={"duration": 1})
    done = wait_done(caller, first.json()["job_id"], timeout=60)
    assert done["status"] == "completed", done
    rep.set_plan(PredictionPlan(output=MediaFile(data=mp4)), model="kwaivgi/kling-v2.1")
    resp = caller.generate(model_id=KLING, prompt="the camera keeps moving", video_id=done["job_id"])
    assert resp.status_code == 202, resp.text
    assert wait_done(caller, resp.json()["job_id"], timeout=30)["status"] == "completed"
    start_image = rep.requests_for("create")[-1].json()["input"]["start_image"]
    (sent,) = [f for f in rep.uploads.values() if start_image.endswith(f.id)]
    with Image.open(io.BytesIO(sent.data)) as frame:
        assert frame.format == "JPEG" and frame.size[0] > 0
    edit = image_job(caller, model_id="nano-banana", prompt="as a poster", video_id=done["job_id"])
    assert edit.status_code == 202, edit.text
    assert len(rep.requests_for("create")[-1].json()["input"]["image_input"]) == 1
    balance = other.balance()
    theirs = other.generate(model_id=KLING, prompt="x", video_id=done["job_id"])
    assert theirs.status_code == 404 and theirs.json()["error"]["details"]["field"] == "video_id"
    rep.set_plan(PredictionPlan(start_s=None, run_s=None), model="kwaivgi/kling-v2.1")
    running = caller.generate(model_id=KLING, prompt="y", image_url=caller.upload())
    unfinished = caller.generate(model_id=KLING, prompt="z", video_id=running.json()["job_id"])
    assert unfinished.status_code == 409 and "only a completed video" in unfinished.json()["error"]["message"]
    assert other.balance() == balance


def test_local_card_makes_images_offline(caller: Caller, rep: ReplicateEmulator) -> None:
    """local-card (the local engine's title card, no keys, no network) makes the images asked for, in the format
    and aspect ratio asked for, at 1 credit each."""
    caller.grant(10)
    resp = image_job(
        caller,
        model_id="local-card",
        prompt="A quiet harbour at dawn",
        settings={"num_images": 2, "output_format": "png", "aspect_ratio": "16:9"},
    )
    assert resp.status_code == 202 and resp.json()["credits_used"] == 2, resp.text
    done = wait_done(caller, resp.json()["job_id"], timeout=60)
    assert done["status"] == "completed" and done["provider"] == "local", done
    assert len(done["images"]) == 2 and done["thumbnail_url"]
    for image in done["images"]:
        with Image.open(io.BytesIO(httpx.get(image["url"]).content)) as card:
            assert card.format == "PNG" and card.size[0] * 9 == card.size[1] * 16
    assert caller.balance() == 8


def test_a_local_video_from_a_prompt_alone(caller: Caller, rep: ReplicateEmulator) -> None:
    """Offline, local-motion with a prompt alone makes a title card with local-card, then animates it: text ->
    image -> video on this machine, one charge (1 credit for the card + 1 per second)."""
    caller.grant(10)
    resp = caller.generate(
        model_id="local-motion", prompt="Harbour at dawn, slow zoom in", settings={"duration": 2}
    )
    assert resp.status_code == 202 and resp.json()["credits_used"] == 3, resp.text
    done = wait_done(caller, resp.json()["job_id"], timeout=90)
    assert done["status"] == "completed" and done["stage"] == "video" and done["video_url"], done
    assert len(done["images"]) == 1 and caller.balance() == 7


def test_each_kind_of_request_is_charged_once_under_its_key(
    caller: Caller, rep: ReplicateEmulator, mp4: bytes
) -> None:
    """Text to image, an edit, a prompt-only video, a video from an image id and one continuing a video: each
    sent twice at once and again once finished under one Idempotency-Key is one job charged once (the later
    answers replay the first); the same key with another prompt is a 422 that charges nothing."""
    rep.set_plan(PredictionPlan(output=MediaFile(data=mp4)), model="kwaivgi/kling-v2.1")
    caller.grant(500)
    made = wait_done(caller, image_job(caller, model_id="nano-banana", prompt="a kite").json()["job_id"])
    image_id = made["images"][0]["image_id"]
    clip = caller.generate(model_id="local-motion", image_id=image_id, settings={"duration": 1})
    video_id = wait_done(caller, clip.json()["job_id"], timeout=60)["job_id"]
    requests: list[tuple[str, dict[str, Any]]] = [
        ("generate-image", {"model_id": "nano-banana", "prompt": "text to image"}),
        ("generate-image", {"model_id": "nano-banana", "prompt": "an edit", "image_ids": [image_id]}),
        ("generate-video", {"model_id": KLING, "prompt": "a lighthouse", "settings": {"duration": 5}}),
        ("generate-video", {"model_id": "local-motion", "prompt": "zoom in", "image_id": image_id}),
        ("generate-video", {"model_id": "local-motion", "prompt": "pan left", "video_id": video_id}),
    ]

    def send(path: str, body: dict[str, Any], key: str) -> httpx.Response:
        return caller.http.post(f"/functions/v1/{path}", json=body, headers={"Idempotency-Key": key})

    for path, body in requests:
        key, before = uuid.uuid4().hex, caller.balance()
        with ThreadPoolExecutor(max_workers=2) as pool:
            answers = list(pool.map(send, [path] * 2, [body] * 2, [key] * 2))
        created = [a for a in answers if a.status_code == 202]
        assert created and all(a.status_code in (202, 409) for a in answers), [a.text for a in answers]
        job_id, cost = created[0].json()["job_id"], created[0].json()["credits_used"]
        assert {a.json()["job_id"] for a in created} == {job_id}
        assert wait_done(caller, job_id, timeout=60)["status"] == "completed", (path, body)
        replay = send(path, body, key)
        assert replay.status_code == 202 and replay.json()["job_id"] == job_id, replay.text
        assert replay.headers.get("idempotent-replayed") == "true"
        assert send(path, {**body, "prompt": "something else"}, key).status_code == 422
        assert caller.balance() == before - cost, (path, body)


def test_a_prompt_alone_goes_straight_to_a_route_that_takes_one(
    caller: Caller, rep: ReplicateEmulator, mp4: bytes
) -> None:
    """A model whose Replicate endpoint takes a prompt without an image (catalog text_only: Hailuo-02) is sent
    the prompt directly: one prediction with no image input, the video's price alone, no stage; asking for a
    start image with settings.image_model still makes one first."""
    rep.set_plan(PredictionPlan(output=MediaFile(data=mp4)), model="minimax/hailuo-02")
    caller.grant(200)
    body = {"model_id": "hailuo-02-standard", "prompt": "a lighthouse at dusk", "settings": {"duration": 6}}
    quoted = caller.http.post("/functions/v1/quote", json=body).json()
    assert quoted["parts"] is None and quoted["provider"] == "replicate", quoted
    listed = caller.http.get("/functions/v1/list-models").json()["models"]
    (hailuo,) = [m for m in listed if m["slug"] == "hailuo-02-standard"]
    assert {r["provider"]: r["text_only"] for r in hailuo["routes"]} == {"fal": False, "replicate": True}
    resp = caller.generate(**body)
    assert resp.status_code == 202 and resp.json()["credits_used"] == quoted["credits"], resp.text
    done = wait_done(caller, resp.json()["job_id"], timeout=30)
    assert done["status"] == "completed" and done["stage"] is None and not done["images"], done
    assert httpx.get(done["video_url"]).content == mp4
    (create,) = rep.requests_for("create")
    assert create.path == "/v1/models/minimax/hailuo-02/predictions"
    assert create.json()["input"]["prompt"] == "a lighthouse at dusk"
    assert "first_frame_image" not in create.json()["input"]
    assert caller.balance() == 200 - quoted["credits"]

    staged = {**body, "settings": {"duration": 6, "image_model": "nano-banana"}}
    two_parts = caller.http.post("/functions/v1/quote", json=staged).json()
    assert two_parts["parts"] == {"image": 11, "video": quoted["credits"]}, two_parts
    second = caller.generate(**staged)
    assert wait_done(caller, second.json()["job_id"], timeout=30)["stage"] == "video"
    assert [c.path for c in rep.requests_for("create")][1:] == [
        "/v1/models/google/nano-banana-2/predictions",
        "/v1/models/minimax/hailuo-02/predictions",
    ]
