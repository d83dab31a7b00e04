"""Mirroring: copy a provider's finished video into our storage before its URL expires, then complete the job.

The download streams to a temporary file in bounded chunks (memory stays flat whatever the size), checks the
content type and that every announced byte arrived, makes a thumbnail, and stores both atomically: no partial
object is ever visible. One job is mirrored by one worker at a time (a lease in Postgres); a failed attempt is
retried by the reconciler, and after ``limits.MIRROR_ATTEMPT_LIMIT`` the job fails and is refunded.

On AWS the copy runs in its own function (functions/mirror_video.py, MIRROR_FUNCTION): fal-webhook records the
verdict, hands the job over with an asynchronous invocation (``hand_off``) and answers fal at once.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from uuid import UUID

import httpx

from shared import errors, limits, metrics
from shared.db import get_db
from shared.http import make_client
from shared.jobs import lifecycle as jobs
from shared.media import scratch
from shared.providers import registry
from shared.records import Job, load_job
from shared.settings import get_settings

log = logging.getLogger("i2v.mirror")
_CHUNK = 1 << 20
_VIDEO_TYPES = ("video/", "application/octet-stream", "binary/octet-stream")
_IMAGE_TYPES = ("image/", "application/octet-stream", "binary/octet-stream")


def download(
    url: str,
    dest: Path,
    *,
    max_bytes: int,
    client: httpx.Client | None = None,
    headers: dict[str, str] | None = None,
    accept: tuple[str, ...] = _VIDEO_TYPES,
) -> int:
    """Stream ``url`` into ``dest`` (bounded memory); refuse non-video content, oversize and truncated bodies."""
    own = client or make_client(60.0, connect=10.0, follow_redirects=True)
    written = 0
    try:
        with own.stream("GET", url, headers=headers or {}) as resp:
            if resp.status_code != 200:
                raise errors.MirrorError(f"The provider's video answered HTTP {resp.status_code}.")
            content_type = resp.headers.get("content-type", "").split(";")[0].strip().lower()
            if content_type and not content_type.startswith(accept):
                kind = "an image" if accept is _IMAGE_TYPES else "a video"
                raise errors.MirrorError(f"The provider's file is {content_type}, not {kind}.")
            declared = resp.headers.get("content-length")
            if declared and declared.isdigit() and int(declared) > max_bytes:
                raise errors.MirrorError(f"The provider's video is larger than {max_bytes} bytes.")
            with dest.open("wb") as out:
                for chunk in resp.iter_raw(_CHUNK):
                    written += len(chunk)
                    if written > max_bytes:
                        raise errors.MirrorError(f"The provider's video is larger than {max_bytes} bytes.")
                    out.write(chunk)
            if declared and declared.isdigit() and written != int(declared):
                raise errors.MirrorError(
                    f"The provider's video was cut short ({written} of {declared} bytes)."
                )
    except httpx.HTTPError as exc:
        raise errors.MirrorError(f"Downloading the provider's video failed: {type(exc).__name__}.") from exc
    finally:
        if client is None:
            own.close()
    if written == 0:
        raise errors.MirrorError("The provider's video is empty.")
    return written


def thumbnail(video: Path, dest: Path) -> bool:
    """Write a JPEG of the video's first frame; False when the file has no decodable video frame."""
    try:
        import av  # heavy; only the mirroring path needs it
    except ImportError:
        log.warning("no thumbnail: PyAV is not installed in this function")
        return False
    try:
        with av.open(str(video)) as container:
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            for frame in container.decode(stream):
                image = frame.to_image()  # type: ignore[no-untyped-call]
                image.convert("RGB").save(dest, "JPEG", quality=85)
                return True
    except (av.FFmpegError, IndexError, OSError) as exc:
        log.warning("no thumbnail: %s", exc)
    return False


def copy_video(job_id: UUID) -> None:
    """Copy a job's recorded video: hand it to MIRROR_FUNCTION when set (fal-webhook and status polls on AWS,
    whose functions are small and carry no PyAV), else copy it here."""
    if get_settings().mirror_function:
        hand_off(job_id)
    else:
        mirror_job(job_id)


def hand_off(job_id: UUID) -> bool:
    """Invoke MIRROR_FUNCTION asynchronously for ``job_id`` (Lambda queues it, retries twice on error).

    A failed hand-off is logged and left to the reconciler, which copies every recorded, uncopied video.
    """
    from shared.invoke import invoke_async

    function = str(get_settings().mirror_function)
    handed = invoke_async(function, {"job_id": str(job_id)})
    if handed:
        log.info("mirror handed off", extra={"job_id": str(job_id), "function": function, "status": 202})
    else:
        log.warning(
            "mirror hand-off failed; the reconciler will copy it",
            extra={"job_id": str(job_id), "function": function},
        )
    return handed


def mirror_job(job_id: UUID) -> bool:
    """Mirror one job whose result was recorded; True when it completed now."""
    settings = get_settings()
    db = get_db()
    if not db.call("claim_mirror", job=job_id, lease_s=settings.mirror_lease_s):
        return False
    job = load_job(job_id)  # its mirror_attempts counts this attempt
    if job is None or job.result_url is None:
        return False
    started = time.perf_counter()
    try:
        if job.makes_images:
            return _mirror_images(job, job.output_urls or [job.result_url])
        with scratch.work_dir() as tmp:
            video, thumb = Path(tmp) / "video.mp4", Path(tmp) / "thumb.jpg"
            headers = registry.get_provider(job.provider).output_headers(job.result_url)
            size = download(job.result_url, video, max_bytes=settings.mirror_max_bytes, headers=headers)
            has_thumb = thumbnail(video, thumb)
            done = jobs.complete_with_files(
                job_id,
                job.user_id,
                video,
                thumb if has_thumb else None,
                source_url=job.result_url,
                result={"bytes": size},
            )
        log.info("mirrored", extra={"job_id": str(job_id), "bytes": size})
        metrics.mirrored(job.provider, size, time.perf_counter() - started)
        return done
    except errors.MirrorError as exc:
        metrics.mirrored(job.provider, None, time.perf_counter() - started)
        db.call("release_mirror", job=job_id)
        log.warning(
            "mirroring failed",
            extra={"job_id": str(job_id), "attempt": job.mirror_attempts, "error": exc.message},
        )
        if job.mirror_attempts >= limits.MIRROR_ATTEMPT_LIMIT and job.active:
            what = "images" if job.makes_images else "video"
            jobs.fail(job_id, f"The finished {what} could not be copied: {exc.message}", kind="mirror")
        return False


def _mirror_images(job: Job, urls: list[str]) -> bool:
    """Copy each image of a finished image job into storage, then complete it (all or nothing)."""
    settings = get_settings()
    sizes = []
    with scratch.work_dir() as tmp:
        files = []
        for position, url in enumerate(urls):
            dest = Path(tmp) / f"{position}.img"
            headers = registry.get_provider(job.provider).output_headers(url)
            sizes.append(
                download(url, dest, max_bytes=settings.max_image_bytes, headers=headers, accept=_IMAGE_TYPES)
            )
            files.append(dest)
        try:
            done = jobs.complete_with_images(job, files, source_url=urls[0], result={"bytes": sizes})
        except errors.InvalidField as exc:  # not a JPEG/PNG/WebP: retried like any failed copy, then failed
            raise errors.MirrorError(f"The provider's file is not an image we keep: {exc.message}") from exc
    log.info("mirrored", extra={"job_id": str(job.job_id), "bytes": sum(sizes), "images": len(urls)})
    return done
