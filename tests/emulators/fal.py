"""A protocol-faithful fal.ai emulator for tests: queue API, jobs, signed webhooks, JWKS and CDN storage.

One real HTTP server (Starlette on uvicorn, in a background thread, on 127.0.0.1 and a free port) plays every
fal host under its own path prefix, so each host keeps fal's paths exactly:

=========  ==================================  ===============================================
host       real                                emulated
=========  ==================================  ===============================================
queue      ``https://queue.fal.run``           ``{base}/queue``
run        ``https://fal.run``                 ``{base}/run`` (not emulated: answers 501)
rest       ``https://rest.fal.ai``             ``{base}/rest`` (storage token, JWKS)
cdn        ``https://v3.fal.media``            ``{base}/cdn`` (upload, generated media)
cdn (b)    ``https://v3b.fal.media``           ``{base}/cdn-b`` (token ``base_url``, uploaded files)
=========  ==================================  ===============================================

``{base}/_sink/webhook`` is a webhook receiver that records what it is sent (``FalEmulator.sink``).

fal_client in this process: ``FalEmulator.patch_fal_client()`` sets its module host globals (plain http).
fal_client in another process: start with ``tls=True`` and pass ``FalEmulator.fal_client_env()``
(``FAL_QUEUE_RUN_HOST``, ``FAL_RUN_HOST``, ``SSL_CERT_FILE``) plus ``FAL_KEY`` before it imports fal_client;
uploads cannot be redirected that way (fal_client's REST/CDN hosts have no environment variable).

Usage::

    with FalEmulator(latency_s=0.2, concurrency=2) as fal, fal.patch_fal_client() as client:
        handle = client.submit("fal-ai/kling-video/v2.1/standard/image-to-video", {...},
                               webhook_url=fal.sink_url)
        video = handle.get()["video"]["url"]   # served by the emulator

Everything a job does is decided by a ``JobPlan`` (latency, result, model/infra error, video bytes and faults,
webhook behaviour); HTTP-level misbehaviour of any call is injected with ``Fault``.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import json
import random
import re
import secrets
import ssl
import threading
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

import certifi
import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from tests.emulators._server import BackgroundServer, DropTruncatedLogs, serve_media
from tests.emulators._server import self_signed_cert as self_signed_cert

__all__ = [
    "DEFAULT_KEY",
    "DEFAULT_USER_ID",
    "TEST_SIGNING_SEED",
    "UNKNOWN_SIGNING_SEED",
    "FalEmulator",
    "Fault",
    "InfraError",
    "Job",
    "JobPlan",
    "MediaFile",
    "ModelError",
    "ReceivedWebhook",
    "RecordedRequest",
    "SignedWebhook",
    "WebhookDelivery",
    "WebhookPlan",
    "fal_emulator",
    "generated_bytes",
]

DEFAULT_KEY = "emu-key-id:emu-key-secret"
DEFAULT_USER_ID = "emu-user-1"
# The reference test vector's seed: the emulator's default signing key verifies the reference vector.
TEST_SIGNING_SEED = bytes(range(32))
# A key the emulator never publishes in its JWKS ("signed by someone else").
UNKNOWN_SIGNING_SEED = bytes(range(32, 64))

QUEUE_PREFIX = "/queue"
RUN_PREFIX = "/run"
REST_PREFIX = "/rest"
CDN_PREFIX = "/cdn"
CDN_B_PREFIX = "/cdn-b"
SINK_PATH = "/_sink/webhook"
JWKS_PATH = "/.well-known/jwks.json"

APP_NAMESPACES = ("workflows", "comfy")
_NUMERIC_ALIAS = re.compile(r"^([0-9]+)-([a-zA-Z0-9-]+)$")
_RESULT_SMALL_TTL_S = 360.0
_RESULT_TTL_S = 3600.0
_RESULT_SMALL_LIMIT = 10 * 1024
_WEBHOOK_TIMEOUT_S = 15.0
_BAD_KEY_DETAIL = "No user found for Key ID and Secret"

Op = Literal[
    "submit", "status", "stream", "result", "cancel", "token", "upload", "multipart", "storage", "file",
    "jwks", "any",
]  # fmt: skip
Status = Literal["IN_QUEUE", "IN_PROGRESS", "COMPLETED"]
Outcome = Literal["ok", "model_error", "infra_error", "cancelled", "timeout"]

# A tiny ISO-BMFF ("ftyp") header; enough for sniffers, not a playable video.
DEFAULT_VIDEO_BYTES = (
    b"\x00\x00\x00\x20ftypisom\x00\x00\x02\x00isomiso2avc1mp41"
    + b"\x00\x00\x00\x08free"
    + bytes(range(256)) * 4
)

_PATTERN_PERIOD = 256
_PATTERN = bytes(range(_PATTERN_PERIOD)) * (((1 << 20) // _PATTERN_PERIOD) + 1)


def generated_bytes(offset: int, size: int) -> bytes:
    """The bytes of a generated ``MediaFile`` from ``offset`` (byte ``k`` is ``k % 256``)."""
    out = bytearray()
    while size > 0:
        start = offset % _PATTERN_PERIOD
        take = min(size, len(_PATTERN) - start)
        out += _PATTERN[start : start + take]
        offset += take
        size -= take
    return bytes(out)


# ----------------------------------------------------------------------------------------------------
# Configuration objects
# ----------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class MediaFile:
    """Bytes served at a public media URL: literal ``data`` or ``size`` generated bytes, optionally faulty."""

    data: bytes | None = None
    size: int | None = None
    content_type: str = "video/mp4"
    file_name: str = "output.mp4"
    fault: Literal["not_found", "truncate"] | None = None
    truncate_at: int | None = None  # bytes sent before the connection is closed (default: half)
    delay_s: float = 0.0  # before the response starts
    chunk_size: int = 1 << 20

    @property
    def length(self) -> int:
        """The full size in bytes (what Content-Length announces)."""
        if self.data is not None:
            return len(self.data)
        return self.size if self.size is not None else len(DEFAULT_VIDEO_BYTES)

    def read(self, offset: int = 0, size: int | None = None) -> bytes:
        """The file's bytes (a slice of them), materialised; meant for assertions on small files."""
        end = self.length if size is None else min(self.length, offset + size)
        if self.data is None and self.size is None:
            return DEFAULT_VIDEO_BYTES[offset:end]
        if self.data is not None:
            return self.data[offset:end]
        return generated_bytes(offset, max(0, end - offset))

    def iter_chunks(self, start: int, end: int) -> Iterator[bytes]:
        """Yield bytes ``[start, end)`` in chunks without materialising the whole file."""
        pos = start
        while pos < end:
            take = min(self.chunk_size, end - pos)
            yield self.read(pos, take)
            pos += take


@dataclass(frozen=True)
class ModelError:
    """A model failure: result answers ``status_code`` with ``{"detail": detail}``; the webhook says ERROR."""

    status_code: int = 422
    detail: Any = field(
        default_factory=lambda: [
            {
                "loc": ["body", "duration"],
                "msg": "Input should be '5' or '10'",
                "type": "one_of",
                "url": "https://docs.fal.ai/errors/#one_of",
                "ctx": {"expected": ["5", "10"]},
                "input": "7",
            }
        ]
    )
    retryable: bool = False


