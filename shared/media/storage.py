"""Object storage behind one interface: a local directory (default) or any S3-compatible store.

Keys: ``videos/{user_id}/{job_id}.mp4``, ``thumbnails/{user_id}/{job_id}.jpg``, ``uploads/{user_id}/{sha256}.{ext}``.
Local objects are served by the local server only at HMAC-signed, expiring URLs; S3 objects at presigned URLs.
Writes are atomic: a reader never sees a partial object.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import threading
import time
import uuid
from abc import ABC, abstractmethod
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any
from urllib.parse import urlencode, urlsplit

from shared import errors
from shared.settings import Settings, get_settings, public_base_url

CHUNK = 1024 * 1024
#: Object tag on uploads: ``unverified`` until a job has checked the bytes, then ``verified``.
UPLOAD_TAG = "i2v-upload"


@dataclass(frozen=True)
class ObjectInfo:
    """Size and type of a stored object."""

    size: int
    content_type: str | None


@dataclass(frozen=True)
class UploadTarget:
    """Where a client PUTs bytes."""

    url: str
    method: str
    headers: dict[str, str]
    expires_at: int


class Storage(ABC):
    """The storage contract."""

    @abstractmethod
    def put_stream(
        self,
        key: str,
        stream: IO[bytes],
        content_type: str,
        *,
        max_bytes: int | None = None,
        exact: bool = False,
    ) -> int:
        """Store a stream under ``key`` atomically; return the bytes written.

        ``max_bytes`` refuses a longer stream; with ``exact`` a shorter one too. A refused stream stores nothing.
        """

    @abstractmethod
    def read(self, key: str, max_bytes: int) -> bytes:
        """The object's bytes (refuses objects larger than ``max_bytes``)."""

    @abstractmethod
    def info(self, key: str) -> ObjectInfo | None:
        """Size and type, or None when the object does not exist."""

    @abstractmethod
    def download_url(self, key: str, ttl_s: int) -> str:
        """A URL anyone holding it may GET until it expires."""

    @abstractmethod
    def upload_target(self, key: str, content_type: str, size: int, sha256: str, ttl_s: int) -> UploadTarget:
        """A URL the client PUTs exactly these bytes to, directly, once: the store refuses other bytes (another
        hash, size or type) and any write to ``key`` once an object is there."""

    @abstractmethod
    def delete(self, key: str) -> None:
        """Remove an object (no error when there is none)."""

    @abstractmethod
    def ref_url(self, key: str) -> str:
        """The stable, unsigned URL that names the object in API requests."""

    @abstractmethod
    def key_for_url(self, url: str) -> str | None:
        """The key a ``ref_url`` (or download URL) names, or None for foreign URLs."""

    def put_file(self, key: str, path: Path, content_type: str, *, move: bool = False) -> int:
        """Store a local file under ``key``; with ``move`` the file may be consumed (renamed into place)."""
        with path.open("rb") as fh:
            return self.put_stream(key, fh, content_type)

    def keep(self, key: str) -> None:  # noqa: B027  (a no-op unless the store expires untagged uploads)
        """Mark a verified upload as kept (exempt from the expiry of abandoned uploads); a no-op by default."""


