"""Replicate: predictions of official models with signed completion webhooks; status, cancel and orphan search.

Calls go through ``shared.http`` (bounded retries honouring Retry-After, a circuit breaker) rather than the official
``replicate`` client: the v1 client cannot be bounded to a function's time limit, fails to read a prediction in the
``aborted`` status that ``Cancel-After`` produces, and never shares our breaker. The wire format is the one the
official client speaks (tests run that client unmodified against the same emulator).

Replicate has no idempotency key for creating a prediction. A crash after the create reached Replicate but before
its id was recorded is repaired two ways, so that a job never pays for a second prediction: the webhook URL carries
our job id (its first delivery re-attaches the prediction), and before the reconciler ever submits a job again it
lists the recent predictions and re-attaches one that matches (``find_submission``).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from datetime import datetime, timedelta
from typing import Any, ClassVar
from urllib.parse import urlsplit

import httpx

from shared import errors
from shared import http as _http
from shared.media.storage import LocalStorage, get_storage
from shared.media.uploads import read_own_image
from shared.providers.base import (
    CancelAnswer,
    JobRef,
    JobRequest,
    Provider,
    ProviderUpdate,
    Submission,
    UpdateKind,
)
from shared.providers.replicate.signature import SignatureError, verify
from shared.settings import get_settings, public_base_url
from shared.web import json_body

log = logging.getLogger("i2v.replicate")
EVENTS = ("start", "completed")  # no output/logs events: a video's output arrives once, with the completion
_IMAGE_URL_TTL_S = 6 * 3600
_SECRET_REFRESH_S = 60.0  # a signature that fails with a cached secret refetches it at most this often
_LIST_PAGES = 10  # the orphan search reads at most this many pages (100 predictions each), newest first
_LIST_SLACK = timedelta(minutes=2)  # clock skew between us and Replicate
_DELIVERY_HOSTS = ("replicate.delivery",)


def webhook_url(job_id: object) -> str:
    """Where Replicate delivers one job's events (the job id re-attaches a prediction after a crash)."""
    return f"{public_base_url()}/functions/v1/replicate-webhook?job_id={job_id}"


def cancel_after(seconds: int) -> str:
    """A ``Cancel-After`` value: whole minutes as ``Nm``, else seconds as ``Ns`` (the documented forms)."""
    seconds = max(1, int(seconds))
    return f"{seconds // 60}m" if seconds % 60 == 0 else f"{seconds}s"