@dataclass(frozen=True)
class InfraError:
    """A failure outside the model: status COMPLETED with error/error_type; result answers the infra error."""

    error_type: str = "runner_disconnected"
    detail: str = "Runner disconnected"
    status_code: int = 503


@dataclass(frozen=True)
class WebhookPlan:
    """How the webhook of a finished job is delivered."""

    send: bool = True  # False: the webhook is lost
    copies: int = 1  # 2: delivered twice
    delay_s: float = 0.0  # after completion, before the first attempt
    retries: int = 10  # extra attempts after a non-2xx answer or a transport error
    retry_base_s: float = 0.05  # backoff doubles from here ...
    retry_max_s: float = 1.0  # ... up to this
    unknown_key: bool = False  # sign with a key that is not in the JWKS
    timestamp_offset_s: int = 0  # e.g. -3600 for a stale timestamp
    status: Literal["OK", "ERROR"] | None = None  # force the webhook status regardless of the outcome
    payload_error: str | None = None  # OK with payload null and this payload_error


@dataclass(frozen=True)
class JobPlan:
    """How one submitted request behaves, from queue to result and webhook."""

    latency_s: float | None = 0.0  # time IN_PROGRESS; None: until FalEmulator.finish()
    queue_s: float = 0.0  # minimum time IN_QUEUE, even with a free slot
    result: Mapping[str, Any] | Callable[[Job], Any] | None = None  # None: {"video": File, "seed": int}
    video: MediaFile = field(default_factory=MediaFile)
    model_error: ModelError | None = None
    infra_error: InfraError | None = None
    logs: tuple[str, ...] = ("Loading model", "Generating video")
    finish_despite_cancel: bool = False  # a cancel of a running job is signalled, yet the job completes
    webhook: WebhookPlan = field(default_factory=WebhookPlan)


@dataclass(frozen=True)
class Fault:
    """HTTP-level misbehaviour injected into matching calls (``status_code`` None: only ``delay_s``)."""

    op: Op
    status_code: int | None = None
    times: int | None = 1  # None: forever
    delay_s: float = 0.0
    retry_after: int | None = None  # Retry-After header (seconds); 429 defaults to 1
    body: Any = None  # default: a fal-shaped body for the status code
    headers: Mapping[str, str] = field(default_factory=dict)
    endpoint: str | None = None  # endpoint id or owner/app
    request_id: str | None = None
    ingress: bool = False  # 502/503/504 from the "nginx ingress": no x-fal-request-id, so fal_client retries


# ----------------------------------------------------------------------------------------------------
# Records
# ----------------------------------------------------------------------------------------------------


@dataclass
class RecordedRequest:
    """One HTTP request the emulator received."""

    op: str
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]  # lower-case names
    body: bytes
    body_size: int
    at: float = field(default_factory=time.time)

    def json(self) -> Any:
        """The body parsed as JSON."""
        return json.loads(self.body)


@dataclass
class Job:
    """The emulator's state of one queued request."""

    request_id: str
    endpoint_id: str
    app_path: str  # [namespace/]owner/app — what status/result/cancel URLs use
    input: Any
    webhook_url: str | None
    headers: dict[str, str]
    plan: JobPlan
    submitted_at: float
    status: Status = "IN_QUEUE"
    gateway_request_id: str = ""
    started_at: float | None = None
    completed_at: float | None = None
    start_deadline: float | None = None
    outcome: Outcome | None = None
    logs: list[dict[str, Any]] = field(default_factory=list)
    result_status: int = 200
    result_body: Any = None
    result_headers: dict[str, str] = field(default_factory=dict)
    error: str | None = None
    error_type: str | None = None
    video_url: str | None = None
    cancel_requested: bool = False
    _timer: asyncio.TimerHandle | None = field(default=None, repr=False)


@dataclass(frozen=True)
class SignedWebhook:
    """A webhook delivery as fal would send it: headers and the exact body bytes."""

    request_id: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        """The body parsed as JSON."""
        return json.loads(self.body)


@dataclass
class WebhookDelivery:
    """One webhook POST the emulator made, and how the receiver answered."""

    request_id: str
    url: str
    headers: dict[str, str]
    body: bytes
    copy: int
    attempt: int
    status_code: int | None
    error: str | None
    at: float = field(default_factory=time.time)

    @property
    def ok(self) -> bool:
        """Whether the receiver answered 2xx."""
        return self.status_code is not None and 200 <= self.status_code < 300

    def json(self) -> Any:
        """The body parsed as JSON."""
        return json.loads(self.body)


@dataclass
class ReceivedWebhook:
    """A POST received by the emulator's own webhook sink."""

    headers: dict[str, str]
    body: bytes
    query: dict[str, str]
    at: float = field(default_factory=time.time)

    def json(self) -> Any:
        """The body parsed as JSON."""
        return json.loads(self.body)


class _CloseCdnWrites:
    """Answer CDN writes with ``Connection: close``: fal_client never closes its upload HTTP client."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Pass through, adding the header to non-GET responses under the CDN prefixes."""
        if (
            scope["type"] != "http"
            or scope["method"] in ("GET", "HEAD")
            or not scope["path"].startswith(CDN_PREFIX)
        ):
            await self.app(scope, receive, send)
            return

        async def send_closing(message: Any) -> None:
            if message["type"] == "http.response.start":
                headers = [(k, v) for k, v in message.get("headers", []) if k.lower() != b"connection"]
                message = {**message, "headers": [*headers, (b"connection", b"close")]}
            await send(message)

        await self.app(scope, receive, send_closing)


def _public_x(key: Ed25519PrivateKey, *, padded: bool) -> str:
    """The base64url ``x`` of a key's public half (44 chars padded, 43 unpadded)."""
    raw = key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    x = base64.urlsafe_b64encode(raw).decode()
    return x if padded else x.rstrip("=")


def _json(body: Any, status: int = 200, headers: Mapping[str, str] | None = None) -> Response:
    """A JSON response."""
    return JSONResponse(body, status_code=status, headers=dict(headers or {}))


def _default_fault_body(status: int) -> tuple[Any, dict[str, str]]:
    """A fal-shaped error body and headers for an injected status code."""
    if status == 429:
        return {"detail": "Too many requests"}, {}
    types = {
        500: ("Internal server error", "internal_error"),
        502: ("Runner returned an incomplete response", "runner_incomplete_response"),
        503: ("Runner scheduling failure", "runner_scheduling_failure"),
        504: ("Request timed out", "request_timeout"),
    }
    if status in types:
        detail, error_type = types[status]
        return {"detail": detail, "error_type": error_type}, {"X-Fal-Error-Type": error_type}
    return {"detail": f"Injected error {status}"}, {}


_INGRESS_BODY = (
    "<html><head><title>{0}</title></head><body><center><h1>{0}</h1></center>"
    "<hr><center>nginx</center></body></html>"
)