class LocalStorage(Storage):
    """Objects as files under one directory, served by the local server at signed URLs."""

    def __init__(self, root: Path, base_url: str, secret: bytes) -> None:
        self.root = root.resolve()
        self.base_url = base_url.rstrip("/")
        self._secret = secret

    def path(self, key: str) -> Path:
        """The file behind a key; refuses keys that escape the root."""
        path = (self.root / key).resolve()
        if not key or ".." in key.split("/") or not path.is_relative_to(self.root):
            raise errors.BadRequest("Invalid storage key.")
        return path

    def put_stream(
        self,
        key: str,
        stream: IO[bytes],
        content_type: str,
        *,
        max_bytes: int | None = None,
        exact: bool = False,
    ) -> int:
        path = self.path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.part")
        written = 0
        try:
            with tmp.open("wb") as out:
                while chunk := stream.read(CHUNK):
                    written += len(chunk)
                    if max_bytes is not None and written > max_bytes:
                        raise errors.PayloadTooLarge(f"The object is larger than {max_bytes} bytes.")
                    out.write(chunk)
            _check_exact(written, max_bytes, exact)
            tmp.with_suffix(".type").write_text(content_type)
            os.replace(tmp.with_suffix(".type"), path.with_name(path.name + ".type"))
            os.replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)
            tmp.with_suffix(".type").unlink(missing_ok=True)
        return written

    def put_file(self, key: str, path: Path, content_type: str, *, move: bool = False) -> int:
        if not move:
            return super().put_file(key, path, content_type)
        target = self.path(key)
        target.parent.mkdir(parents=True, exist_ok=True)
        size = path.stat().st_size
        type_tmp = target.with_name(f".{target.name}.{uuid.uuid4().hex}.type")
        type_tmp.write_text(content_type)
        os.replace(type_tmp, target.with_name(target.name + ".type"))
        try:
            os.replace(path, target)  # same filesystem: no copy, and atomic
        except OSError:
            return super().put_file(key, path, content_type)
        return size

    def place_new(self, key: str, path: Path, content_type: str) -> bool:
        """Move a finished file to ``key`` unless an object is already there (atomic, never overwrites).

        Returns False, leaving ``path`` in place, when ``key`` exists: a stored object is never replaced.
        """
        target = self.path(key)
        target.parent.mkdir(parents=True, exist_ok=True)
        type_file = target.with_name(target.name + ".type")
        if not type_file.exists():
            type_tmp = target.with_name(f".{target.name}.{uuid.uuid4().hex}.type")
            type_tmp.write_text(content_type)
            os.replace(type_tmp, type_file)
        try:
            os.link(path, target)  # fails with FileExistsError when the key is taken: no second write, ever
        except FileExistsError:
            return False
        path.unlink(missing_ok=True)
        return True

    def scratch_file(self) -> Path:
        """A new, unique path on the storage's filesystem for a file that may later be placed."""
        scratch = self.root / ".incoming"
        scratch.mkdir(parents=True, exist_ok=True)
        return scratch / f"{uuid.uuid4().hex}.part"

    def delete(self, key: str) -> None:
        path = self.path(key)
        path.unlink(missing_ok=True)
        path.with_name(path.name + ".type").unlink(missing_ok=True)

    def read(self, key: str, max_bytes: int) -> bytes:
        path = self.path(key)
        if not path.is_file():
            raise errors.NotFound("No such object.")
        if path.stat().st_size > max_bytes:
            raise errors.PayloadTooLarge(f"The object is larger than {max_bytes} bytes.")
        return path.read_bytes()

    def info(self, key: str) -> ObjectInfo | None:
        path = self.path(key)
        if not path.is_file():
            return None
        type_file = path.with_name(path.name + ".type")
        return ObjectInfo(path.stat().st_size, type_file.read_text() if type_file.exists() else None)

    def sign(self, method: str, key: str, expires: int, extra: str = "") -> str:
        """The HMAC that authorises one method on one key until ``expires``."""
        msg = f"{method}\n{key}\n{expires}\n{extra}".encode()
        return hmac.new(self._secret, msg, hashlib.sha256).hexdigest()

    def check_signature(self, method: str, key: str, expires: str, sig: str, extra: str = "") -> None:
        """Raise ``Forbidden`` unless the signature is valid and unexpired."""
        try:
            exp = int(expires)
        except ValueError as exc:
            raise errors.Forbidden("The URL signature is invalid.") from exc
        if exp < time.time():
            raise errors.Forbidden("The URL has expired.")
        if not hmac.compare_digest(self.sign(method, key, exp, extra), sig):
            raise errors.Forbidden("The URL signature is invalid.")

    def download_url(self, key: str, ttl_s: int) -> str:
        exp = int(time.time()) + ttl_s
        return f"{self.base_url}/media/{key}?" + urlencode({"exp": exp, "sig": self.sign("GET", key, exp)})

    def upload_target(self, key: str, content_type: str, size: int, sha256: str, ttl_s: int) -> UploadTarget:
        # The key names the hash; the server receiving the PUT checks the bytes against it before they become
        # visible, and never writes a key twice (shared.media.uploads.LocalUploadReceiver).
        exp = int(time.time()) + ttl_s
        sig = self.sign("PUT", key, exp, f"{content_type}\n{size}")
        url = f"{self.base_url}/storage/v1/upload/{key}?" + urlencode({"exp": exp, "size": size, "sig": sig})
        return UploadTarget(url, "PUT", {"Content-Type": content_type}, exp)

    def ref_url(self, key: str) -> str:
        return f"{self.base_url}/media/{key}"

    def key_for_url(self, url: str) -> str | None:
        try:
            parts = urlsplit(url)
        except ValueError:  # e.g. a broken IPv6 literal: not one of ours
            return None
        prefix = urlsplit(self.base_url + "/media/")
        if (parts.scheme, parts.netloc) != (prefix.scheme, prefix.netloc) or not parts.path.startswith(
            prefix.path
        ):
            return None
        return parts.path[len(prefix.path) :] or None