class ReplicateProvider(Provider):
    """Jobs as Replicate predictions."""

    name: ClassVar[str] = "replicate"
    remote_submit: ClassVar[bool] = True

    def __init__(self, client: httpx.Client | None = None) -> None:
        self._client = client
        self._secret: tuple[str, str, float] | None = None  # (api url, secret, fetched at)
        self._secret_lock = threading.Lock()

    @property
    def client(self) -> httpx.Client:
        """The HTTP client (created on first use)."""
        if self._client is None:
            self._client = _http.make_client()
        return self._client

    def unavailable_reason(self) -> str | None:
        if not get_settings().replicate_api_token:
            return "Replicate is not configured (set REPLICATE_API_TOKEN)"
        return None

    # ------------------------------------------------------------------ calls

    def _api(self, path: str) -> str:
        return f"{get_settings().replicate_api_url.rstrip('/')}/v1/{path.lstrip('/')}"

    def _headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {get_settings().replicate_api_token}", "Accept": "application/json"}

    def _call(self, method: str, url: str, *, idempotent: bool, **kwargs: Any) -> httpx.Response:
        headers = {**self._headers(), **kwargs.pop("headers", {})}
        return _http.request(
            self.client, method, url, provider=self.name, idempotent=idempotent, headers=headers, **kwargs
        )

    def _own_url(self, url: str | None) -> bool:
        """True for a URL on the configured API (our token is sent only there)."""
        return bool(url) and str(url).startswith(self._api(""))

    def submit(self, job: JobRequest) -> Submission:
        image = self.image_for_replicate(job.image_url, job.user_id) if job.image_url else None
        refs = [self.image_for_replicate(url, job.user_id) for url in job.input_images]
        body = {
            "input": job.route.provider_input(job.prompt, image, job.settings, refs),
            "webhook": webhook_url(job.job_id),
            "webhook_events_filter": list(EVENTS),
        }
        headers = {"Cancel-After": cancel_after(get_settings().job_deadline_s)}  # never Prefer: wait
        resp = self._call(
            "POST",
            self._api(f"models/{job.endpoint}/predictions"),
            idempotent=False,
            json=body,
            headers=headers,
        )
        if resp.status_code >= 400:
            raise errors.ProviderJobFailed(
                f"Replicate refused the job: {_http.error_detail(resp)}", provider=self.name
            )
        return _submission(resp.json())

    def _get(self, job: JobRef) -> dict[str, Any] | None:
        url = job.urls.get("get")
        if not self._own_url(url):
            url = self._api(f"predictions/{job.request_id}")
        resp = self._call("GET", str(url), idempotent=True)
        if resp.status_code == 404:
            return None
        if resp.status_code >= 400:
            raise errors.ProviderUnavailable(
                f"Replicate status failed: {_http.error_detail(resp)}", provider=self.name
            )
        data = resp.json()
        return data if isinstance(data, dict) else None

    def status(self, job: JobRef) -> ProviderUpdate:
        """The prediction now: queued, running (with its last log lines), or its outcome."""
        prediction = self._get(job)
        if prediction is None:
            return ProviderUpdate(
                UpdateKind.UNKNOWN, job.request_id, message="Replicate does not know this job"
            )
        return update_from(prediction)

    def result(self, job: JobRef) -> ProviderUpdate:
        """The outcome of a finished prediction (the status carries the output already)."""
        return self.status(job)

    def cancel(self, job: JobRef) -> CancelAnswer:
        """Cancel the prediction; says whether it was accepted, too late, or unknown."""
        url = job.urls.get("cancel")
        if not self._own_url(url):
            url = self._api(f"predictions/{job.request_id}/cancel")
        resp = self._call("POST", str(url), idempotent=True)
        if resp.status_code == 404:
            return "not_found"
        if resp.status_code >= 400:
            raise errors.ProviderError(
                f"Replicate cancel failed: {_http.error_detail(resp)}", provider=self.name
            )
        status = _http.json_field(resp, "status")
        return "already_completed" if status == "succeeded" else "requested"

    def find_submission(
        self, job: JobRequest, since: datetime, taken: Callable[[str], bool] = lambda _: False
    ) -> Submission | None:
        """A prediction for this job Replicate has but we never recorded, found among the predictions created
        since ``since`` and not ``taken`` by another job: the one whose webhook names the job or, when the
        listing omits webhooks, whose input (its URLs aside) is this job's."""
        expected = _without_urls(job.route.provider_input(job.prompt, None, job.settings))
        after = (since - _LIST_SLACK).isoformat().replace("+00:00", "Z")
        url: str | None = self._api("predictions")
        params: dict[str, str] | None = {"created_after": after}
        for _ in range(_LIST_PAGES):
            if url is None or not self._own_url(url):
                break
            resp = self._call("GET", url, idempotent=True, params=params)
            if resp.status_code >= 400:
                raise errors.ProviderUnavailable(
                    f"Replicate listing failed: {_http.error_detail(resp)}", provider=self.name
                )
            page = resp.json()
            for prediction in page.get("results") or []:
                if _matches(prediction, job, expected) and not taken(str(prediction["id"])):
                    return _submission(prediction)
            url, params = page.get("next"), None
        return None

    def output_headers(self, url: str) -> dict[str, str]:
        """Replicate's output files may ask for the API token: sent to its delivery hosts and its API only."""
        host = urlsplit(url).hostname or ""
        api_host = urlsplit(get_settings().replicate_api_url).hostname
        if host == api_host or any(host == h or host.endswith("." + h) for h in _DELIVERY_HOSTS):
            return self._headers()
        return {}

    # ------------------------------------------------------------------ webhooks

    def parse_webhook(self, headers: Mapping[str, str], body: bytes) -> ProviderUpdate:
        """Verify the Standard Webhooks signature over the raw body, then read the prediction it carries."""
        secret = self._webhook_secret()
        try:
            verify(secret, headers, body)
        except SignatureError as first:
            fresh = self._webhook_secret(refresh=True)
            try:
                if fresh == secret:
                    raise first
                verify(fresh, headers, body)
            except SignatureError as exc:
                raise errors.InvalidSignature(f"The Replicate webhook signature is not valid: {exc}") from exc
        prediction = json_body(
            body
        )  # bounded nesting, no NUL or unpaired surrogate, finite numbers (else 400)
        if not isinstance(prediction, dict) or not isinstance(prediction.get("id"), str):
            raise errors.InvalidField("body", "The webhook body is not a prediction.")
        return update_from(prediction)

    def _webhook_secret(self, *, refresh: bool = False) -> str:
        settings = get_settings()
        if settings.replicate_webhook_secret:
            return settings.replicate_webhook_secret
        if not settings.replicate_api_token:
            raise errors.InvalidSignature("Replicate is not configured here; no delivery can be verified.")
        api = settings.replicate_api_url
        with self._secret_lock:
            cached = self._secret
            fresh_enough = cached is not None and time.monotonic() - cached[2] < _SECRET_REFRESH_S
            if cached is not None and cached[0] == api and (not refresh or fresh_enough):
                return cached[1]
            resp = self._call("GET", self._api("webhooks/default/secret"), idempotent=True)
            key = _http.json_field(resp, "key") if resp.status_code == 200 else None
            if not isinstance(key, str) or not key:
                raise errors.ProviderUnavailable(
                    f"Replicate's webhook secret could not be read: {_http.error_detail(resp)}",
                    provider=self.name,
                )
            self._secret = (api, key, time.monotonic())
            return key

    # ------------------------------------------------------------------ images

    def image_for_replicate(self, image_url: str, user_id: object) -> str:
        """A URL Replicate can fetch: public URLs pass through; our objects are presigned (S3) or uploaded to
        Replicate's Files API after their bytes are checked against the content hash in their key."""
        storage = get_storage()
        key = storage.key_for_url(image_url)
        if key is None:
            return image_url
        if not isinstance(storage, LocalStorage):
            return storage.download_url(key, _IMAGE_URL_TTL_S)
        try:  # the owner's upload (its bytes checked against its content hash) or an image their job made
            data, content_type = read_own_image(key, user_id, get_settings().max_image_bytes)
        except errors.InvalidField as exc:
            raise errors.ProviderJobFailed(exc.message, provider=self.name) from exc
        files = {"content": (key.replace("/", "-"), data, content_type)}
        resp = self._call("POST", self._api("files"), idempotent=False, files=files)
        if resp.status_code >= 400:
            raise errors.ProviderJobFailed(
                f"Replicate refused the image: {_http.error_detail(resp)}", provider=self.name
            )
        url = (resp.json().get("urls") or {}).get("get")
        if not isinstance(url, str) or not url:
            raise errors.ProviderJobFailed(
                "Replicate's file upload answered without a URL.", provider=self.name
            )
        return url


