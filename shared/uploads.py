"""Image uploads: a content-addressed cache per user, signed PUT targets, verification before use."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import IO

from shared import errors, images
from shared.auth import User
from shared.db import get_db
from shared.models import CreateUploadRequest, CreateUploadResponse
from shared.settings import get_settings
from shared.storage import LocalStorage, get_storage


def upload_key(user: User, sha256: str, content_type: str) -> str:
    """Where an upload of this content lives."""
    return f"uploads/{user.id}/{sha256}.{images.CONTENT_TYPES[content_type]}"


def create_upload(user: User, req: CreateUploadRequest) -> CreateUploadResponse:
    """The stored copy when this user already uploaded the content, else a signed PUT target for it."""
    settings = get_settings()
    if req.size > settings.max_image_bytes:
        raise errors.InvalidField(
            "size",
            f"Images may be at most {settings.max_image_bytes} bytes.",
            max_bytes=settings.max_image_bytes,
        )
    sha = req.sha256.lower()
    storage = get_storage()
    record = get_db().call(
        "begin_upload",
        user=user.id,
        sha256=sha,
        content_type=req.content_type,
        size=req.size,
        key=upload_key(user, sha, req.content_type),
        signup_credits=settings.signup_credits,
    )
    image_url = storage.ref_url(record["storage_key"])
    if record.get("verified_at"):
        return CreateUploadResponse(image_url=image_url, already_uploaded=True)
    target = storage.upload_target(
        record["storage_key"], record["content_type"], record["size"], settings.upload_url_ttl_s
    )
    return CreateUploadResponse(
        image_url=image_url,
        already_uploaded=False,
        upload_url=target.url,
        upload_method=target.method,
        upload_headers=target.headers,
        expires_at=datetime.fromtimestamp(target.expires_at, UTC),
    )


def receive_local_upload(
    storage: LocalStorage,
    key: str,
    stream: IO[bytes],
    *,
    content_type: str,
    expires: str,
    size: str,
    sig: str,
) -> None:
    """Store the body of a signed PUT to local storage, refusing a wrong type or size."""
    if not size.isdigit():
        raise errors.Forbidden("The upload URL is invalid.")
    storage.check_signature("PUT", key, expires, sig, f"{content_type}\n{size}")
    storage.put_stream(key, stream, content_type, max_bytes=int(size), exact=True)
