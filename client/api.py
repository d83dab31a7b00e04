"""A small typed client for the i2v HTTP API (used by the CLI, the demo, ``i2v bulk`` and the MCP server).

Errors::

    ApiError            the API answered with an error (``status``, ``code``, ``message``, ``details``)
      ApiUnreachable    no answer: connection refused, timeout, broken connection (after retries)

Every call is retried, bounded by attempts and total time, on network errors, 408, 429, 5xx and
``idempotency_in_flight``, honouring ``Retry-After`` up to a cap. A connection nothing accepts (refused, or
not made in time) is retried once, shortly: no server is listening there, and waiting longer rarely helps.
Retrying is safe: reads are reads, uploads are content-addressed, and generate-video carries an
Idempotency-Key.
"""

from __future__ import annotations

import hashlib
import mimetypes
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import httpx
import stamina

_TERMINAL = {"completed", "failed", "canceled"}
_RETRY_STATUSES = {408, 429, 500, 502, 503, 504}
_RETRY_AFTER_CAP_S = 30.0
_IN_FLIGHT_WAIT_S = 5.0
CONNECT_ATTEMPTS = 2  # a refused connection: the first try and one short retry
CONNECT_RETRY_WAIT_S = 0.3
_LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1")
T = TypeVar("T")


class ApiError(Exception):
    """An error answer from the API, in its JSON error shape."""

    def __init__(self, status: int, body: dict[str, Any]) -> None:
        err = body.get("error", {}) if isinstance(body, dict) else {}
        self.status = status
        self.code: str = err.get("code", "http_error")
        self.message: str = err.get("message", f"HTTP {status}")
        self.details: dict[str, Any] = err.get("details", {})
        self.request_id: str | None = err.get("request_id")
        self.retry_after: float | None = None
        super().__init__(f"{self.code}: {self.message}")


class ApiUnreachable(ApiError):
    """The API could not be reached (after retries)."""

    def __init__(self, url: str, reason: str, hint: str | None = None) -> None:
        message = (
            f"cannot reach {url} \N{EM DASH} {hint} ({reason})" if hint else f"cannot reach {url}: {reason}"
        )
        super().__init__(0, {"error": {"code": "unreachable", "message": message}})
        self.url = url


def unreachable_hint(base_url: str) -> str:
    """What to check when nothing answers at ``base_url``."""
    try:
        host = httpx.URL(base_url).host
    except httpx.InvalidURL:
        host = ""
    if host in _LOCAL_HOSTS:
        return "is `i2v serve` running?"
    return "is the API URL (I2V_API_URL or --api-url) right, and the network up?"


def _retry_after(resp: httpx.Response) -> float | None:
    raw = resp.headers.get("retry-after", "").strip()
    try:
        return min(max(float(raw), 0.0), _RETRY_AFTER_CAP_S) if raw else None
    except ValueError:
        return None


def _backoff(exc: Exception) -> bool | float:
    """Whether (and after how long, when the server said) to retry a failed call."""
    if isinstance(exc, httpx.TransportError):
        return True
    if not isinstance(exc, ApiError):
        return False
    if exc.code == "idempotency_in_flight":
        return exc.retry_after or _IN_FLIGHT_WAIT_S
    if exc.status in _RETRY_STATUSES:
        return exc.retry_after if exc.retry_after is not None else True
    return False


def _error(resp: httpx.Response) -> ApiError:
    err = ApiError(resp.status_code, _json_or_empty(resp))
    err.retry_after = _retry_after(resp)
    return err


@dataclass(frozen=True)
class Upload:
    """A stored image: its image_url, content hash and size, and whether the server had it already."""

    image_url: str
    sha256: str
    size: int
    already_uploaded: bool


