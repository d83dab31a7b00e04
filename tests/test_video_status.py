"""get-video-status and the local engine end to end: a real MP4 lands in storage and is served."""

from __future__ import annotations

import hashlib
import io
import time
import uuid
from typing import Any

import av
import httpx
import numpy as np
import pytest

from shared.db import Database
from tests.conftest import Caller


def wait_for(caller: Caller, job_id: str, timeout: float = 120) -> dict[str, Any]:
    """Poll get-video-status until the job is terminal."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job: dict[str, Any] = caller.status(job_id).json()
        if job["status"] in ("completed", "failed", "canceled"):
            return job
        time.sleep(0.2)
    raise AssertionError(f"job {job_id} did not finish")


def _decode(data: bytes) -> tuple[list[np.ndarray], float, Any]:
    with av.open(io.BytesIO(data)) as container:
        stream = container.streams.video[0]
        frames = [f.to_ndarray(format="gray") for f in container.decode(stream)]
        rate = float(stream.average_rate)
        codec = (stream.codec_context.name, stream.codec_context.pix_fmt, stream.width, stream.height)
    return frames, rate, codec


@pytest.fixture
def finished(caller: Caller) -> dict[str, Any]:
    """A completed 2-second 480p 16:9 local-motion job."""
    caller.grant(10)
    body = {
        "model_id": "local-motion",
        "prompt": "pan left slowly",
        "image_url": caller.upload(),
        "settings": {"duration": 2, "resolution": "480p", "aspect_ratio": "16:9"},
    }
    created = caller.generate(**body).json()
    job = wait_for(caller, created["job_id"])
    assert job["status"] == "completed", job
    return job


def test_completed_job_serves_a_real_moving_mp4(finished: dict[str, Any]) -> None:
    """The finished video is H.264 yuv420p at the requested size and duration (± 1 frame), and it moves."""
    data = httpx.get(finished["video_url"]).content
    frames, rate, codec = _decode(data)
    assert codec == ("h264", "yuv420p", 854, 480)
    assert abs(len(frames) / rate - 2.0) <= 1 / rate
    first, last = frames[0].astype(float), frames[-1].astype(float)
    assert np.abs(first - last).mean() > 3.0
    steps = [
        np.abs(frames[i].astype(float) - frames[i + 1].astype(float)).mean() for i in range(len(frames) - 1)
    ]
    assert min(steps) > 0.0


def test_completed_job_has_a_jpeg_thumbnail(finished: dict[str, Any]) -> None:
    """The thumbnail URL serves a JPEG of the video's size."""
    from PIL import Image

    resp = httpx.get(finished["thumbnail_url"])
    assert resp.status_code == 200 and resp.headers["content-type"] == "image/jpeg"
    assert Image.open(io.BytesIO(resp.content)).size == (854, 480)


def test_status_body_shape(finished: dict[str, Any]) -> None:
    """A completed status carries the contract's fields, progress 1 and no error."""
    for key in ("job_id", "status", "video_url", "thumbnail_url", "error_message", "progress"):
        assert key in finished
    assert finished["progress"] == 1 and finished["error_message"] is None


def test_media_urls_are_signed(finished: dict[str, Any]) -> None:
    """The media URL without its signature, or with a changed one, is refused."""
    bare = finished["video_url"].split("?", 1)[0]
    assert httpx.get(bare).status_code == 403
    assert httpx.get(finished["video_url"].replace("sig=", "sig=0")).status_code == 403


def test_another_users_job_is_404(finished: dict[str, Any], other: Caller) -> None:
    """Another user asking for the job gets 404, exactly like for a job that does not exist."""
    theirs = other.status(finished["job_id"])
    missing = other.status(str(uuid.uuid4()))
    assert theirs.status_code == missing.status_code == 404
    assert theirs.json()["error"]["code"] == missing.json()["error"]["code"] == "job_not_found"


def test_bad_job_id_is_400(caller: Caller) -> None:
    """A job_id that is not a UUID, or none, answers 400 naming job_id."""
    for params in ({"job_id": "nope"}, {}):
        resp = caller.http.get("/functions/v1/get-video-status", params=params)
        assert resp.status_code == 400
        assert resp.json()["error"]["details"]["field"] == "job_id"


def test_progress_is_reported_while_rendering(caller: Caller) -> None:
    """A long render reports processing with a progress fraction before it completes."""
    caller.grant(20)
    body = {
        "model_id": "local-motion",
        "prompt": "zoom out",
        "image_url": caller.upload(),
        "settings": {"duration": 10, "resolution": "720p"},
    }
    job_id = caller.generate(**body).json()["job_id"]
    seen: set[float] = set()
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        job = caller.status(job_id).json()
        if job["status"] == "processing" and job["progress"] is not None:
            seen.add(job["progress"])
        if job["status"] == "completed":
            break
        time.sleep(0.1)
    assert job["status"] == "completed"
    assert any(0 < p < 1 for p in seen), seen


def test_undecodable_upload_fails_and_refunds(caller: Caller, db: Database) -> None:
    """An image that cannot be decoded is refused by its upload PUT; using its URL then is 400, before any charge."""
    caller.grant(10)
    data = b"\xff\xd8\xff" + b"not really a jpeg" * 10
    body = {"content_type": "image/jpeg", "size": len(data), "sha256": hashlib.sha256(data).hexdigest()}
    target = caller.http.post("/functions/v1/create-upload-url", json=body).json()
    put = httpx.put(target["upload_url"], content=data, headers=target["upload_headers"])
    assert put.status_code == 400 and put.json()["error"]["details"]["field"] == "content_type"
    resp = caller.generate(model_id="local-motion", image_url=target["image_url"], settings={"duration": 1})
    assert resp.status_code == 400
    assert resp.json()["error"]["details"]["field"] == "image_url"
    assert caller.balance() == 10


def _png_with_broken_pixels() -> bytes:
    """A PNG whose header is valid (it passes upload checks) but whose pixel data cannot be decoded."""
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (320, 240), (200, 120, 40)).save(buf, format="PNG")
    data = bytearray(buf.getvalue())
    idat = data.index(b"IDAT")
    data[idat + 4 : idat + 40] = b"\x00" * 36
    return bytes(data)


def test_failed_render_refunds_once(caller: Caller, db: Database) -> None:
    """A job the engine cannot render fails with a message, and its credits come back exactly once."""
    caller.grant(10)
    url = caller.upload(data=_png_with_broken_pixels(), content_type="image/png")
    created = caller.generate(model_id="local-motion", image_url=url, settings={"duration": 1})
    assert created.status_code == 202, created.text
    job = wait_for(caller, created.json()["job_id"])
    assert job["status"] == "failed" and job["error_message"]
    assert caller.balance() == 10
    entries = caller.http.get("/functions/v1/get-credits").json()["entries"]
    assert sorted(e["kind"] for e in entries) == ["generation", "grant", "refund"]
    assert db.call("fail_job", job=uuid.UUID(job["job_id"]), error="again") is False
    assert caller.balance() == 10
