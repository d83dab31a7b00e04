"""Image uploads: a content-addressed cache per user, signed PUT targets that take exactly the declared bytes
once, and verification before any use.

An upload is named by its content: ``uploads/{user_id}/{sha256}.{ext}``. Its record is pending until the stored
bytes have been checked against the declared sha256, size and type, then verified for good; a verified object is
never written again (the database refuses to change a verified record, and the stores refuse a second write).

- Local storage: the local server receives the PUT itself (``LocalUploadReceiver``): signature, expiry, size
  and type are checked before the body is read; the body is hashed while it streams to a scratch file, capped
  at the declared size; only matching bytes are placed under the key, and only if nothing is there yet.
- S3: the presigned PUT signs ``x-amz-checksum-sha256`` and ``If-None-Match: *``, so S3 itself refuses other
  bytes and a second write; before first use the object is read back and checked all the same
  (``verify_stored``), and removed when it does not match so that the right bytes can still be uploaded.
"""

from __future__ import annotations

import hashlib
import logging
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import IO, Any

from shared import errors
from shared.auth import User
from shared.db import get_db
from shared.media import images
from shared.media.storage import LocalStorage, get_storage
from shared.schemas import CreateUploadRequest, CreateUploadResponse
from shared.settings import get_settings

log = logging.getLogger("i2v.uploads")


#: Where images the jobs make are stored: ``images/{user_id}/{job_id}/{position}.{ext}`` (only our code writes
#: there; no signed upload URL names it).
GENERATED_PREFIX = "images"


def generated_image_key(user_id: object, job_id: object, position: int, ext: str) -> str:
    """The storage key of one image a job made."""
    return f"{GENERATED_PREFIX}/{user_id}/{job_id}/{position}.{ext}"


def read_own_image(key: str, user_id: object, max_bytes: int) -> tuple[bytes, str]:
    """The bytes and content type of one of a user's stored images (an upload, its bytes checked against the
    content hash in its key, or an image one of their jobs made), for handing to a provider. Anything else,
    another user's included, is refused."""
    from shared.media.storage import get_storage

    upload = UploadKey.parse(key)
    owned = (upload is not None and str(upload.user_id) == str(user_id)) or key.startswith(
        f"{GENERATED_PREFIX}/{user_id}/"
    )
    if not owned:
        raise errors.InvalidField("image_url", "That stored image is not one of yours.")
    storage = get_storage()
    info = storage.info(key)
    data = storage.read(key, max_bytes)
    check_content(key, data)
    return data, (info.content_type if info and info.content_type else None) or "image/jpeg"


@dataclass(frozen=True)
class UploadKey:
    """What an upload's storage key says: whose it is, its content hash and its file extension."""

    user_id: uuid.UUID
    sha256: str
    ext: str

    @classmethod
    def parse(cls, key: str) -> UploadKey | None:
        """The parts of ``uploads/{user_id}/{sha256}.{ext}``, or None for any other key."""
        parts = key.split("/")
        if len(parts) != 3 or parts[0] != "uploads":
            return None
        sha, _, ext = parts[2].partition(".")
        try:
            user_id = uuid.UUID(parts[1])
        except ValueError:
            return None
        if str(user_id) != parts[1]:  # only the canonical spelling names an upload
            return None
        if len(sha) != 64 or any(c not in "0123456789abcdef" for c in sha) or not ext:
            return None
        return cls(user_id, sha, ext)


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
    if record.get("verified_at") or _stored_and_verified(user.id, record):
        return CreateUploadResponse(image_url=image_url, already_uploaded=True)
    target = storage.upload_target(
        record["storage_key"], record["content_type"], record["size"], sha, settings.upload_url_ttl_s
    )
    return CreateUploadResponse(
        image_url=image_url,
        already_uploaded=False,
        upload_url=target.url,
        upload_method=target.method,
        upload_headers=target.headers,
        expires_at=datetime.fromtimestamp(target.expires_at, UTC),
    )


def _stored_and_verified(user_id: uuid.UUID, record: dict[str, Any]) -> bool:
    """True when the pending upload's object is already in storage and checks out (now verified).

    An object that does not match its record is removed, so that the client can upload the right bytes.
    """
    if get_storage().info(record["storage_key"]) is None:
        return False
    try:
        _check_stored(user_id, record)
    except errors.InvalidField as exc:
        log.info("stored upload refused: %s", exc.message, extra={"event": "upload_refused"})
        return False
    return True


def verify_stored(user_id: uuid.UUID, record: dict[str, Any]) -> images.ImageInfo:
    """Check an upload's stored bytes against its record (hash, size, type, pixels), then mark it verified.

    Bytes that do not match are removed from storage (they can never be used) and refused with a 400.
    """
    if get_storage().info(record["storage_key"]) is None:
        raise errors.InvalidField("image_url", "The upload has not been completed; PUT the bytes first.")
    return _check_stored(user_id, record)


def _check_stored(user_id: uuid.UUID, record: dict[str, Any]) -> images.ImageInfo:
    """``verify_stored`` for an object known to exist."""
    settings = get_settings()
    storage = get_storage()
    key = record["storage_key"]
    data = storage.read(key, settings.max_image_bytes)
    try:
        info = images.check_upload(
            data,
            sha256=record["sha256"],
            content_type=record["content_type"],
            size=record["size"],
            max_pixels=settings.max_image_pixels,
        )
    except errors.InvalidField:
        storage.delete(key)
        raise
    storage.keep(key)
    _mark_verified(user_id, record["sha256"], key, record["size"], record["content_type"], info)
    return info