class I2VClient:
    """Calls /functions/v1/* with a bearer token."""

    def __init__(
        self,
        base_url: str,
        token: str | None,
        *,
        timeout: float = 30.0,
        transport: httpx.BaseTransport | None = None,
        attempts: int = 6,
        retry_timeout: float = 90.0,
        connect_attempts: int = CONNECT_ATTEMPTS,
    ) -> None:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.base_url = base_url.rstrip("/")
        self.attempts = attempts
        self.retry_timeout = retry_timeout
        self.connect_attempts = connect_attempts
        self.http = httpx.Client(
            base_url=self.base_url, headers=headers, timeout=timeout, transport=transport
        )

    def close(self) -> None:
        """Close the connection pool."""
        self.http.close()

    def __enter__(self) -> I2VClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def retrying(self, fn: Callable[[], T], what: str, *, api: bool = False) -> T:
        """Run one request-making function, retrying transient failures; map network errors once.

        A connection that is refused (or not made in time) is tried ``connect_attempts`` times in all, the
        retry after a short wait; for the API itself (``api``) the error then says what to check.
        """
        refused = 0

        def backoff(exc: Exception) -> bool | float:
            nonlocal refused
            if isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout):
                refused += 1
                return CONNECT_RETRY_WAIT_S if refused < self.connect_attempts else False
            return _backoff(exc)

        try:
            for attempt in stamina.retry_context(
                on=backoff, attempts=self.attempts, timeout=self.retry_timeout, wait_max=10.0
            ):
                with attempt:
                    return fn()
        except httpx.TransportError as exc:
            reason = str(exc) or type(exc).__name__
            if api:
                raise ApiUnreachable(self.base_url, reason, unreachable_hint(self.base_url)) from exc
            raise ApiUnreachable(what, reason) from exc
        raise AssertionError("stamina.retry_context ended without an attempt")  # pragma: no cover

    def _call(self, method: str, name: str, **kwargs: Any) -> Any:
        def once() -> Any:
            resp = self.http.request(method, f"/functions/v1/{name}", **kwargs)
            if resp.status_code >= 400:
                raise _error(resp)
            return resp.json()

        return self.retrying(once, f"{self.base_url}/functions/v1/{name}", api=True)

    def team_call(self, method: str, name: str, **kwargs: Any) -> dict[str, Any]:
        """One call of a team endpoint (clients, campaigns, keys, webhooks) by its name, e.g. ``list-campaigns``."""
        result: dict[str, Any] = self._call(method, name, **kwargs)
        return result

    def health(self) -> dict[str, Any]:
        """GET health."""
        result: dict[str, Any] = self._call("GET", "health")
        return result

    def list_models(self) -> list[dict[str, Any]]:
        """GET list-models."""
        models: list[dict[str, Any]] = self._call("GET", "list-models")["models"]
        return models

    def credits(self, limit: int = 20) -> dict[str, Any]:
        """GET get-credits."""
        result: dict[str, Any] = self._call("GET", "get-credits", params={"limit": limit})
        return result

    def upload_image(self, path: Path, content_type: str | None = None) -> str:
        """Upload a local image through create-upload-url (skipped when already stored); return its image_url."""
        return self.store_image(path, content_type).image_url

    def store_image(self, path: Path, content_type: str | None = None) -> Upload:
        """Upload a local image through create-upload-url (nothing is sent when the server already has the same
        content from this user); say what happened."""
        data = path.read_bytes()
        if content_type is None:
            content_type = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
            if content_type == "image/jpg":
                content_type = "image/jpeg"
        target = self._store(data, content_type)
        return Upload(
            target["image_url"],
            hashlib.sha256(data).hexdigest(),
            len(data),
            bool(target.get("already_uploaded")),
        )

    def upload_target(self, data: bytes, content_type: str) -> dict[str, Any]:
        """POST create-upload-url for these bytes (their SHA-256 names them): the image_url and where to PUT."""
        body = {"content_type": content_type, "size": len(data), "sha256": hashlib.sha256(data).hexdigest()}
        target: dict[str, Any] = self._call("POST", "create-upload-url", json=body)
        return target

    def upload_bytes(self, data: bytes, content_type: str) -> str:
        """Store image bytes (nothing is sent when this user already stored the same content); return image_url."""
        image_url: str = self._store(data, content_type)["image_url"]
        return image_url

    def _store(self, data: bytes, content_type: str) -> dict[str, Any]:
        target = self.upload_target(data, content_type)
        if not target.get("already_uploaded"):

            def put() -> None:
                resp = httpx.request(
                    target["upload_method"],
                    target["upload_url"],
                    content=data,
                    headers=target.get("upload_headers") or {},
                    timeout=120,
                )
                if resp.status_code >= 400:
                    raise _error(resp)

            self.retrying(put, "the upload URL")
        return target

    def quote(self, body: dict[str, Any]) -> dict[str, Any]:
        """POST quote: what generate-video would charge for this body, and the balance after; charges nothing."""
        result: dict[str, Any] = self._call("POST", "quote", json=body)
        return result

    def list_jobs(
        self,
        kind: str | None = None,
        status: str | None = None,
        limit: int = 50,
        cursor: str | None = None,
        *,
        campaign_id: str | None = None,
        client_id: str | None = None,
    ) -> dict[str, Any]:
        """GET list-jobs: one page of the caller's jobs (``kind`` video or image; both when None; of one campaign
        or client when given), newest first, and ``next_cursor``."""
        params: dict[str, Any] = {"limit": limit}
        given = {
            "kind": kind,
            "status": status,
            "cursor": cursor,
            "campaign_id": campaign_id,
            "client_id": client_id,
        }
        params.update({name: value for name, value in given.items() if value})
        result: dict[str, Any] = self._call("GET", "list-jobs", params=params)
        return result

    def iter_jobs(
        self,
        kind: str | None = None,
        status: str | None = None,
        page_size: int = 200,
        *,
        campaign_id: str | None = None,
        client_id: str | None = None,
    ) -> Iterator[dict[str, Any]]:
        """Every job of the caller (of ``kind``, or both; of one campaign or client when given), newest first,
        following the cursor page by page."""
        cursor: str | None = None
        while True:
            page = self.list_jobs(
                kind, status, page_size, cursor, campaign_id=campaign_id, client_id=client_id
            )
            yield from page["jobs"]
            cursor = page["next_cursor"]
            if not cursor:
                return

    def job_counts(self) -> dict[str, Any]:
        """GET status: the caller's job counts by status."""
        result: dict[str, Any] = self._call("GET", "status")
        return result

    def cancel(self, job_id: str) -> dict[str, Any]:
        """POST cancel-video: stop an unfinished job (refunded)."""
        result: dict[str, Any] = self._call("POST", "cancel-video", json={"job_id": job_id})
        return result

    def generate(self, body: dict[str, Any], idempotency_key: str) -> dict[str, Any]:
        """POST generate-video with an Idempotency-Key."""
        result: dict[str, Any] = self._call(
            "POST", "generate-video", json=body, headers={"Idempotency-Key": idempotency_key}
        )
        return result

    def quote_image(self, body: dict[str, Any]) -> dict[str, Any]:
        """POST quote-image: what generate-image would charge for this body, and the balance after."""
        result: dict[str, Any] = self._call("POST", "quote-image", json=body)
        return result

    def generate_image(self, body: dict[str, Any], idempotency_key: str) -> dict[str, Any]:
        """POST generate-image with an Idempotency-Key."""
        result: dict[str, Any] = self._call(
            "POST", "generate-image", json=body, headers={"Idempotency-Key": idempotency_key}
        )
        return result

    def status(self, job_id: str) -> dict[str, Any]:
        """GET get-video-status."""
        result: dict[str, Any] = self._call("GET", "get-video-status", params={"job_id": job_id})
        return result

    def wait(self, job_id: str, *, timeout: float = 600.0, interval: float = 0.5) -> dict[str, Any]:
        """Poll a job until it is completed, failed or canceled (or the timeout passes)."""
        deadline = time.monotonic() + timeout
        while True:
            job = self.status(job_id)
            if job["status"] in _TERMINAL or time.monotonic() > deadline:
                return job
            time.sleep(interval)

    def download(self, url: str, dest: Path) -> Path:
        """Download a media URL atomically (temporary file, then rename)."""
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = dest.with_name(f".{dest.name}.{os.getpid()}.part")
        self.download_to(url, tmp)
        tmp.replace(dest)
        return dest

    def download_to(self, url: str, path: Path) -> int:
        """GET a media URL into ``path`` (overwritten), retrying transient failures; return the byte count."""

        def fetch() -> int:
            with httpx.stream("GET", url, timeout=120) as resp:
                if resp.status_code >= 400:
                    resp.read()
                    raise _error(resp)
                with path.open("wb") as out:
                    for chunk in resp.iter_bytes(1 << 20):
                        out.write(chunk)
                return path.stat().st_size

        return self.retrying(fetch, "the media URL")


def _json_or_empty(resp: httpx.Response) -> dict[str, Any]:
    try:
        body = resp.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}
