"""``i2v upload`` and ``i2v generate``: one image stored, one video made, followed and downloaded."""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console

from client.api import I2VClient, Upload
from client.media import download_video, video_filename, video_tags

_TERMINAL = ("completed", "failed", "canceled")


class InputError(Exception):
    """An argument that cannot be used (a missing file); nothing was sent."""


@dataclass(frozen=True)
class GenerateOptions:
    """What ``i2v generate`` was asked for."""

    image: str | None
    prompt: str = ""
    model: str = "local-motion"
    settings: dict[str, Any] = field(default_factory=dict)
    wait: bool = False
    download: bool = False
    output_dir: Path = Path("downloads")
    idempotency_key: str | None = None
    poll_interval: float = 1.0
    timeout: float = 1800.0
    image_id: str | None = None  # an image made earlier (i2v image), as the start image
    video_id: str | None = None  # a video made earlier: its last frame is the start image


def upload(api: I2VClient, path: Path, console: Console) -> Upload:
    """Store a local image (by content: the same image is never sent twice) and say what happened on stderr."""
    if not path.is_file():
        raise InputError(f"{path}: no such file")
    stored = api.store_image(path)
    note = "already uploaded, nothing sent" if stored.already_uploaded else f"uploaded {stored.size} bytes"
    console.print(f"{path.name}: {note} (sha256 {stored.sha256})", highlight=False, soft_wrap=True)
    return stored


def image_url(api: I2VClient, image: str | None, console: Console) -> str | None:
    """The image_url for IMAGE: an https URL as given, a local file uploaded first."""
    if image is None:
        return None
    if image.startswith(("https://", "http://")):
        return image
    return upload(api, Path(image), console).image_url


def generate(api: I2VClient, opts: GenerateOptions, console: Console) -> dict[str, Any]:
    """Price, start and (with ``wait`` or ``download``) follow one video; return what happened."""
    body: dict[str, Any] = {"model_id": opts.model, "prompt": opts.prompt, "settings": opts.settings}
    url = image_url(api, opts.image, console)
    if url:
        body["image_url"] = url
    if opts.image_id:
        body["image_id"] = opts.image_id
    if opts.video_id:
        body["video_id"] = opts.video_id
    quote = api.quote(body)
    console.print(
        f"price: {quote['credits']} credits (balance {quote['balance']} → {quote['balance_after']})",
        highlight=False,
    )
    key = opts.idempotency_key or str(uuid.uuid4())
    created = api.generate(body, key)
    console.print(
        f"job {created['job_id']} started; to retry this request use --idempotency-key {key}",
        highlight=False,
        soft_wrap=True,
    )
    result: dict[str, Any] = {**created, "idempotency_key": key}
    if not (opts.wait or opts.download):
        return result
    job = follow(api, created["job_id"], console, opts.poll_interval, opts.timeout)
    result.update(
        status=job["status"], video_url=job.get("video_url"), error_message=job.get("error_message")
    )
    if opts.download and job["status"] == "completed":
        dest = opts.output_dir / video_filename(
            job["job_id"], job.get("model") or opts.model, job.get("created_at")
        )
        if not dest.exists():
            download_video(api, job["video_url"], dest, video_tags(job["job_id"], opts.prompt))
        result["path"] = str(dest)
    return result


@dataclass(frozen=True)
class ImageOptions:
    """What ``i2v image`` was asked for."""

    prompt: str
    model: str | None  # None: nano-banana where the server can run it, else its first available image model
    references: list[str]  # local files, URLs or image ids
    settings: dict[str, Any]
    download: bool
    output_dir: Path
    idempotency_key: str | None = None
    poll_interval: float = 1.0
    timeout: float = 600.0


PREFERRED_IMAGE_MODEL = "nano-banana"


def default_image_model(models: list[dict[str, Any]]) -> str:
    """nano-banana where the server can run it; otherwise its first available image model (a stack with no
    provider keys makes title cards with local-card). With none available, nano-banana: the API says why."""
    available = [m["slug"] for m in models if m.get("kind") == "text-to-image" and m.get("available", True)]
    if PREFERRED_IMAGE_MODEL in available or not available:
        return PREFERRED_IMAGE_MODEL
    return str(available[0])


def make_image(api: I2VClient, opts: ImageOptions, console: Console) -> dict[str, Any]:
    """Start one image job (text to image, or an edit of the references) and follow it; with ``download`` save
    each image as ``{image_id}.{ext}``. Returns the job and its saved paths."""
    model = opts.model or default_image_model(api.list_models())
    if model != (opts.model or PREFERRED_IMAGE_MODEL):
        console.print(
            f"model {model}: {PREFERRED_IMAGE_MODEL} is not available on this server (--model to choose)",
            highlight=False,
            soft_wrap=True,
        )
    body: dict[str, Any] = {"model_id": model, "prompt": opts.prompt, "settings": opts.settings}
    ids, urls = [], []
    for ref in opts.references:
        try:
            ids.append(str(uuid.UUID(ref)))
        except ValueError:
            url = image_url(api, ref, console)
            if url:
                urls.append(url)
    if ids:
        body["image_ids"] = ids
    if urls:
        body["image_urls"] = urls
    key = opts.idempotency_key or str(uuid.uuid4())
    created = api.generate_image(body, key)
    console.print(
        f"job {created['job_id']} started for {created['credits_used']} credits; "
        f"to retry this request use --idempotency-key {key}",
        highlight=False,
        soft_wrap=True,
    )
    job = follow(api, created["job_id"], console, opts.poll_interval, opts.timeout)
    paths = []
    if opts.download and job["status"] == "completed":
        for image in job.get("images") or []:
            ext = {"image/png": "png", "image/webp": "webp"}.get(image["content_type"], "jpg")
            dest = opts.output_dir / f"{image['image_id']}.{ext}"
            if not dest.exists():
                api.download(image["url"], dest)
            paths.append(str(dest))
    return {**job, "idempotency_key": key, "paths": paths}


def follow(api: I2VClient, job_id: str, console: Console, interval: float, timeout: float) -> dict[str, Any]:
    """Poll a job until it ends (or ``timeout``), one line on stderr each time its state or progress changes."""
    deadline = time.monotonic() + timeout
    shown = ""
    while True:
        job = api.status(job_id)
        line = _state_line(job)
        if line != shown:
            console.print(line, highlight=False)
            shown = line
        if job["status"] in _TERMINAL or time.monotonic() > deadline:
            return job
        time.sleep(interval)


def _state_line(job: dict[str, Any]) -> str:
    if job["status"] == "pending" and job.get("queue_position") is not None:
        return f"pending (queue position {job['queue_position']})"
    if job["status"] == "processing" and job.get("progress") is not None:
        return f"processing {round(job['progress'] * 100)}%"
    if job["status"] == "failed":
        return f"failed: {job.get('error_message') or 'no reason given'} (refunded)"
    return str(job["status"])