class S3Storage(Storage):
    """Objects in an S3-compatible bucket (AWS S3, Supabase Storage's S3 endpoint, MinIO) through boto3."""

    def __init__(
        self,
        bucket: str,
        *,
        endpoint_url: str | None,
        region: str,
        access_key_id: str | None = None,
        secret_access_key: str | None = None,
        tag_uploads: bool | None = None,
    ) -> None:
        """``tag_uploads`` (default: on AWS S3, off for other endpoints, which may not support object tags) tags
        each upload ``i2v-upload=unverified`` until a job verifies it; serverless.yml's lifecycle rule expires
        the objects still so tagged."""
        import boto3  # imported here: the local default never pays for it
        from botocore.config import Config

        self.bucket = bucket
        self.endpoint_url = endpoint_url.rstrip("/") if endpoint_url else None
        self.region = region
        self.tag_uploads = endpoint_url is None if tag_uploads is None else tag_uploads
        config = Config(
            signature_version="s3v4",
            s3={"addressing_style": "path"} if endpoint_url else {},
            retries={"max_attempts": 3, "mode": "standard"},
        )
        keys = (
            {"aws_access_key_id": access_key_id, "aws_secret_access_key": secret_access_key}
            if access_key_id and secret_access_key
            else {}
        )
        self.client: Any = boto3.client(
            "s3", endpoint_url=endpoint_url or None, region_name=region, config=config, **keys
        )

    def put_stream(
        self,
        key: str,
        stream: IO[bytes],
        content_type: str,
        *,
        max_bytes: int | None = None,
        exact: bool = False,
    ) -> int:
        counter = _CountingReader(stream, max_bytes, exact)
        # upload_fileobj streams in parts; the object appears only when the whole upload completes, and a
        # stream refused half-way aborts the multipart upload.
        with _s3_errors():
            self.client.upload_fileobj(counter, self.bucket, key, ExtraArgs={"ContentType": content_type})
        return counter.count

    def read(self, key: str, max_bytes: int) -> bytes:
        info = self.info(key)
        if info is None:
            raise errors.NotFound("No such object.")
        if info.size > max_bytes:
            raise errors.PayloadTooLarge(f"The object is larger than {max_bytes} bytes.")
        with _s3_errors():
            body = self.client.get_object(Bucket=self.bucket, Key=key)["Body"]
            return bytes(body.read())

    def info(self, key: str) -> ObjectInfo | None:
        try:
            with _s3_errors():
                head = self.client.head_object(Bucket=self.bucket, Key=key)
        except errors.NotFound:
            return None
        return ObjectInfo(int(head["ContentLength"]), head.get("ContentType"))

    def download_url(self, key: str, ttl_s: int) -> str:
        return str(
            self.client.generate_presigned_url(
                "get_object", Params={"Bucket": self.bucket, "Key": key}, ExpiresIn=ttl_s
            )
        )

    def upload_target(self, key: str, content_type: str, size: int, sha256: str, ttl_s: int) -> UploadTarget:
        # Signed into the URL, so the PUT must carry them: S3 refuses bytes whose SHA-256 differs
        # (x-amz-checksum-sha256) and any write once the key exists (If-None-Match: *, a conditional write).
        checksum = base64.b64encode(bytes.fromhex(sha256)).decode()
        params = {
            "Bucket": self.bucket,
            "Key": key,
            "ContentType": content_type,
            "ContentLength": size,
            "ChecksumSHA256": checksum,
            "IfNoneMatch": "*",
        }
        headers = {"Content-Type": content_type, "x-amz-checksum-sha256": checksum, "If-None-Match": "*"}
        if self.tag_uploads:  # signed into the URL: the PUT must carry the same x-amz-tagging header
            params["Tagging"] = headers["x-amz-tagging"] = f"{UPLOAD_TAG}=unverified"
        url = self.client.generate_presigned_url(
            "put_object", Params=params, ExpiresIn=ttl_s, HttpMethod="PUT"
        )
        return UploadTarget(str(url), "PUT", headers, int(time.time()) + ttl_s)

    def delete(self, key: str) -> None:
        with _s3_errors():
            self.client.delete_object(Bucket=self.bucket, Key=key)

    def keep(self, key: str) -> None:
        if self.tag_uploads:
            tags = {"TagSet": [{"Key": UPLOAD_TAG, "Value": "verified"}]}
            with _s3_errors():
                self.client.put_object_tagging(Bucket=self.bucket, Key=key, Tagging=tags)

    def ref_url(self, key: str) -> str:
        if self.endpoint_url:
            return f"{self.endpoint_url}/{self.bucket}/{key}"
        return f"https://{self.bucket}.s3.{self.region}.amazonaws.com/{key}"

    def key_for_url(self, url: str) -> str | None:
        base = self.ref_url("")
        clean = url.split("?", 1)[0]
        return clean[len(base) :] or None if clean.startswith(base) else None