def _mark_verified(
    user_id: uuid.UUID, sha256: str, key: str, size: int, content_type: str, info: images.ImageInfo
) -> None:
    get_db().call(
        "verify_upload",
        user=user_id,
        sha256=sha256,
        key=key,
        size=size,
        content_type=content_type,
        width=info.width,
        height=info.height,
    )


def verify_upload(user: User, sha256: str) -> None:
    """Verify the caller's upload of this content before a job may use it (400 when it cannot be used)."""
    record = get_db().call("get_upload", user=user.id, sha256=sha256)
    if record is None:
        raise errors.InvalidField(
            "image_url", "No upload of yours has that URL; use create-upload-url first."
        )
    if not record.get("verified_at"):
        verify_stored(user.id, record)


def check_content(key: str, data: bytes) -> None:
    """Refuse bytes read from an upload's key unless they hash to the key's content hash (defence in depth:
    uploads are immutable once verified, so this holds unless storage was changed behind our back)."""
    parsed = UploadKey.parse(key)
    if parsed is not None and hashlib.sha256(data).hexdigest() != parsed.sha256:
        raise errors.InvalidField("image_url", "The stored upload does not match its content hash.")


class LocalUploadReceiver:
    """One signed PUT of an upload into local storage, checked before, while and after the bytes arrive.

    Construction checks everything that needs no body (signature, expiry, declared size and type, the
    Content-Length, that nothing is stored under the key yet); ``feed`` hashes and writes each chunk to a
    scratch file, refusing more bytes than declared as soon as they arrive; ``finish`` places the file under
    its key only when size, hash and image type match, then marks the upload verified. Memory held is one
    chunk, whatever the body's size.
    """

    def __init__(
        self,
        storage: LocalStorage,
        key: str,
        *,
        content_type: str,
        expires: str,
        size: str,
        sig: str,
        content_length: str | None,
    ) -> None:
        if not size.isdigit():
            raise errors.Forbidden("The upload URL is invalid.")
        storage.check_signature("PUT", key, expires, sig, f"{content_type}\n{size}")
        parsed = UploadKey.parse(key)
        if parsed is None or images.CONTENT_TYPES.get(content_type) != parsed.ext:
            raise errors.Forbidden("The upload URL is invalid.")
        self.storage, self.key, self.content_type, self.parsed = storage, key, content_type, parsed
        self.size = int(size)
        if content_length is not None and content_length.strip():
            declared = content_length.strip()
            if not declared.isdigit():
                raise errors.InvalidField("Content-Length", "The Content-Length header is not a number.")
            if int(declared) > self.size:
                raise errors.PayloadTooLarge(
                    f"This upload URL accepts {self.size} bytes.", max_bytes=self.size
                )
            if int(declared) < self.size:
                raise errors.InvalidField(
                    "size", f"This upload URL accepts exactly {self.size} bytes, not {declared}."
                )
        if storage.info(key) is not None:
            raise errors.UploadAlreadyStored()
        self._hash = hashlib.sha256()
        self.received = 0
        self._path = storage.scratch_file()
        self._out: IO[bytes] | None = self._path.open("wb")

    def feed(self, chunk: bytes) -> None:
        """Take the next piece of the body (413 as soon as the body passes the declared size)."""
        if not chunk:
            return
        self.received += len(chunk)
        if self.received > self.size:
            self.abort()
            raise errors.PayloadTooLarge(f"This upload URL accepts {self.size} bytes.", max_bytes=self.size)
        self._hash.update(chunk)
        assert self._out is not None
        self._out.write(chunk)

    def finish(self) -> None:
        """Check the whole body and store it under its key, verified; or refuse it and keep nothing."""
        try:
            assert self._out is not None
            self._out.close()
            self._out = None
            if self.received != self.size:
                raise errors.InvalidField(
                    "size", f"Received {self.received} bytes; this upload URL accepts exactly {self.size}."
                )
            if self._hash.hexdigest() != self.parsed.sha256:
                raise errors.InvalidField(
                    "sha256", "The uploaded bytes do not match the sha256 declared for this upload."
                )
            with self._path.open("rb") as fh:
                info = images.sniff_file(fh, get_settings().max_image_pixels, field="content_type")
            if info.content_type != self.content_type:
                raise errors.InvalidField(
                    "content_type", f"The uploaded bytes are {info.content_type}, not {self.content_type}."
                )
            if not self.storage.place_new(self.key, self._path, self.content_type):
                raise errors.UploadAlreadyStored()
        finally:
            self.abort()
        try:
            _mark_verified(
                self.parsed.user_id, self.parsed.sha256, self.key, self.size, self.content_type, info
            )
        except (
            errors.BadRequest,
            errors.InvalidTransition,
        ):  # no such pending upload (any more): keep nothing
            self.storage.delete(self.key)
            raise errors.Forbidden(
                "This upload URL no longer matches an upload; ask for a new one."
            ) from None

    def abort(self) -> None:
        """Drop whatever was received (nothing becomes visible)."""
        if self._out is not None:
            self._out.close()
            self._out = None
        self._path.unlink(missing_ok=True)