def update_from(prediction: Mapping[str, Any]) -> ProviderUpdate:
    """A prediction object (API answer or webhook body) as provider-neutral news."""
    request_id = str(prediction.get("id") or "") or None
    status = prediction.get("status")
    logs = _log_lines(prediction.get("logs"))
    if status == "starting":
        return ProviderUpdate(UpdateKind.QUEUED, request_id, logs=logs)
    if status == "processing":
        return ProviderUpdate(UpdateKind.RUNNING, request_id, logs=logs)
    if status == "succeeded":
        if prediction.get("output") is None and prediction.get("data_removed"):
            message = "Replicate: the output was removed before it could be copied (data retention)."
            return ProviderUpdate(UpdateKind.FAILED, request_id, message=message)
        return ProviderUpdate(UpdateKind.SUCCEEDED, request_id, output=prediction.get("output"), logs=logs)
    if status == "failed":
        message = f"Replicate: {prediction.get('error') or 'the prediction failed'}"
        return ProviderUpdate(UpdateKind.FAILED, request_id, logs=logs, message=message)
    if status == "canceled":
        return ProviderUpdate(UpdateKind.CANCELED, request_id)
    if status == "aborted":  # Cancel-After passed before it started (not billed by Replicate)
        message = "Replicate did not start the job before its deadline."
        return ProviderUpdate(UpdateKind.FAILED, request_id, message=message, failure_kind="deadline")
    return ProviderUpdate(UpdateKind.UNKNOWN, request_id, message=f"Replicate status {status!r}")


def _submission(prediction: Mapping[str, Any]) -> Submission:
    urls = prediction.get("urls") or {}
    kept = {k: str(urls[k]) for k in ("get", "cancel") if isinstance(urls, dict) and urls.get(k)}
    return Submission(request_id=str(prediction["id"]), urls=kept)


def _log_lines(logs: Any) -> tuple[dict[str, Any], ...]:
    if not isinstance(logs, str) or not logs:
        return ()
    return tuple({"message": line} for line in logs.splitlines()[-20:] if line.strip())


def _is_url(value: Any) -> bool:
    if isinstance(value, str):
        return value.startswith(("https://", "http://", "data:"))
    return isinstance(value, list) and bool(value) and all(_is_url(v) for v in value)


def _without_urls(inputs: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in inputs.items() if not _is_url(v)}


def _matches(prediction: Any, job: JobRequest, expected: dict[str, Any]) -> bool:
    if not isinstance(prediction, dict) or not isinstance(prediction.get("id"), str):
        return False
    hook = prediction.get("webhook")
    if isinstance(hook, str) and hook:
        return f"job_id={job.job_id}" in hook
    inputs = prediction.get("input")
    return isinstance(inputs, dict) and _without_urls(inputs) == expected


_provider: ReplicateProvider | None = None


def get_replicate() -> ReplicateProvider:
    """The process-wide Replicate provider."""
    global _provider
    if _provider is None:
        _provider = ReplicateProvider()
    return _provider