@contextmanager
def _s3_errors() -> Iterator[None]:
    """boto's errors as ours, in one place: a missing object is NotFound, anything else ServiceUnavailable."""
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        yield
    except ClientError as exc:
        code = str(exc.response.get("Error", {}).get("Code", ""))
        if code in ("404", "NoSuchKey", "NotFound"):
            raise errors.NotFound("No such object.") from exc
        raise errors.ServiceUnavailable(f"Object storage refused the request ({code or 'error'}).") from exc
    except BotoCoreError as exc:
        raise errors.ServiceUnavailable("Object storage is not reachable.") from exc


class _CountingReader:
    """Wraps a stream, counting bytes and refusing more than a limit (or, when exact, fewer at the end)."""

    def __init__(self, stream: IO[bytes], limit: int | None, exact: bool) -> None:
        self._stream, self._limit, self._exact, self.count = stream, limit, exact, 0

    def read(self, size: int = -1) -> bytes:
        chunk = self._stream.read(size)
        self.count += len(chunk)
        if self._limit is not None and self.count > self._limit:
            raise errors.PayloadTooLarge(f"The object is larger than {self._limit} bytes.")
        if not chunk:
            _check_exact(self.count, self._limit, self._exact)
        return chunk


def _check_exact(written: int, expected: int | None, exact: bool) -> None:
    if exact and expected is not None and written != expected:
        raise errors.InvalidField("size", f"Received {written} bytes; expected {expected}.")


_current: Storage | None = None
_lock = threading.Lock()


def configure(settings: Settings | None = None) -> Storage:
    """Build the process-wide storage from settings (local objects are served at ``public_base_url()``)."""
    global _current
    settings = settings or get_settings()
    with _lock:
        if settings.storage_bucket:
            _current = S3Storage(
                settings.storage_bucket,
                endpoint_url=settings.s3_endpoint_url,
                region=settings.s3_region,
                access_key_id=settings.s3_access_key_id,
                secret_access_key=settings.s3_secret_access_key,
            )
        else:
            _current = LocalStorage(settings.media_dir, public_base_url(), settings.signing_secret())
        return _current


def get_storage() -> Storage:
    """The process-wide storage (configured from settings on first use)."""
    with _lock:
        current = _current
    return current or configure()