# ----------------------------------------------------------------------------------------------------
# The emulator
# ----------------------------------------------------------------------------------------------------


class FalEmulator(BackgroundServer):
    """An in-process fal.ai (queue, rest, CDN, JWKS) on one local HTTP server; see the module docstring."""

    _server_label = "fal emulator"
    _server_thread = "fal-emulator"

    def __init__(
        self,
        *,
        key: str = DEFAULT_KEY,
        user_id: str = DEFAULT_USER_ID,
        concurrency: int = 4,
        latency_s: float | None = 0.0,
        plan: JobPlan | None = None,
        strict_paths: bool = True,
        result_ttl_s: float | None = None,
        token_ttl_s: float = 3600.0,
        gcs_upload_enabled: bool = False,
        jwks_padded: bool = True,
        max_recorded_body: int = 8 << 20,
        tls: bool = False,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        super().__init__(host=host, port=port, tls=tls, log_filter=DropTruncatedLogs())
        self.keys: set[str] = {key}
        self.key = key
        self.user_id = user_id
        self.concurrency = concurrency
        self.plan = plan if plan is not None else JobPlan(latency_s=latency_s)
        self.strict_paths = strict_paths
        self.result_ttl_s = result_ttl_s
        self.token_ttl_s = token_ttl_s
        self.gcs_upload_enabled = gcs_upload_enabled
        self.jwks_padded = jwks_padded
        self.max_recorded_body = max_recorded_body
        self.sink_status = 200
        self.requests: list[RecordedRequest] = []
        self.webhook_deliveries: list[WebhookDelivery] = []
        self.sink: list[ReceivedWebhook] = []
        self.files: dict[str, MediaFile] = {}  # URL path -> file
        self.signing_key = Ed25519PrivateKey.from_private_bytes(TEST_SIGNING_SEED)
        self.unknown_key = Ed25519PrivateKey.from_private_bytes(UNKNOWN_SIGNING_SEED)
        self.published_keys: list[Ed25519PrivateKey] = [self.signing_key]
        self._lock = threading.RLock()
        self._changed = threading.Condition(self._lock)
        self._jobs: dict[str, Job] = {}
        self._waiting: list[Job] = []
        self._endpoint_plans: dict[str, JobPlan] = {}
        self._next_plans: list[tuple[str | None, JobPlan]] = []
        self._faults: list[list[Any]] = []  # [Fault, remaining]
        self._tokens: dict[str, float] = {}
        self._multipart: dict[str, dict[str, Any]] = {}
        self._gcs_uploads: dict[str, tuple[str, str]] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._http: httpx.AsyncClient | None = None
        self.app = self._build_app()

    # ---------------------------------------------------------------- addresses

    @property
    def queue_url(self) -> str:
        """Stand-in for ``https://queue.fal.run/`` (trailing slash, like fal_client's QUEUE_URL_FORMAT)."""
        return f"{self.base_url}{QUEUE_PREFIX}/"

    @property
    def run_url(self) -> str:
        """Stand-in for ``https://fal.run/`` (not emulated)."""
        return f"{self.base_url}{RUN_PREFIX}/"

    @property
    def rest_url(self) -> str:
        """Stand-in for ``https://rest.fal.ai``."""
        return f"{self.base_url}{REST_PREFIX}"

    @property
    def cdn_url(self) -> str:
        """Stand-in for ``https://v3.fal.media``."""
        return f"{self.base_url}{CDN_PREFIX}"

    @property
    def cdn_b_url(self) -> str:
        """Stand-in for ``https://v3b.fal.media`` (the storage token's ``base_url``)."""
        return f"{self.base_url}{CDN_B_PREFIX}"

    @property
    def jwks_url(self) -> str:
        """Stand-in for ``https://rest.fal.ai/.well-known/jwks.json``."""
        return f"{self.rest_url}{JWKS_PATH}"

    @property
    def sink_url(self) -> str:
        """A webhook receiver on the emulator that records deliveries in ``sink``."""
        return f"{self.base_url}{SINK_PATH}"

    def env(self) -> dict[str, str]:
        """Environment variables pointing our settings at the emulator."""
        return {
            "FAL_KEY": self.key,
            "FAL_JWKS_URL": self.jwks_url,
            "FAL_QUEUE_URL": self.queue_url,
            "FAL_REST_URL": self.rest_url,
            "FAL_CDN_URL": self.cdn_url,
            **self.fal_client_env(),
        }

    def fal_client_env(self) -> dict[str, str]:
        """With ``tls``: what fal_client reads at import time (queue/run hosts), plus SSL_CERT_FILE."""
        if not self.tls or self.ca_file is None:
            return {}
        return {
            "FAL_RUN_HOST": f"{self._host}:{self.port}{RUN_PREFIX}",
            "FAL_QUEUE_RUN_HOST": f"{self._host}:{self.port}{QUEUE_PREFIX}",
            "SSL_CERT_FILE": self.ca_file,
        }

    def http_client(self, **kwargs: Any) -> httpx.Client:
        """An httpx client that trusts the emulator (its certificate when ``tls``)."""
        return httpx.Client(verify=self._verify(), **kwargs)

    def _verify(self) -> ssl.SSLContext | bool:
        """TLS verification settings trusting the emulator's certificate as well as the usual CAs."""
        if self.ca_file is None:
            return True
        context = ssl.create_default_context(cafile=certifi.where())
        context.load_verify_locations(cafile=self.ca_file)
        return context

    @contextlib.contextmanager
    def patch_fal_client(self, key: str | None = None) -> Iterator[Any]:
        """Point fal_client's module-level hosts at the emulator; yield a fresh ``fal_client.SyncClient``."""
        import fal_client
        from fal_client import client as fal_module

        names = ("QUEUE_URL_FORMAT", "RUN_URL_FORMAT", "REST_URL", "CDN_URL")
        saved = {name: getattr(fal_module, name) for name in names}
        fal_module.QUEUE_URL_FORMAT = self.queue_url
        fal_module.RUN_URL_FORMAT = self.run_url
        fal_module.REST_URL = self.rest_url
        fal_module.CDN_URL = self.cdn_url
        client = fal_client.SyncClient(key=key or self.key)
        try:
            yield client
        finally:
            http = client.__dict__.get("_client")
            if http is not None:
                http.close()
            for name, value in saved.items():
                setattr(fal_module, name, value)

    # ---------------------------------------------------------------- configuration

    def set_plan(self, plan: JobPlan, *, endpoint: str | None = None) -> None:
        """Set the default plan for all jobs, or for one endpoint id / owner/app."""
        with self._lock:
            if endpoint is None:
                self.plan = plan
            else:
                self._endpoint_plans[endpoint] = plan

    def push_plan(self, plan: JobPlan, *, endpoint: str | None = None, times: int = 1) -> None:
        """Use ``plan`` for the next ``times`` submits (to ``endpoint`` if given), before any default plan."""
        with self._lock:
            self._next_plans.extend([(endpoint, plan)] * times)

    def set_concurrency(self, concurrency: int) -> None:
        """Change how many jobs run at once; waiting jobs start if slots free up."""
        with self._lock:
            self.concurrency = concurrency
        self._call_in_loop(self._pump)

    def add_fault(self, fault: Fault) -> Fault:
        """Inject a fault into matching calls (until used up ``fault.times``)."""
        with self._lock:
            self._faults.append([fault, fault.times])
        return fault

    def clear_faults(self) -> None:
        """Remove every injected fault."""
        with self._lock:
            self._faults.clear()

    def add_file(self, path: str, media: MediaFile) -> str:
        """Serve ``media`` on the CDN at ``/files/{path}``; returns its public URL."""
        url_path = f"{CDN_PREFIX}/files/{path.lstrip('/')}"
        with self._lock:
            self.files[url_path] = media
        return self.base_url + url_path

    def rotate_signing_key(self, *, keep_old: bool = True) -> Ed25519PrivateKey:
        """Sign with a new key and publish it (keeping the old one published unless told otherwise)."""
        key = Ed25519PrivateKey.generate()
        with self._lock:
            self.published_keys = [*self.published_keys, key] if keep_old else [key]
            self.signing_key = key
        return key

    def jwks(self) -> dict[str, Any]:
        """The JWKS document the emulator serves."""
        return {
            "keys": [
                {
                    "kty": "OKP",
                    "crv": "Ed25519",
                    "kid": f"emu-{i}",
                    "use": "sig",
                    "alg": "EdDSA",
                    "x": _public_x(k, padded=self.jwks_padded),
                }
                for i, k in enumerate(self.published_keys)
            ]
        }

    # ---------------------------------------------------------------- inspection and control

    def job(self, request_id: str) -> Job:
        """The live state of one request."""
        with self._lock:
            return self._jobs[request_id]

    def jobs(self) -> list[Job]:
        """Every request submitted so far, in submit order."""
        with self._lock:
            return list(self._jobs.values())

    def requests_for(self, op: str | None = None, *, method: str | None = None) -> list[RecordedRequest]:
        """Recorded requests, filtered by operation name and/or HTTP method."""
        with self._lock:
            return [
                r
                for r in self.requests
                if (op is None or r.op == op) and (method is None or r.method == method.upper())
            ]

    def wait_for(self, request_id: str, status: Status = "COMPLETED", timeout: float = 5.0) -> Job:
        """Block until a request reaches ``status`` (or later); returns the job."""
        order = {"IN_QUEUE": 0, "IN_PROGRESS": 1, "COMPLETED": 2}
        with self._changed:
            ok = self._changed.wait_for(
                lambda: request_id in self._jobs and order[self._jobs[request_id].status] >= order[status],
                timeout,
            )
            if not ok:
                raise TimeoutError(f"request {request_id} did not reach {status} within {timeout} s")
            return self._jobs[request_id]

    def wait_for_webhooks(
        self, count: int = 1, *, request_id: str | None = None, timeout: float = 5.0
    ) -> list[WebhookDelivery]:
        """Block until at least ``count`` webhook attempts (for ``request_id``) were made; returns them."""

        def matching() -> list[WebhookDelivery]:
            return [d for d in self.webhook_deliveries if request_id is None or d.request_id == request_id]

        with self._changed:
            if not self._changed.wait_for(lambda: len(matching()) >= count, timeout):
                raise TimeoutError(f"expected {count} webhook deliveries, got {len(matching())}")
            return matching()

    def wait_for_sink(self, count: int = 1, timeout: float = 5.0) -> list[ReceivedWebhook]:
        """Block until the webhook sink received at least ``count`` POSTs; returns them."""
        with self._changed:
            if not self._changed.wait_for(lambda: len(self.sink) >= count, timeout):
                raise TimeoutError(f"expected {count} webhooks at the sink, got {len(self.sink)}")
            return list(self.sink)

    def finish(self, request_id: str) -> Job:
        """Complete a request now (queued or running), as its plan says; returns the job."""
        self._call_in_loop(lambda: self._complete(self._jobs[request_id]))
        return self.job(request_id)

    def reset(self) -> None:
        """Forget records, faults and plans (jobs and files stay)."""
        with self._lock:
            self.requests.clear()
            self.webhook_deliveries.clear()
            self.sink.clear()
            self._faults.clear()
            self._next_plans.clear()
            self._endpoint_plans.clear()

    # ---------------------------------------------------------------- webhooks: build, sign, send

    def webhook_body(self, job: Job, plan: WebhookPlan | None = None) -> dict[str, Any]:
        """The webhook payload fal sends for a finished job."""
        plan = plan or job.plan.webhook
        body: dict[str, Any] = {
            "request_id": job.request_id,
            "gateway_request_id": job.gateway_request_id,
        }
        if job.outcome == "ok":
            body.update(status="OK", error=None, payload=job.result_body)
            if plan.payload_error is not None:
                body.update(payload=None, payload_error=plan.payload_error)
        elif job.outcome == "model_error":
            body.update(
                status="ERROR", error=f"Invalid status code: {job.result_status}", payload=job.result_body
            )
        else:
            body.update(status="ERROR", error=job.error, payload=job.result_body)
        if plan.status is not None:
            body["status"] = plan.status
        return body

    @staticmethod
    def encode_webhook(body: Mapping[str, Any]) -> bytes:
        """Serialise a webhook body as fal does (keys sorted, default separators)."""
        return json.dumps(body, sort_keys=True).encode()

    def sign(
        self,
        body: bytes,
        request_id: str,
        *,
        timestamp: int | None = None,
        key: Ed25519PrivateKey | None = None,
        user_id: str | None = None,
    ) -> dict[str, str]:
        """The four X-Fal-Webhook-* headers (plus Content-Type) for ``body``."""
        ts = str(int(time.time()) if timestamp is None else timestamp)
        uid = self.user_id if user_id is None else user_id
        message = f"{request_id}\n{uid}\n{ts}\n{hashlib.sha256(body).hexdigest()}".encode()
        signature = (key or self.signing_key).sign(message).hex()
        return {
            "Content-Type": "application/json",
            "X-Fal-Webhook-Request-Id": request_id,
            "X-Fal-Webhook-User-Id": uid,
            "X-Fal-Webhook-Timestamp": ts,
            "X-Fal-Webhook-Signature": signature,
        }

    def build_webhook(
        self,
        request_id: str | None = None,
        *,
        body: Mapping[str, Any] | bytes | None = None,
        timestamp: int | None = None,
        timestamp_offset_s: int = 0,
        key: Ed25519PrivateKey | None = None,
        unknown_key: bool = False,
        user_id: str | None = None,
    ) -> SignedWebhook:
        """A signed delivery (not sent): for a finished job by default, or for any ``body``."""
        if body is None:
            if request_id is None:
                raise ValueError("give a request_id of a finished job, or a body")
            job = self.job(request_id)
            if job.status != "COMPLETED":
                raise ValueError(f"request {request_id} has not completed")
            body = self.webhook_body(job)
        if not isinstance(body, bytes):
            request_id = request_id or str(body.get("request_id", ""))
            body = self.encode_webhook(body)
        if request_id is None:
            raise ValueError("a request_id is needed to sign raw bytes")
        ts = (int(time.time()) if timestamp is None else timestamp) + timestamp_offset_s
        signer = self.unknown_key if unknown_key else key
        return SignedWebhook(
            request_id, self.sign(body, request_id, timestamp=ts, key=signer, user_id=user_id), body
        )

    def deliver_webhook(
        self, request_id: str, url: str | None = None, *, delivery: SignedWebhook | None = None, **build: Any
    ) -> WebhookDelivery:
        """POST a (re)signed webhook for a finished job now, from the calling thread; records it."""
        target = url or self.job(request_id).webhook_url
        if target is None:
            raise ValueError(f"request {request_id} has no webhook URL; pass url=")
        signed = delivery or self.build_webhook(request_id, **build)
        status: int | None = None
        error: str | None = None
        try:
            with self.http_client(timeout=_WEBHOOK_TIMEOUT_S) as client:
                status = client.post(target, content=signed.body, headers=signed.headers).status_code
        except httpx.HTTPError as exc:
            error = f"{type(exc).__name__}: {exc}"
        record = WebhookDelivery(request_id, target, signed.headers, signed.body, 0, 0, status, error)
        with self._changed:
            self.webhook_deliveries.append(record)
            self._changed.notify_all()
        return record

    # ---------------------------------------------------------------- the event loop side

    def _call_in_loop(self, fn: Callable[[], Any]) -> Any:
        """Run ``fn`` on the server's loop and wait for its result."""
        if self._loop is None:
            raise RuntimeError("the emulator is not running")

        async def call() -> Any:
            return fn()

        return asyncio.run_coroutine_threadsafe(call(), self._loop).result(10)

    def _spawn(self, coro: Any) -> None:
        """Run a background coroutine on the loop, cancelled at shutdown."""
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    @contextlib.asynccontextmanager
    async def _lifespan(self, app: Starlette) -> AsyncIterator[None]:
        """Own the loop-side resources: the webhook HTTP client and background tasks."""
        self._loop = asyncio.get_running_loop()
        self._http = httpx.AsyncClient(timeout=_WEBHOOK_TIMEOUT_S, verify=self._verify())
        try:
            yield
        finally:
            with self._lock:
                for job in self._jobs.values():
                    if job._timer is not None:
                        job._timer.cancel()
            tasks = list(self._tasks)
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await self._http.aclose()
            self._loop = None

    def _notify(self) -> None:
        """Wake threads waiting on state changes."""
        with self._changed:
            self._changed.notify_all()

    def _choose_plan(self, endpoint_id: str, app_path: str) -> JobPlan:
        """The plan for a new submit: a pushed one-shot plan, else the endpoint's, else the default."""
        with self._lock:
            for i, (endpoint, plan) in enumerate(self._next_plans):
                if endpoint is None or endpoint in (endpoint_id, app_path):
                    del self._next_plans[i]
                    return plan
            return self._endpoint_plans.get(endpoint_id) or self._endpoint_plans.get(app_path) or self.plan

    def _queue_position(self, job: Job) -> int:
        """0-based position among waiting jobs."""
        return self._waiting.index(job) if job in self._waiting else 0

    def _pump(self) -> None:
        """Start waiting jobs while slots are free (loop thread)."""
        loop = asyncio.get_running_loop()
        with self._lock:
            running = sum(1 for j in self._jobs.values() if j.status == "IN_PROGRESS")
            now = time.monotonic()
            for job in list(self._waiting):
                if running >= self.concurrency:
                    break
                if job.submitted_at + job.plan.queue_s > now:
                    continue
                self._waiting.remove(job)
                job.status = "IN_PROGRESS"
                job.started_at = time.time()
                for message in job.plan.logs:
                    self._log(job, message)
                running += 1
                if job.plan.latency_s is not None:
                    job._timer = loop.call_later(job.plan.latency_s, self._complete, job)
        self._notify()

    @staticmethod
    def _log(job: Job, message: str, level: str = "INFO") -> None:
        """Append a log line to a job."""
        job.logs.append(
            {"message": message, "level": level, "source": "USER", "timestamp": datetime.now(UTC).isoformat()}
        )

    def _complete(self, job: Job, outcome: Outcome | None = None) -> None:
        """Finish a job with its planned (or the given) outcome, then start the next and send the webhook."""
        with self._lock:
            if job.status == "COMPLETED":
                return
            if job in self._waiting:
                self._waiting.remove(job)
            if job._timer is not None:
                job._timer.cancel()
            plan = job.plan
            job.status = "COMPLETED"
            job.completed_at = time.time()
            job.started_at = job.started_at or job.completed_at
            request_header = {"x-fal-request-id": job.request_id}
            if outcome is None:
                outcome = "ok"
                if plan.infra_error is not None:
                    outcome = "infra_error"
                elif plan.model_error is not None:
                    outcome = "model_error"
            job.outcome = outcome
            if outcome == "ok":
                job.video_url = self.add_file(f"emu/{job.request_id}/{plan.video.file_name}", plan.video)
                job.result_status = 200
                job.result_body = self._result_payload(job)
                job.result_headers = request_header
                self._log(job, "Generation finished")
            elif outcome == "model_error":
                error = plan.model_error or ModelError()
                job.result_status = error.status_code
                job.result_body = {"detail": error.detail}
                job.result_headers = {
                    **request_header,
                    "X-Fal-Retryable": "true" if error.retryable else "false",
                }
                self._log(job, f"Model failed with status {error.status_code}", "ERROR")
            else:
                infra = {
                    "cancelled": InfraError("client_cancelled", "Request cancelled by the client", 499),
                    "timeout": InfraError("request_timeout", "Request timed out", 504),
                }.get(outcome) or (plan.infra_error or InfraError())
                job.error, job.error_type = infra.detail, infra.error_type
                job.result_status = infra.status_code
                job.result_body = {"detail": infra.detail, "error_type": infra.error_type}
                job.result_headers = {**request_header, "X-Fal-Error-Type": infra.error_type}
                if outcome == "timeout":
                    job.result_headers["X-Fal-Request-Timeout-Type"] = "user"
        self._pump()
        if job.webhook_url and plan.webhook.send:
            self._spawn(self._send_webhooks(job))

    def _result_payload(self, job: Job) -> Any:
        """The model output of a successful job."""
        result = job.plan.result
        if callable(result):
            return result(job)
        if result is not None:
            return dict(result)
        video = job.plan.video
        return {
            "video": {
                "url": job.video_url,
                "content_type": video.content_type,
                "file_name": video.file_name,
                "file_size": video.length,
            },
            "seed": random.getrandbits(63),
        }

    def _expire_if_waiting(self, job: Job) -> None:
        """Apply the start timeout (X-Fal-Request-Timeout) to a job still waiting."""
        if job.status == "IN_QUEUE":
            self._complete(job, "timeout")

    async def _send_webhooks(self, job: Job) -> None:
        """Deliver a finished job's webhook as its plan says (delay, copies, retries, keys)."""
        plan = job.plan.webhook
        assert self._http is not None and job.webhook_url is not None
        await asyncio.sleep(plan.delay_s)
        body = self.encode_webhook(self.webhook_body(job, plan))
        for copy in range(plan.copies):
            for attempt in range(plan.retries + 1):
                signed = self.build_webhook(
                    job.request_id,
                    body=body,
                    timestamp_offset_s=plan.timestamp_offset_s,
                    unknown_key=plan.unknown_key,
                )
                status: int | None = None
                error: str | None = None
                try:
                    response = await self._http.post(
                        job.webhook_url, content=signed.body, headers=signed.headers
                    )
                    status = response.status_code
                except httpx.HTTPError as exc:
                    error = f"{type(exc).__name__}: {exc}"
                record = WebhookDelivery(
                    job.request_id, job.webhook_url, signed.headers, signed.body, copy, attempt, status, error
                )
                with self._changed:
                    self.webhook_deliveries.append(record)
                    self._changed.notify_all()
                if record.ok:
                    break
                await asyncio.sleep(min(plan.retry_base_s * 2**attempt, plan.retry_max_s))

    # ---------------------------------------------------------------- HTTP plumbing

    async def _begin(
        self,
        request: Request,
        op: Op,
        *,
        endpoint: tuple[str, ...] = (),
        request_id: str | None = None,
    ) -> tuple[bytes, Response | None]:
        """Record a request and apply matching faults; returns the body and a fault response if one fired."""
        body = await request.body()
        record = RecordedRequest(
            op=op,
            method=request.method,
            path=request.url.path,
            query=dict(request.query_params),
            headers={k.lower(): v for k, v in request.headers.items()},
            body=body[: self.max_recorded_body],
            body_size=len(body),
        )
        fault: Fault | None = None
        delay = 0.0
        with self._changed:
            self.requests.append(record)
            self._changed.notify_all()
            for slot in self._faults:
                f: Fault = slot[0]
                if f.op not in (op, "any") or slot[1] == 0:
                    continue
                if f.endpoint is not None and f.endpoint not in endpoint:
                    continue
                if f.request_id is not None and f.request_id != request_id:
                    continue
                if slot[1] is not None:
                    slot[1] -= 1
                delay += f.delay_s
                if f.status_code is not None:
                    fault = f
                    break
        if delay:
            await asyncio.sleep(delay)
        if fault is None or fault.status_code is None:
            return body, None
        return body, self._fault_response(fault, request_id)

    @staticmethod
    def _fault_response(fault: Fault, request_id: str | None) -> Response:
        """The HTTP answer of a fired fault."""
        status = fault.status_code or 500
        headers: dict[str, str] = {}
        if fault.ingress and status in (502, 503, 504):
            text = _INGRESS_BODY.format(f"{status} Bad Gateway")
            return Response(text, status_code=status, media_type="text/html", headers=dict(fault.headers))
        default_body, default_headers = _default_fault_body(status)
        headers.update(default_headers)
        if status >= 500:
            headers["x-fal-request-id"] = request_id or str(uuid.uuid4())
        retry_after = fault.retry_after if fault.retry_after is not None else (1 if status == 429 else None)
        if retry_after is not None:
            headers["Retry-After"] = str(retry_after)
        headers.update(fault.headers)
        return _json(default_body if fault.body is None else fault.body, status, headers)

    def _authorized(self, request: Request) -> Response | None:
        """401 unless ``Authorization: Key <known key>``."""
        header = request.headers.get("authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() == "key" and token.strip() in self.keys:
            return None
        return _json({"detail": _BAD_KEY_DETAIL}, 401)

    def _urls(self, job: Job) -> dict[str, str]:
        """The response/status/cancel URLs of a job (owner/app only, the subpath dropped)."""
        base = f"{self.queue_url}{job.app_path}/requests/{job.request_id}"
        return {"response_url": base, "status_url": f"{base}/status", "cancel_url": f"{base}/cancel"}

    def _build_app(self) -> Starlette:
        """The Starlette app serving every emulated host."""
        methods = ["GET", "POST", "PUT", "DELETE", "PATCH"]
        return Starlette(
            routes=[
                Route(QUEUE_PREFIX + "/{path:path}", self._queue, methods=methods),
                Route(RUN_PREFIX + "/{path:path}", self._run, methods=methods),
                Route(REST_PREFIX + "/storage/auth/token", self._token, methods=["POST"]),
                Route(REST_PREFIX + "/storage/upload/initiate", self._storage_initiate, methods=["POST"]),
                Route(REST_PREFIX + JWKS_PATH, self._jwks, methods=["GET"]),
                Route(CDN_PREFIX + "/{path:path}", self._cdn, methods=methods),
                Route(CDN_B_PREFIX + "/{path:path}", self._cdn, methods=methods),
                Route("/_gcs/{token}", self._gcs_put, methods=["PUT"]),
                Route(SINK_PATH, self._sink, methods=["POST"]),
            ],
            middleware=[Middleware(_CloseCdnWrites)],
            lifespan=self._lifespan,
        )

    # ---------------------------------------------------------------- queue host

    @staticmethod
    def _parse_endpoint(segments: list[str]) -> tuple[str, str] | None:
        """(endpoint id, app path) of a submit path, or None when the id is invalid."""
        if len(segments) == 1:
            match = _NUMERIC_ALIAS.match(segments[0])
            if not match:
                return None
            return segments[0], f"{match.group(1)}/{match.group(2)}"
        if segments[0] in APP_NAMESPACES:
            if len(segments) < 3:
                return None
            return "/".join(segments), "/".join(segments[:3])
        return "/".join(segments), "/".join(segments[:2])

    async def _queue(self, request: Request) -> Response:
        """Dispatch the queue host: submit, status, status stream, result, cancel."""
        segments = [s for s in request.path_params["path"].split("/") if s]
        if request.method == "POST":
            return await self._submit(request, segments)
        if not segments:
            return _json({"detail": "Not Found"}, 404)
        app_len = 3 if segments[0] in APP_NAMESPACES else 2
        idx = app_len if len(segments) > app_len and segments[app_len] == "requests" else -1
        if idx < 0 and not self.strict_paths and "requests" in segments[app_len:]:
            idx = segments.index("requests", app_len)
        if idx < 0 or len(segments) < idx + 2:
            await self._begin(request, "any")
            return _json({"detail": "Method Not Allowed"}, 405)
        app_path, request_id, tail = "/".join(segments[:app_len]), segments[idx + 1], segments[idx + 2 :]
        route: dict[tuple[str, tuple[str, ...]], Op] = {
            ("GET", ()): "result",
            ("GET", ("status",)): "status",
            ("GET", ("status", "stream")): "stream",
            ("PUT", ("cancel",)): "cancel",
        }
        if not self.strict_paths:
            route[("GET", ("response",))] = "result"
        op = route.get((request.method, tuple(tail)))
        if op is None:
            await self._begin(request, "any")
            return _json({"detail": "Method Not Allowed"}, 405)
        with self._lock:
            job = self._jobs.get(request_id)
        endpoints = (job.endpoint_id, job.app_path) if job else (app_path,)
        _, fault = await self._begin(request, op, endpoint=endpoints, request_id=request_id)
        if fault is not None:
            return fault
        if (denied := self._authorized(request)) is not None:
            return denied
        if job is None or job.app_path != app_path:
            if op == "cancel":
                return _json({"status": "NOT_FOUND"}, 404)
            return _json({"detail": f"Request {request_id} not found"}, 404)
        if op == "status":
            return self._status(job, request.query_params.get("logs", "0"))
        if op == "stream":
            return self._status_stream(job, request.query_params.get("logs", "0"))
        if op == "result":
            return self._result(job)
        return await self._cancel(job)

    async def _submit(self, request: Request, segments: list[str]) -> Response:
        """POST {queue}/{endpoint id}: enqueue a job."""
        parsed = self._parse_endpoint(segments) if segments else None
        endpoints = parsed if parsed else ()
        raw, fault = await self._begin(request, "submit", endpoint=endpoints)
        if fault is not None:
            return fault
        if (denied := self._authorized(request)) is not None:
            return denied
        if parsed is None:
            return _json({"detail": "Invalid app id: must be in the format <appOwner>/<appId>"}, 404)
        endpoint_id, app_path = parsed
        try:
            arguments = json.loads(raw) if raw else {}
        except ValueError:
            return _json({"detail": "Request body is not valid JSON", "error_type": "bad_request"}, 400)
        query = request.query_params
        webhook_url = query.get("fal_webhook")
        with self._lock:
            max_queue = query.get("fal_max_queue_length")
            if max_queue is not None:
                waiting = sum(1 for j in self._waiting if j.app_path == app_path)
                if waiting >= int(max_queue):
                    return _json({"detail": "Queue is full"}, 429)
            request_id = str(uuid.uuid4())
            job = Job(
                request_id=request_id,
                endpoint_id=endpoint_id,
                app_path=app_path,
                input=arguments,
                webhook_url=webhook_url,
                headers={k.lower(): v for k, v in request.headers.items()},
                plan=self._choose_plan(endpoint_id, app_path),
                submitted_at=time.monotonic(),
                gateway_request_id=request_id,
            )
            self._jobs[request_id] = job
            self._waiting.append(job)
            position = self._queue_position(job)
        loop = asyncio.get_running_loop()
        timeout = request.headers.get("x-fal-request-start-timeout") or request.headers.get(
            "x-fal-request-timeout"
        )
        if timeout:
            job.start_deadline = job.submitted_at + float(timeout)
            loop.call_later(float(timeout), self._expire_if_waiting, job)
        if job.plan.queue_s:
            loop.call_later(job.plan.queue_s, self._pump)
        body: dict[str, Any] = {"status": "IN_QUEUE", "request_id": request_id, **self._urls(job)}
        body["queue_position"] = position
        if webhook_url:
            body["gateway_request_id"] = job.gateway_request_id
        self._pump()
        return _json(body, 200, {"x-fal-request-id": request_id})

    def _status_body(self, job: Job, logs: str) -> tuple[dict[str, Any], int]:
        """The status document of a job and its HTTP code (202 until completed, then 200)."""
        with_logs = logs.lower() in ("1", "true")
        with self._lock:
            body: dict[str, Any] = {"status": job.status, "request_id": job.request_id}
            if job.status == "IN_QUEUE":
                body["queue_position"] = self._queue_position(job)
            body.update(self._urls(job))
            body["logs"] = [dict(entry) for entry in job.logs] if with_logs else None
            if job.status != "COMPLETED":
                return body, 202
            started = job.started_at or job.completed_at or 0.0
            body["metrics"] = {"inference_time": round((job.completed_at or started) - started, 3)}
            if job.error is not None:
                body.update(error=job.error, error_type=job.error_type)
            return body, 200

    def _status(self, job: Job, logs: str) -> Response:
        """GET .../status[?logs=...]."""
        body, code = self._status_body(job, logs)
        return _json(body, code, {"x-fal-request-id": job.request_id})

    def _status_stream(self, job: Job, logs: str) -> Response:
        """GET .../status/stream: server-sent status events until completion."""

        async def events() -> AsyncIterator[bytes]:
            last = None
            while True:
                body, _ = self._status_body(job, logs)
                encoded = json.dumps(body)
                if encoded != last:
                    yield f"data: {encoded}\n\n".encode()
                    last = encoded
                if body["status"] == "COMPLETED":
                    return
                await asyncio.sleep(0.05)

        return StreamingResponse(events(), media_type="text/event-stream")

    def _result(self, job: Job) -> Response:
        """GET {response_url}: the model output as is, or the model's/infra error with its status code."""
        with self._lock:
            if job.status != "COMPLETED" or job.completed_at is None:
                return _json(
                    {"detail": "Request is still in progress"}, 400, {"x-fal-request-id": job.request_id}
                )
            encoded = json.dumps(job.result_body).encode()
            ttl = self.result_ttl_s
            if ttl is None:
                ttl = _RESULT_SMALL_TTL_S if len(encoded) >= _RESULT_SMALL_LIMIT else _RESULT_TTL_S
            if time.time() - job.completed_at > ttl:
                return _json({"detail": f"Request {job.request_id} not found"}, 404)
            return Response(
                encoded,
                status_code=job.result_status,
                media_type="application/json",
                headers=job.result_headers,
            )

    async def _cancel(self, job: Job) -> Response:
        """PUT .../cancel: 202 CANCELLATION_REQUESTED, 400 ALREADY_COMPLETED."""
        with self._lock:
            if job.status == "COMPLETED":
                return _json({"status": "ALREADY_COMPLETED"}, 400)
            job.cancel_requested = True
            stop = job.status == "IN_QUEUE" or not job.plan.finish_despite_cancel
        if stop:
            self._complete(job, "cancelled")
        return _json({"status": "CANCELLATION_REQUESTED"}, 202)

    async def _run(self, request: Request) -> Response:
        """The synchronous run host is not emulated."""
        await self._begin(request, "any")
        return _json({"detail": "fal.run is not emulated; use the queue"}, 501)

    # ---------------------------------------------------------------- rest host

    async def _jwks(self, request: Request) -> Response:
        """GET /.well-known/jwks.json."""
        _, fault = await self._begin(request, "jwks")
        return fault or _json(self.jwks())

    async def _token(self, request: Request) -> Response:
        """POST /storage/auth/token?storage_type=fal-cdn-v3: a CDN upload token."""
        _, fault = await self._begin(request, "token")
        if fault is not None:
            return fault
        if (denied := self._authorized(request)) is not None:
            return denied
        if request.query_params.get("storage_type") != "fal-cdn-v3":
            return _json({"detail": "Invalid storage type"}, 400)
        token = secrets.token_urlsafe(24)
        expires = datetime.now(UTC) + timedelta(seconds=self.token_ttl_s)
        with self._lock:
            self._tokens[token] = expires.timestamp()
        return _json(
            {
                "token": token,
                "token_type": "Bearer",
                "base_url": self.cdn_b_url,
                "expires_at": expires.isoformat(),
            }
        )

    async def _storage_initiate(self, request: Request) -> Response:
        """POST /storage/upload/initiate?storage_type=gcs (the legacy "fal" repository)."""
        raw, fault = await self._begin(request, "storage")
        if fault is not None:
            return fault
        if (denied := self._authorized(request)) is not None:
            return denied
        if not self.gcs_upload_enabled or request.query_params.get("storage_type") != "gcs":
            return _json({"detail": "Invalid storage type"}, 400)
        spec = json.loads(raw or b"{}")
        file_name = spec.get("file_name", "upload.bin")
        token = secrets.token_urlsafe(16)
        path = f"{CDN_PREFIX}/files/gcs/{token[:8]}/{file_name}"
        with self._lock:
            self._gcs_uploads[token] = (path, spec.get("content_type", "application/octet-stream"))
        return _json({"upload_url": f"{self.base_url}/_gcs/{token}", "file_url": self.base_url + path})

    async def _gcs_put(self, request: Request) -> Response:
        """PUT to a signed upload URL of the legacy flow."""
        raw, fault = await self._begin(request, "storage")
        if fault is not None:
            return fault
        with self._lock:
            target = self._gcs_uploads.pop(request.path_params["token"], None)
            if target is None:
                return _json({"detail": "Not Found"}, 404)
            path, content_type = target
            self.files[path] = MediaFile(
                data=raw, content_type=content_type, file_name=path.rsplit("/", 1)[-1]
            )
        return Response(status_code=200)

    # ---------------------------------------------------------------- cdn hosts

    def _bearer_ok(self, request: Request) -> bool:
        """Whether the request carries a live CDN token."""
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        with self._lock:
            expires = self._tokens.get(token.strip())
        return scheme.lower() == "bearer" and expires is not None and expires > time.time()

    def _store_upload(self, data: bytes, content_type: str, file_name: str) -> str:
        """Keep an uploaded file; returns its public access URL on the ``v3b`` host."""
        safe = re.sub(r"[^A-Za-z0-9._-]", "_", file_name) or "file"
        path = f"{CDN_B_PREFIX}/files/b/{secrets.token_hex(4)}/{secrets.token_urlsafe(16)[:21]}_{safe}"
        with self._lock:
            self.files[path] = MediaFile(data=data, content_type=content_type, file_name=file_name)
        return self.base_url + path

    async def _cdn(self, request: Request) -> Response:
        """Dispatch the CDN hosts: upload, multipart upload, and public file downloads."""
        path = request.url.path
        prefix = CDN_B_PREFIX if path.startswith(CDN_B_PREFIX + "/") else CDN_PREFIX
        rest = path[len(prefix) :]
        if request.method == "POST" and rest == "/files/upload":
            return await self._upload(request)
        if request.method == "POST" and rest == "/files/upload/multipart":
            return await self._multipart_create(request)
        if "/multipart/" in rest and request.method in ("PUT", "POST"):
            return await self._multipart_step(request, path)
        if request.method in ("GET", "HEAD") and rest.startswith("/files/"):
            return await self._download(request, path)
        await self._begin(request, "any")
        return _json({"detail": "Not Found"}, 404)

    async def _upload(self, request: Request) -> Response:
        """POST {cdn}/files/upload: store the raw body, answer ``{"access_url"}``."""
        raw, fault = await self._begin(request, "upload")
        if fault is not None:
            return fault
        if not self._bearer_ok(request):
            return _json({"detail": "Invalid or expired token"}, 401)
        content_type = request.headers.get("content-type", "application/octet-stream")
        file_name = request.headers.get("x-fal-file-name", "upload.bin")
        return _json({"access_url": self._store_upload(raw, content_type, file_name)})

    async def _multipart_create(self, request: Request) -> Response:
        """POST {base_url}/files/upload/multipart: start a multipart upload."""
        _, fault = await self._begin(request, "multipart")
        if fault is not None:
            return fault
        if not self._bearer_ok(request):
            return _json({"detail": "Invalid or expired token"}, 401)
        file_name = request.headers.get("x-fal-file-name", "upload.bin")
        content_type = request.headers.get("content-type", "application/octet-stream")
        access_url = self._store_upload(b"", content_type, file_name)
        upload_id = secrets.token_hex(8)
        with self._lock:
            self._multipart[upload_id] = {"url": access_url, "parts": {}, "content_type": content_type}
        return _json({"access_url": access_url, "uploadId": upload_id})

    async def _multipart_step(self, request: Request, path: str) -> Response:
        """PUT {access_url}/multipart/{id}/{n} (a part) or POST .../complete."""
        raw, fault = await self._begin(request, "multipart")
        if fault is not None:
            return fault
        if not self._bearer_ok(request):
            return _json({"detail": "Invalid or expired token"}, 401)
        file_path, _, tail = path.partition("/multipart/")
        upload_id, _, step = tail.partition("/")
        with self._lock:
            upload = self._multipart.get(upload_id)
            if upload is None or self.base_url + file_path != upload["url"]:
                return _json({"detail": "Upload not found"}, 404)
            if request.method == "PUT" and step.isdigit():
                upload["parts"][int(step)] = raw
                return Response(status_code=200, headers={"ETag": f'"{hashlib.md5(raw).hexdigest()}"'})  # noqa: S324
            if request.method == "POST" and step == "complete":
                data = b"".join(upload["parts"][n] for n in sorted(upload["parts"]))
                old = self.files[file_path]
                self.files[file_path] = MediaFile(
                    data=data, content_type=upload["content_type"], file_name=old.file_name
                )
                del self._multipart[upload_id]
                return _json({"access_url": upload["url"]})
        return _json({"detail": "Not Found"}, 404)

    async def _download(self, request: Request, path: str) -> Response:
        """GET a public media file (no auth), honouring single byte ranges and planned faults."""
        generated = re.match(rf"^{CDN_PREFIX}/files/emu/([^/]+)/", path)
        request_id = generated.group(1) if generated else None
        with self._lock:
            media = self.files.get(path)
            job = self._jobs.get(request_id) if request_id else None
        endpoints = (job.endpoint_id, job.app_path) if job else ()
        _, fault = await self._begin(request, "file", endpoint=endpoints, request_id=request_id)
        if fault is not None:
            return fault
        return await serve_media(request, media)

    # ---------------------------------------------------------------- the webhook sink

    async def _sink(self, request: Request) -> Response:
        """POST {base}/_sink/webhook: record a webhook and answer ``sink_status``."""
        body = await request.body()
        received = ReceivedWebhook(dict(request.headers.items()), body, dict(request.query_params))
        with self._changed:
            self.sink.append(received)
            self._changed.notify_all()
        return Response(status_code=self.sink_status)


@pytest.fixture
def fal_emulator() -> Iterator[FalEmulator]:
    """A running fal emulator, stopped after the test (import it into a conftest to use it)."""
    with FalEmulator() as emulator:
        yield emulator
