"""fal.ai: queue submission with a completion webhook, status, result and cancel; images handed over by URL.

Queue calls go through ``providers._http`` (bounded retries honouring Retry-After, a circuit breaker): fal-client's
own fixed retry loop (ten attempts, fixed sleeps, no Retry-After) cannot be bounded to a function's time limit.
The CDN upload of images kept in local storage uses the official fal-client. URLs follow FAL_QUEUE_URL,
FAL_REST_URL and FAL_CDN_URL.
"""

from __future__ import annotations

import hashlib
import logging
import threading
from collections.abc import Mapping
from typing import ClassVar
from urllib.parse import quote

import httpx

from shared import errors
from shared import http as _http
from shared.db import get_db
from shared.media.storage import LocalStorage, get_storage
from shared.media.uploads import UploadKey, read_own_image
from shared.providers.base import (
    CancelAnswer,
    JobRef,
    JobRequest,
    Provider,
    ProviderUpdate,
    Submission,
    UpdateKind,
)
from shared.providers.fal.signature import FalJwks, FalSignatureError, verify_fal_webhook
from shared.settings import get_settings, public_base_url
from shared.web import json_body

log = logging.getLogger("i2v.fal")
_IMAGE_URL_TTL_S = 6 * 3600
_fal_client_lock = threading.Lock()


def webhook_url(job_id: object) -> str:
    """Where fal delivers the completion of one job (the job id lets a result be re-attached after a crash)."""
    return f"{public_base_url()}/functions/v1/fal-webhook?job_id={job_id}"


def app_path(endpoint: str) -> str:
    """``owner/app`` of an endpoint id (status, result and cancel URLs drop the subpath)."""
    parts = endpoint.split("/")
    if parts[0] in ("workflows", "comfy"):
        return "/".join(parts[:3])
    if len(parts) == 1:
        number, _, alias = parts[0].partition("-")
        if number.isdigit() and alias:
            return f"{number}/{alias}"
        raise ValueError(f"invalid fal endpoint id {endpoint!r}")
    return "/".join(parts[:2])


