"""A job's life after it was created and paid for: handed to its provider, completed with its files in
storage, or failed with its refund. The one layer that moves a created job along (the API-facing service, the
update applier, the mirror and the reconciler all call it; it calls none of them)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any
from uuid import UUID

from shared import errors
from shared.db import get_db
from shared.media.storage import get_storage
from shared.providers.base import JobRequest
from shared.providers.registry import get_provider
from shared.records import Job, load_job
from shared.settings import get_settings

log = logging.getLogger("i2v.jobs")


def submit(job: JobRequest) -> str:
    """Hand a created job to its provider.

    A definite refusal fails the job and refunds it; an unknown outcome (the request may have reached the
    provider) is recorded and left to the webhook or the reconciler's deadline, never resubmitted.
    """
    provider = get_provider(job.route.provider)
    try:
        sub = provider.submit(job)
    except errors.SubmitOutcomeUnknown as exc:
        log.warning("submission outcome unknown", extra={"job_id": str(job.job_id), "error": exc.message})
        get_db().call("mark_submit_unknown", job=job.job_id)
        return "unknown"
    except errors.I2VError as exc:
        log.warning("submission failed", extra={"job_id": str(job.job_id), "error": exc.message})
        fail(job.job_id, f"The provider refused the job: {exc.message}", kind="submit")
        return "failed"
    if provider.remote_submit:
        get_db().call("mark_submitted", job=job.job_id, request_id=sub.request_id, urls=sub.urls or None)
    return "submitted"


def complete_with_files(
    job_id: UUID,
    user_id: UUID,
    video: Path,
    thumbnail: Path | None,
    *,
    source_url: str | None = None,
    result: dict[str, Any] | None = None,
) -> bool:
    """Mirror a finished video (and thumbnail) into storage, then mark the job completed; its last frame is kept
    as an image a later video can continue from (``video_id``)."""
    storage = get_storage()
    last = video.with_name(video.name + ".last.jpg")
    last_size = _last_frame(video, last)
    video_key = f"videos/{user_id}/{job_id}.mp4"
    storage.put_file(video_key, video, "video/mp4", move=True)
    thumb_key = None
    if thumbnail is not None and thumbnail.exists():
        thumb_key = f"thumbnails/{user_id}/{job_id}.jpg"
        storage.put_file(thumb_key, thumbnail, "image/jpeg", move=True)
    done: bool = get_db().call(
        "complete_job",
        job=job_id,
        video_key=video_key,
        thumbnail_key=thumb_key,
        source_url=source_url,
        result=result or {},
    )
    if done and last_size is not None:
        key = f"images/{user_id}/{job_id}/last.jpg"
        storage.put_file(key, last, "image/jpeg", move=True)
        get_db().call(
            "add_last_frame",
            job=job_id,
            key=key,
            content_type="image/jpeg",
            width=last_size[0],
            height=last_size[1],
        )
    return done


def _last_frame(video: Path, dest: Path) -> tuple[int, int] | None:
    """Write the video's last frame as a JPEG; its size, or None when it cannot be decoded here."""
    try:
        import av  # heavy: only where videos are stored (the mirror function, the local engine)
    except ImportError:
        return None
    try:
        last = None
        with av.open(str(video)) as container:
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            for frame in container.decode(stream):
                last = frame
        if last is None:
            return None
        image = last.to_image()  # type: ignore[no-untyped-call]
        image.convert("RGB").save(dest, "JPEG", quality=92)
        return int(image.width), int(image.height)
    except (av.FFmpegError, IndexError, OSError, ValueError) as exc:
        log.warning("no last frame: %s", exc)
        return None


def complete_with_images(
    job: Job,
    files: list[Path],
    *,
    source_url: str | None = None,
    result: dict[str, Any] | None = None,
) -> bool:
    """Store a finished image job's images (each identified by its bytes, JPEG/PNG/WebP only) and a thumbnail of
    the first, then mark the job completed with one images row per image. A video's image stage instead keeps
    its one image and moves on to the video."""
    if job.stage == "image":
        return _start_video_stage(job, files[0])
    thumb_key = _image_thumbnail(files[0], job.user_id, job.job_id)
    stored = [_store_image(path, job.user_id, job.job_id, n) for n, path in enumerate(files)]
    done: bool = get_db().call(
        "complete_image_job",
        job=job.job_id,
        images=stored,
        thumbnail_key=thumb_key,
        source_url=source_url,
        result=result or {},
    )
    return done


def _store_image(path: Path, user_id: UUID, job_id: UUID, position: int) -> dict[str, Any]:
    """Move one image a job made into storage under its generated key; what the images row records of it."""
    from shared.media import images as sniffing
    from shared.media.uploads import generated_image_key

    with path.open("rb") as fh:
        info = sniffing.sniff_file(fh, get_settings().max_image_pixels, field="output")
    key = generated_image_key(user_id, job_id, position, sniffing.CONTENT_TYPES[info.content_type])
    get_storage().put_file(key, path, info.content_type, move=True)
    return {"key": key, "content_type": info.content_type, "width": info.width, "height": info.height}


def _start_video_stage(job: Job, image: Path) -> bool:
    """A video from a prompt alone has its start image: keep it (the user paid for it), then submit the video
    with it to the route chosen when the job was created. False when the job moved on meanwhile (canceled)."""
    from shared.providers.catalog import find_model

    facts = _store_image(image, job.user_id, job.job_id, 0)
    image_url = get_storage().ref_url(facts["key"])
    if not get_db().call("advance_to_video", job=job.job_id, image=facts, image_url=image_url):
        return False
    advanced = load_job(job.job_id)  # at its video route now
    assert advanced is not None
    model = find_model(advanced.model)
    route = model.route(advanced.provider, advanced.endpoint)
    log.info("start image made; submitting the video", extra={"job_id": str(job.job_id)})
    submit(
        JobRequest(
            job.job_id, job.user_id, model, route, advanced.prompt, image_url, advanced.current_settings
        )
    )
    return True


def _image_thumbnail(image: Path, user_id: UUID, job_id: UUID) -> str | None:
    """A small JPEG of an image, stored as the job's thumbnail (None when Pillow cannot read it)."""
    from PIL import Image, UnidentifiedImageError

    dest = image.with_name(image.name + ".thumb.jpg")
    try:
        with Image.open(image) as img:
            img.thumbnail((480, 480))
            img.convert("RGB").save(dest, "JPEG", quality=85)
    except (UnidentifiedImageError, OSError) as exc:
        log.warning("no thumbnail: %s", exc, extra={"job_id": str(job_id)})
        return None
    key = f"thumbnails/{user_id}/{job_id}.jpg"
    get_storage().put_file(key, dest, "image/jpeg", move=True)
    return key


def fail(job_id: UUID, message: str, *, kind: str | None = None) -> bool:
    """Mark a job failed and refund it (once); ``kind`` records why (provider, submit, deadline, mirror, input)."""
    failed: bool = get_db().call("fail_job", job=job_id, error=message, kind=kind)
    return failed