class FalProvider(Provider):
    """Jobs on fal's queue."""

    name: ClassVar[str] = "fal"
    remote_submit: ClassVar[bool] = True

    def __init__(self, client: httpx.Client | None = None) -> None:
        self._client = client
        self._jwks_by_url: dict[str, FalJwks] = {}
        self._cdn_urls: dict[
            tuple[str, str], str
        ] = {}  # (user, content hash) -> fal CDN URL (also in Postgres)

    @property
    def client(self) -> httpx.Client:
        """The HTTP client (created on first use)."""
        if self._client is None:
            self._client = _http.make_client()
        return self._client

    def unavailable_reason(self) -> str | None:
        if not get_settings().fal_key:
            return "fal is not configured (set FAL_KEY)"
        return None

    def _headers(self) -> dict[str, str]:
        return {"Authorization": f"Key {get_settings().fal_key}", "Accept": "application/json"}

    def _queue(self, path: str) -> str:
        return f"{get_settings().fal_queue_url.rstrip('/')}/{path.lstrip('/')}"

    def submit(self, job: JobRequest) -> Submission:
        image = self.image_for_fal(job.image_url, job.user_id) if job.image_url else None
        refs = [self.image_for_fal(url, job.user_id) for url in job.input_images]
        body = job.route.provider_input(job.prompt, image, job.settings, refs)
        url = self._queue(job.endpoint) + "?fal_webhook=" + quote(webhook_url(job.job_id), safe="")
        resp = _http.request(
            self.client, "POST", url, provider=self.name, idempotent=False, json=body, headers=self._headers()
        )
        if resp.status_code >= 400:
            raise errors.ProviderJobFailed(
                f"fal refused the job: {_http.error_detail(resp)}", provider=self.name
            )
        data = resp.json()
        urls = {k: str(data[k]) for k in ("status_url", "response_url", "cancel_url") if data.get(k)}
        return Submission(request_id=str(data["request_id"]), urls=urls)

    def _urls(self, job: JobRef) -> dict[str, str]:
        base = self._queue(f"{app_path(job.route.endpoint)}/requests/{job.request_id}")
        return {
            "status_url": job.urls.get("status_url") or f"{base}/status",
            "response_url": job.urls.get("response_url") or base,
            "cancel_url": job.urls.get("cancel_url") or f"{base}/cancel",
        }

    def status(self, job: JobRef) -> ProviderUpdate:
        """The queue status of a submitted job (with logs); COMPLETED is a succeeded update without output."""
        url = self._urls(job)["status_url"]
        resp = _http.request(
            self.client,
            "GET",
            url,
            provider=self.name,
            idempotent=True,
            params={"logs": "1"},
            headers=self._headers(),
        )
        if resp.status_code == 404:
            return ProviderUpdate(
                UpdateKind.UNKNOWN, job.request_id, message="fal does not know this request"
            )
        if resp.status_code >= 400:
            raise errors.ProviderUnavailable(
                f"fal status failed: {_http.error_detail(resp)}", provider=self.name
            )
        data = resp.json()
        logs = tuple(entry for entry in (data.get("logs") or []) if isinstance(entry, dict))[-20:]
        state = data.get("status")
        if state == "COMPLETED" and data.get("error"):
            return ProviderUpdate(
                UpdateKind.FAILED, job.request_id, logs=logs, message=f"fal: {data['error']}"
            )
        kind = {
            "IN_QUEUE": UpdateKind.QUEUED,
            "IN_PROGRESS": UpdateKind.RUNNING,
            "COMPLETED": UpdateKind.SUCCEEDED,
        }.get(str(state), UpdateKind.UNKNOWN)
        return ProviderUpdate(kind, job.request_id, queue_position=data.get("queue_position"), logs=logs)

    def result(self, job: JobRef) -> ProviderUpdate:
        """The model output of a completed job, or its model error as a failed update."""
        url = self._urls(job)["response_url"]
        resp = _http.request(
            self.client, "GET", url, provider=self.name, idempotent=True, headers=self._headers()
        )
        if 400 <= resp.status_code < 500:
            return ProviderUpdate(
                UpdateKind.FAILED,
                job.request_id,
                message=f"fal: fal could not generate this video: {_http.error_detail(resp)}",
            )
        return ProviderUpdate(UpdateKind.SUCCEEDED, job.request_id, output=resp.json())

    def cancel(self, job: JobRef) -> CancelAnswer:
        """Ask fal to cancel; says whether it was accepted, too late, or unknown."""
        url = self._urls(job)["cancel_url"]
        resp = _http.request(
            self.client, "PUT", url, provider=self.name, idempotent=True, headers=self._headers()
        )
        if resp.status_code < 300:
            return "requested"
        status = _http.json_field(resp, "status")
        if resp.status_code == 400 and status == "ALREADY_COMPLETED":
            return "already_completed"
        if resp.status_code == 404:
            return "not_found"
        raise errors.ProviderError(f"fal cancel failed: {_http.error_detail(resp)}", provider=self.name)

    def parse_webhook(self, headers: Mapping[str, str], body: bytes) -> ProviderUpdate:
        """Verify fal's Ed25519 signature over the raw body, then read the delivery."""
        try:
            verify_fal_webhook(dict(headers), body, self._jwks())
        except FalSignatureError as exc:
            raise errors.InvalidSignature(f"The fal webhook signature is not valid: {exc}") from exc
        event = json_body(body)  # bounded nesting, no NUL or unpaired surrogate, finite numbers (else 400)
        if not isinstance(event, dict):
            raise errors.InvalidField("body", "The webhook body is not a JSON object.")
        lowered = {k.lower(): v for k, v in headers.items()}
        request_id = str(event.get("request_id") or "")
        if not request_id or request_id != lowered.get("x-fal-webhook-request-id"):
            raise errors.InvalidField(
                "request_id", "The webhook body's request_id does not match the signed header."
            )
        payload = event.get("payload")
        if event.get("status") == "OK" and payload is not None:
            return ProviderUpdate(UpdateKind.SUCCEEDED, request_id, output=payload)
        if isinstance(payload, dict) and payload.get("error_type") == "client_cancelled":
            return ProviderUpdate(UpdateKind.CANCELED, request_id)
        message = (
            event.get("error") or event.get("payload_error") or _http.describe_error(payload) or "failed"
        )
        detail = _http.describe_error(payload)
        if detail and detail not in str(message):
            message = f"{message}: {detail}"
        return ProviderUpdate(UpdateKind.FAILED, request_id, message=f"fal: {message}")

    def _jwks(self) -> FalJwks:
        url = get_settings().fal_jwks_url
        if url not in self._jwks_by_url:
            self._jwks_by_url[url] = FalJwks(url)
        return self._jwks_by_url[url]

    def image_for_fal(self, image_url: str, user_id: object) -> str:
        """A URL fal can fetch: public URLs pass through; our objects are presigned (S3) or put on fal's CDN."""
        storage = get_storage()
        key = storage.key_for_url(image_url)
        if key is None:
            return image_url
        if not isinstance(storage, LocalStorage):
            return storage.download_url(key, _IMAGE_URL_TTL_S)
        # The CDN cache is keyed by the hash of bytes we read and checked, and consulted only for content the
        # job's owner stored and verified: another user's file can never stand in for this one.
        upload = UploadKey.parse(key)
        if upload is None:  # an image one of the owner's jobs made: read (owner checked) and sent as it is
            try:
                data, content_type = read_own_image(key, user_id, get_settings().max_image_bytes)
            except errors.InvalidField as exc:
                raise errors.ProviderJobFailed(exc.message, provider=self.name) from exc
            return self._upload_to_cdn(data, content_type, key.replace("/", "-"))
        sha = upload.sha256
        memo = (str(user_id), sha)
        cached = self._cdn_urls.get(memo) or get_db().call(
            "get_provider_upload", provider=self.name, user=user_id, sha256=sha
        )
        if cached:
            self._cdn_urls[memo] = str(cached)
            return str(cached)
        info = storage.info(key)
        data = storage.read(key, get_settings().max_image_bytes)
        if hashlib.sha256(data).hexdigest() != sha:
            raise errors.ProviderJobFailed(
                "The stored image does not match its content hash.", provider=self.name
            )
        url = self._upload_to_cdn(
            data, (info.content_type if info else None) or "image/jpeg", key.rsplit("/", 1)[-1]
        )
        get_db().call("put_provider_upload", provider=self.name, sha256=sha, url=url)
        self._cdn_urls[memo] = url
        return url

    def _upload_to_cdn(self, data: bytes, content_type: str, file_name: str) -> str:
        import fal_client
        import fal_client.client as fal_module

        settings = get_settings()
        with _fal_client_lock:
            # fal-client has no host argument: its documented seam is these module globals.
            fal_module.REST_URL = settings.fal_rest_url.rstrip("/")
            fal_module.CDN_URL = settings.fal_cdn_url.rstrip("/")
            client = fal_client.SyncClient(key=settings.fal_key)
            try:
                return str(client.upload(data, content_type, file_name))
            except (httpx.HTTPError, fal_client.client.FalClientHTTPError) as exc:
                raise errors.ProviderUnavailable(
                    "Uploading the image to fal's CDN failed.", provider=self.name
                ) from exc


_provider: FalProvider | None = None


def get_fal() -> FalProvider:
    """The process-wide fal provider."""
    global _provider
    if _provider is None:
        _provider = FalProvider()
    return _provider
