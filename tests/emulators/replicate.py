"""A protocol-faithful Replicate emulator for tests: predictions, signed webhooks, files and output delivery.

Written from ``/work/shared/reference/replicate.md`` (and ``standard-webhooks.md``). One real HTTP server
(Starlette on uvicorn, in a background thread, on 127.0.0.1 and a free port) plays two hosts:

==========  ===================================  ==============================================
host        real                                 emulated
==========  ===================================  ==============================================
API         ``https://api.replicate.com/v1``     ``{base}/v1`` (``ReplicateEmulator.api_url``)
delivery    ``https://replicate.delivery``       ``{base}/delivery`` (generated outputs)
==========  ===================================  ==============================================

API endpoints (Bearer or Token auth, ``application/problem+json`` errors, ``ratelimit-*`` headers):

- ``POST /v1/models/{owner}/{name}/predictions`` (official models, inputs validated against §10's schemas)
- ``POST /v1/predictions`` (``version`` = ``owner/name`` of an official model, ``owner/name:<hex>`` or ``<hex>``)
- ``GET /v1/predictions/{id}``, ``POST /v1/predictions/{id}/cancel``, ``GET /v1/predictions`` (cursor pages)
- ``GET /v1/webhooks/default/secret``
- ``POST /v1/files``, ``GET /v1/files``, ``GET /v1/files/{id}``, ``DELETE /v1/files/{id}``

Create honours ``Prefer: wait[=N]`` and ``Cancel-After``. Webhooks are POSTed for ``webhook_events_filter``
(``start``, ``output``, ``logs``, ``completed``), signed per Standard Webhooks with the account's ``whsec_``
secret, retried on failure, and recorded. ``{base}/_sink/webhook`` is a receiver that records what it is sent.

The official client (v1, ``replicate==1.0.7``) takes the base **without** ``/v1``::

    with ReplicateEmulator() as emu:
        client = replicate.Client(api_token=emu.token, base_url=emu.base_url)
        prediction = client.models.predictions.create(
            model="kwaivgi/kling-v2.1", input={"prompt": "a cat", "start_image": "https://..."},
            webhook=emu.sink_url, webhook_events_filter=["start", "completed"])
        prediction.wait()
        video = httpx.get(prediction.output).content   # served by the emulator

What each prediction does (queue and run time, output bytes, failure, logs, webhook behaviour) is decided by a
``PredictionPlan``; HTTP-level misbehaviour of any call is injected with ``Fault``. Where the reference is silent,
the emulator does the simplest thing and says so in a comment marked "Reference silent".
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import functools
import hashlib
import hmac
import io
import json
import math
import re
import secrets
import ssl
import string
import threading
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal
from urllib.parse import unquote_to_bytes, urlencode

import certifi
import httpx
import pytest
from starlette.applications import Starlette
from starlette.datastructures import UploadFile
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from tests.emulators._server import BackgroundServer, DropTruncatedLogs, serve_media
from tests.emulators.fal import DEFAULT_VIDEO_BYTES, MediaFile, ReceivedWebhook

__all__ = [
    "DEFAULT_TOKEN",
    "DEFAULT_VIDEO_BYTES",
    "DEFAULT_WEBHOOK_SECRET",
    "EVENTS",
    "FORGED_WEBHOOK_SECRET",
    "OFFICIAL_MODELS",
    "Fault",
    "InputField",
    "MediaFile",
    "ModelSchema",
    "Prediction",
    "PredictionPlan",
    "ReceivedWebhook",
    "RecordedRequest",
    "ReplicateEmulator",
    "SignedWebhook",
    "UploadedFile",
    "WebhookDelivery",
    "WebhookPlan",
    "encode_webhook",
    "parse_duration",
    "replicate_emulator",
    "sign",
    "validate_input",
    "webhook_headers",
]

DEFAULT_TOKEN = "r8_EmulatorToken0123456789abcdefghijklmno"
# The reference's test-vector secret (24 bytes: base64 without "=" or "_", so the v1 client's decoder works).
DEFAULT_WEBHOOK_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
# Another account's secret (bytes 0x00..0x17), for forged deliveries.
FORGED_WEBHOOK_SECRET = "whsec_AAECAwQFBgcICQoLDA0ODxAREhMUFRYX"

API_PREFIX = "/v1"
DELIVERY_PREFIX = "/delivery"
SINK_PATH = "/_sink/webhook"
PROBLEM_JSON = "application/problem+json"

Op = Literal["create", "get", "cancel", "list", "secret", "files", "delivery", "any"]
Status = Literal["starting", "processing", "succeeded", "failed", "canceled", "aborted"]
Event = Literal["start", "output", "logs", "completed"]
EVENTS: tuple[Event, ...] = ("start", "output", "logs", "completed")
TERMINAL: frozenset[str] = frozenset({"succeeded", "failed", "canceled", "aborted"})
_RANK = {"starting": 0, "processing": 1}

_WEBHOOK_TIMEOUT_S = 15.0
_MAX_WAIT_S = 60
_FILE_TTL_S = 24 * 3600.0
_ID_ALPHABET = string.ascii_lowercase + string.digits
_MSG_ALPHABET = string.ascii_letters + string.digits

_UNAUTHENTICATED = {
    "title": "Unauthenticated",
    "detail": "You did not pass a valid authentication token",
    "status": 401,
}
_NOT_FOUND = {"detail": "The requested resource could not be found.", "status": 404}
_BAD_VERSION = {
    "title": "Invalid version or not permitted",
    "detail": "The specified version does not exist (or perhaps you don't have permission to use it?)",
    "status": 422,
}
_INSUFFICIENT_CREDIT = {
    "title": "Insufficient credit",
    "detail": "You have insufficient credit to run this model. Go to "
    "https://replicate.com/account/billing#billing to purchase credit.",
    "status": 402,
}


# ----------------------------------------------------------------------------------------------------
# Model schemas (reference §10) and input validation (§5)
# ----------------------------------------------------------------------------------------------------

FieldKind = Literal["string", "uri", "uri_list", "integer", "number", "boolean"]
Rule = Callable[[Mapping[str, Any]], str | None]


@dataclass(frozen=True)
class InputField:
    """One input of a model: its JSON type and the constraints the API checks at create time."""

    kind: FieldKind
    default: Any = None
    choices: tuple[Any, ...] = ()
    minimum: float | None = None
    maximum: float | None = None
    min_items: int | None = None
    max_items: int | None = None
    required: bool = False


@dataclass(frozen=True)
class ModelSchema:
    """An official model: its inputs, output kind and the cross-field rules its runtime enforces."""

    name: str  # owner/name
    fields: Mapping[str, InputField]
    output: Literal["video", "image"] = "video"
    version: str = "hidden"  # what official models report as ``version``
    # Cross-field rules cannot be written in a JSON schema. Reference silent on how they surface: the
    # emulator lets the prediction fail at run time with the rule's message as ``error``.
    rules: tuple[Rule, ...] = ()

    def effective(self, inputs: Mapping[str, Any]) -> dict[str, Any]:
        """The input as the model sees it: defaults filled in."""
        filled = {name: f.default for name, f in self.fields.items() if f.default is not None}
        return {**filled, **inputs}


def _text(required: bool = False, default: Any = None) -> InputField:
    return InputField("string", default=default, required=required)


def _uri(required: bool = False) -> InputField:
    return InputField("uri", required=required)


def _uris(max_items: int | None = None, min_items: int | None = None, default: Any = None) -> InputField:
    return InputField("uri_list", default=default, min_items=min_items, max_items=max_items)


def _enum(*choices: Any, default: Any = None, kind: FieldKind = "string") -> InputField:
    return InputField(kind, default=default, choices=choices)


def _int(default: int | None = None, minimum: int | None = None, maximum: int | None = None) -> InputField:
    return InputField("integer", default=default, minimum=minimum, maximum=maximum)


def _flag(default: bool) -> InputField:
    return InputField("boolean", default=default)


def _kling_end_image(inputs: Mapping[str, Any]) -> str | None:
    if inputs.get("end_image") and inputs.get("mode") != "pro":
        return 'end_image requires mode "pro"'
    return None


def _hailuo_ten_seconds(inputs: Mapping[str, Any]) -> str | None:
    if inputs.get("duration") == 10 and inputs.get("resolution") != "768p":
        return "duration 10 is only available at resolution 768p"
    return None


def _veo_reference_images(inputs: Mapping[str, Any]) -> str | None:
    if inputs.get("reference_images") and (
        inputs.get("aspect_ratio") != "16:9" or inputs.get("duration") != 8
    ):
        return 'reference_images require aspect_ratio "16:9" and duration 8'
    return None


_BANANA_RATIOS = (
    "match_input_image",
    "1:1",
    "2:3",
    "3:2",
    "3:4",
    "4:3",
    "4:5",
    "5:4",
    "9:16",
    "16:9",
    "21:9",
)


def _banana(name: str, max_images: int | None) -> ModelSchema:
    return ModelSchema(
        name,
        {
            "prompt": _text(required=True),
            "image_input": _uris(max_items=max_images, default=[]),
            "aspect_ratio": _enum(*_BANANA_RATIOS, default="match_input_image"),
            "output_format": _enum("jpg", "png", default="jpg"),
        },
        output="image",
    )


def _wan25(name: str, resolutions: tuple[str, ...]) -> ModelSchema:
    return ModelSchema(
        name,
        {
            "image": _uri(),
            "prompt": _text(),
            "negative_prompt": _text(),
            "audio": _uri(),
            "duration": _enum(5, 10, default=5, kind="integer"),
            "resolution": _enum(*resolutions, default="720p"),
            "enable_prompt_expansion": _flag(True),
            "seed": _int(),
        },
    )


_VEO3_FIELDS: dict[str, InputField] = {
    "prompt": _text(),
    "negative_prompt": _text(),
    "image": _uri(),
    "aspect_ratio": _enum("16:9", "9:16", default="16:9"),
    "duration": _enum(4, 6, 8, default=8, kind="integer"),
    "resolution": _enum("720p", "1080p", default="1080p"),
    "generate_audio": _flag(True),
    "seed": _int(),
}

# Every model of reference §10 except openai/sora-2, whose API was shut down (it answers 404 here).
# Only fields the reference marks required are required; "prompt ... required in practice" counts as required.
OFFICIAL_MODELS: dict[str, ModelSchema] = {
    schema.name: schema
    for schema in (
        ModelSchema(
            "kwaivgi/kling-v2.1",
            {
                "prompt": _text(required=True),
                "start_image": _uri(required=True),
                "end_image": _uri(),
                "mode": _enum("standard", "pro", default="standard"),
                "duration": _enum(5, 10, default=5, kind="integer"),
                "negative_prompt": _text(default=""),
            },
            rules=(_kling_end_image,),
        ),
        ModelSchema(
            "kwaivgi/kling-v2.5-turbo-pro",
            {
                "prompt": _text(),
                "negative_prompt": _text(),
                "start_image": _uri(),
                "end_image": _uri(),
                "aspect_ratio": _enum("16:9", "9:16", "1:1", default="16:9"),
                "duration": _enum(5, 10, kind="integer"),
            },
        ),
        _banana("google/nano-banana", None),
        _banana("google/nano-banana-2", 14),
        ModelSchema(
            "wan-video/wan-2.2-i2v-fast",
            {
                "image": _uri(required=True),
                "prompt": _text(),
                "last_image": _uri(),
                "resolution": _enum("480p", "720p", default="480p"),
                "num_frames": _int(81, 81, 121),
                "frames_per_second": _int(16, 5, 30),
                "go_fast": _flag(True),
                "sample_shift": InputField("number", default=12, minimum=1, maximum=20),
                "interpolate_output": _flag(False),
                "disable_safety_checker": _flag(False),
                "seed": _int(),
            },
        ),
        _wan25("wan-video/wan-2.5-i2v", ("480p", "720p", "1080p")),
        _wan25("wan-video/wan-2.5-i2v-fast", ("720p", "1080p")),
        ModelSchema(
            "minimax/hailuo-02",
            {
                "prompt": _text(),
                "first_frame_image": _uri(),
                "last_frame_image": _uri(),
                "duration": _enum(6, 10, default=6, kind="integer"),
                "resolution": _enum("512p", "768p", "1080p", default="1080p"),
                "prompt_optimizer": _flag(True),
            },
            rules=(_hailuo_ten_seconds,),
        ),
        ModelSchema("google/veo-3", _VEO3_FIELDS),
        ModelSchema("google/veo-3-fast", _VEO3_FIELDS),
        ModelSchema(
            "google/veo-3.1",
            {**_VEO3_FIELDS, "last_frame": _uri(), "reference_images": _uris(max_items=3, min_items=1)},
            rules=(_veo_reference_images,),
        ),
        ModelSchema(
            "bytedance/seedance-1-pro",
            {
                "prompt": _text(),
                "image": _uri(),
                "last_frame_image": _uri(),
                # The 2-12 range is unconfirmed in the reference (add_model() replaces a schema).
                "duration": _int(5, 2, 12),
                "resolution": _enum("480p", "720p", "1080p", default="1080p"),
                "aspect_ratio": _enum("16:9", "4:3", "1:1", "3:4", "9:16", "21:9", "9:21", default="16:9"),
                "fps": _enum(24, default=24, kind="integer"),
                "camera_fixed": _flag(False),
                "seed": _int(),
            },
        ),
    )
}

_JSON_TYPES = {"string": "string", "uri": "string", "uri_list": "array", "integer": "integer"}


def _json_type(value: Any) -> str:
    """The JSON type name of a decoded value."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    return "array" if isinstance(value, list) else "object"


def _is_uri(value: Any) -> bool:
    """A file input: an http(s) URL or a data URL (plain http is allowed so local test servers work)."""
    return isinstance(value, str) and value.startswith(("https://", "http://", "data:"))


def _invalid(kind: str, name: str, description: str) -> dict[str, str]:
    return {"type": kind, "field": f"input.{name}", "description": description}


def _check_field(name: str, spec: InputField, value: Any, coerce: bool) -> tuple[Any, dict[str, str] | None]:
    """The (possibly coerced) value and its first problem, if any.

    The reference names the types ``enum``, ``required``, ``number_lte`` and ``additional_property_not_allowed``
    and quotes the enum and required descriptions. Reference silent on the rest: ``invalid_type``,
    ``number_gte``, ``format``, ``array_min_items``/``array_max_items`` and their wording are ours.
    """
    if coerce and spec.kind in ("integer", "number") and isinstance(value, str):
        with contextlib.suppress(ValueError):
            value = int(value) if spec.kind == "integer" else float(value)
    given = _json_type(value)
    expected = _JSON_TYPES.get(spec.kind, spec.kind)
    type_ok = given == expected or (expected == "number" and given == "integer")
    if not type_ok:
        return value, _invalid("invalid_type", name, f"Invalid type. Expected: {expected}, given: {given}")
    items = value if spec.kind == "uri_list" else [value] if spec.kind == "uri" else []
    if not all(_is_uri(item) for item in items):
        return value, _invalid("format", name, f"{name} must be a valid URI")
    if spec.min_items is not None and len(value) < spec.min_items:
        return value, _invalid("array_min_items", name, f"{name} must have at least {spec.min_items} items")
    if spec.max_items is not None and len(value) > spec.max_items:
        return value, _invalid("array_max_items", name, f"{name} must have at most {spec.max_items} items")
    if spec.choices and value not in spec.choices:
        allowed = ", ".join(json.dumps(choice) for choice in spec.choices)
        return value, _invalid("enum", name, f"{name} must be one of the following: {allowed}")
    if spec.minimum is not None and value < spec.minimum:
        return value, _invalid("number_gte", name, f"{name} must be greater than or equal to {spec.minimum}")
    if spec.maximum is not None and value > spec.maximum:
        return value, _invalid("number_lte", name, f"{name} must be less than or equal to {spec.maximum}")
    return value, None


def validate_input(
    schema: ModelSchema, inputs: Mapping[str, Any], *, coerce_numeric_strings: bool = False
) -> tuple[dict[str, Any], list[dict[str, str]]]:
    """Check ``inputs`` against a model: (the coerced input, the ``invalid_fields`` of a 422)."""
    problems = [
        _invalid("additional_property_not_allowed", name, f"Unexpected field '{name}'")
        for name in inputs
        if name not in schema.fields
    ]
    coerced = dict(inputs)
    for name, spec in schema.fields.items():
        if name not in inputs:
            if spec.required:
                problems.append(_invalid("required", name, f"{name} is required"))
            continue
        coerced[name], problem = _check_field(name, spec, inputs[name], coerce_numeric_strings)
        if problem is not None:
            problems.append(problem)
    return coerced, problems


def parse_duration(value: str) -> float | None:
    """A ``Cancel-After`` duration in seconds, or None when unparsable.

    The reference confirms ``15s`` and ``1m``; the rest of the grammar is unconfirmed. The emulator accepts a
    decimal number with ``ms``, ``s``, ``m`` or ``h`` (replace ``ReplicateEmulator.cancel_after_parser`` to
    narrow or widen it).
    """
    match = re.fullmatch(r"(\d+(?:\.\d+)?)(ms|s|m|h)", value.strip())
    if match is None:
        return None
    scale = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}[match.group(2)]
    return float(match.group(1)) * scale


# ----------------------------------------------------------------------------------------------------
# Webhook signatures (reference §7.2: Standard Webhooks, symmetric v1)
# ----------------------------------------------------------------------------------------------------


def sign(secret: str, webhook_id: str, timestamp: int, body: bytes) -> str:
    """``v1,<base64 HMAC-SHA256 of "{id}.{timestamp}.{body}">`` keyed with the decoded ``whsec_`` secret."""
    key = base64.b64decode(secret.removeprefix("whsec_"))
    mac = hmac.new(key, f"{webhook_id}.{timestamp}.".encode() + body, hashlib.sha256).digest()
    return "v1," + base64.b64encode(mac).decode()


def webhook_headers(secret: str, webhook_id: str, timestamp: int, body: bytes) -> dict[str, str]:
    """The headers of one delivery attempt."""
    return {
        "Content-Type": "application/json",
        "webhook-id": webhook_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": sign(secret, webhook_id, timestamp, body),
    }


def encode_webhook(prediction: Mapping[str, Any]) -> bytes:
    """The delivery body: the bare prediction object. Reference silent on the bytes: compact JSON."""
    return json.dumps(prediction, separators=(",", ":")).encode()


# ----------------------------------------------------------------------------------------------------
# Configuration objects
# ----------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class WebhookPlan:
    """How a prediction's webhook messages are delivered."""

    send: bool = True  # False: every message is lost
    lost_events: frozenset[str] = frozenset()  # messages of these events are lost
    copies: int = 1  # 2: each message delivered twice (same webhook-id)
    delay_s: float = 0.0  # before the first attempt of each message
    # Reference: failed deliveries are retried "a few times", count and schedule unconfirmed.
    retries: int = 3  # extra attempts after a non-2xx answer or a transport error
    retry_base_s: float = 0.05  # backoff doubles from here ...
    retry_max_s: float = 1.0  # ... up to this
    forged: bool = False  # signed with FORGED_WEBHOOK_SECRET instead of the account's secret
    timestamp_offset_s: int = 0  # e.g. -600 for a stale webhook-timestamp


@dataclass(frozen=True)
class PredictionPlan:
    """How one prediction behaves, from creation to output and webhooks."""

    start_s: float | None = 0.0  # time in ``starting``; None: until ReplicateEmulator.start()
    run_s: float | None = 0.0  # time in ``processing``; None: until ReplicateEmulator.finish()
    output: MediaFile | bytes | None = None  # the output file; None: a default for the model's kind
    result: Any = None  # instead of a file URL: this JSON output (or a callable of the Prediction)
    error: str | None = None  # fail with this error (after run_s)
    logs: tuple[str, ...] = ("Loading model", "Generating video")
    log_interval_s: float = 0.0  # 0: all lines at once when processing starts
    inline_output_on_wait: bool = False  # ``Prefer: wait`` answers a finished output as a ``data:`` URL
    reported_model: str | None = None  # the response's ``model`` differs from the requested path
    webhook: WebhookPlan = field(default_factory=WebhookPlan)


@dataclass(frozen=True)
class Fault:
    """HTTP-level misbehaviour injected into matching calls (``status_code`` None: only ``delay_s``)."""

    op: Op
    status_code: int | None = None
    times: int | None = 1  # None: forever
    delay_s: float = 0.0
    retry_after: int | None = None  # Retry-After header (seconds); the reference documents none on 429
    body: Any = None  # default: the reference's problem body for the status code
    headers: Mapping[str, str] = field(default_factory=dict)
    model: str | None = None  # owner/name
    prediction_id: str | None = None
    after: bool = False  # the call takes effect first, then the delay and the error replace its answer


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
    at: float = field(default_factory=time.time)

    def json(self) -> Any:
        """The body parsed as JSON."""
        return json.loads(self.body)


@dataclass
class Prediction:
    """The emulator's state of one prediction."""

    id: str
    model: str
    version: str
    schema: ModelSchema
    input: dict[str, Any] | None  # as sent (None after data removal)
    effective_input: dict[str, Any]  # coerced, with defaults
    webhook: str | None
    events: frozenset[str]
    headers: dict[str, str]
    plan: PredictionPlan
    seq: int
    created_at: float
    status: Status = "starting"
    started_at: float | None = None
    completed_at: float | None = None
    output: Any = None
    output_media: MediaFile | None = None
    logs: list[str] = field(default_factory=list)
    error: str | None = None
    deadline: float | None = None
    data_removed: bool = False
    fetched_inputs: dict[str, bytes] = field(default_factory=dict)
    _output_path: str | None = field(default=None, repr=False)
    _timers: list[asyncio.TimerHandle] = field(default_factory=list, repr=False)
    _done: asyncio.Event = field(default_factory=asyncio.Event, repr=False)
    _throttle_last: dict[str, float] = field(default_factory=dict, repr=False)
    _throttle_pending: set[str] = field(default_factory=set, repr=False)

    @property
    def terminal(self) -> bool:
        """Whether the prediction has finished (succeeded, failed, canceled or aborted)."""
        return self.status in TERMINAL


@dataclass(frozen=True)
class SignedWebhook:
    """A webhook message as Replicate would send it: headers and the exact body bytes."""

    webhook_id: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        """The body parsed as JSON."""
        return json.loads(self.body)


@dataclass
class WebhookDelivery:
    """One webhook POST the emulator made, and how the receiver answered."""

    prediction_id: str
    event: str
    url: str
    webhook_id: str
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
class UploadedFile:
    """A file uploaded through the Files API."""

    id: str
    name: str
    content_type: str
    data: bytes
    metadata: dict[str, Any]
    created_at: float


# ----------------------------------------------------------------------------------------------------
# Helpers
# ----------------------------------------------------------------------------------------------------


def _rfc3339(ns: int) -> str:
    """Go's RFC 3339 with nanoseconds, as Replicate writes timestamps: UTC, ``Z``, trailing zeros dropped."""
    seconds, fraction = divmod(ns, 1_000_000_000)
    digits = f"{fraction:09d}".rstrip("0")
    return (
        datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%S")
        + (f".{digits}" if digits else "")
        + "Z"
    )


class _Clock:
    """Monotonic timestamps whose text has a varying number of fractional digits (2, 3, 6, 8 or 9).

    Replicate's timestamps show variable digits (``.04Z``, ``.245Z``, ``.99397566Z``). Each stamp is taken in
    nanoseconds and cut to the next precision of the cycle, so its text is exact and later stamps never read
    earlier; ``iso()`` renders a stamp as taken (other times with all nine digits).
    """

    _DIGITS = (2, 3, 6, 8, 9)

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._last_ns = 0
        self._count = 0
        self._text: dict[float, str] = {}

    def now(self) -> float:
        """A new stamp in seconds."""
        with self._lock:
            ns = time.time_ns()
            unit: int = 10 ** (9 - self._DIGITS[self._count % len(self._DIGITS)])
            ns -= ns % unit
            ns = max(ns, self._last_ns + 1000)  # 1 µs apart at least: distinct as floats too
            self._count += 1
            self._last_ns = ns
            stamp = ns / 1e9
            self._text[stamp] = _rfc3339(ns)
            return stamp

    def iso(self, t: float) -> str:
        """The text of a stamp (or of any time)."""
        with self._lock:
            text = self._text.get(t)
        return text if text is not None else _rfc3339(round(t * 1e9))


def _parse_iso(value: str) -> float | None:
    """A timestamp query parameter in seconds, or None when unparsable."""
    try:
        return datetime.fromisoformat(value).timestamp()
    except ValueError:
        return None


def _new_prediction_id() -> str:
    """26 lowercase alphanumerics, like ``gm3qorzdhgbfurvjtvhg6dckhu``."""
    return "".join(secrets.choice(_ID_ALPHABET) for _ in range(26))


def _new_webhook_id() -> str:
    """A message id like ``msg_2KWPBgLlAfxdpx2AI54pPJ85f4W`` (no ``.``, as Standard Webhooks asks)."""
    return "msg_" + "".join(secrets.choice(_MSG_ALPHABET) for _ in range(27))


@functools.cache
def default_image_bytes(output_format: str = "jpg") -> bytes:
    """A small real JPEG or PNG (what an image model returns by default)."""
    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (16, 16), (200, 80, 40)).save(buffer, format="PNG" if output_format == "png" else "JPEG")
    return buffer.getvalue()


def _problem(status: int, body: Any, headers: Mapping[str, str] | None = None) -> Response:
    """An ``application/problem+json`` response."""
    return JSONResponse(body, status_code=status, headers=dict(headers or {}), media_type=PROBLEM_JSON)


def _json(body: Any, status: int = 200, headers: Mapping[str, str] | None = None) -> Response:
    """A JSON response."""
    return JSONResponse(body, status_code=status, headers=dict(headers or {}))


def _throttled_body(reset_s: int) -> dict[str, Any]:
    return {"detail": f"Request was throttled. Your rate limit resets in ~{reset_s}s."}


def _default_fault_body(status: int) -> Any:
    """The reference's problem body for a status code (our own minimal one for the others)."""
    known: dict[int, Any] = {
        401: _UNAUTHENTICATED,
        402: _INSUFFICIENT_CREDIT,
        404: _NOT_FOUND,
        422: _BAD_VERSION,
        429: _throttled_body(30),
    }
    return known.get(status) or {"detail": f"Injected error {status}", "status": status}


def _prefer_wait(header: str) -> int | None:
    """Seconds asked for by ``Prefer: wait`` / ``wait=N`` (1..60); other values are ignored (RFC 7240)."""
    for token in header.split(","):
        name, _, value = token.strip().partition("=")
        if name.strip().lower() != "wait":
            continue
        if not value:
            return _MAX_WAIT_S
        if value.strip().isdigit() and 1 <= int(value) <= _MAX_WAIT_S:
            return int(value)
    return None


# ----------------------------------------------------------------------------------------------------
# The emulator
# ----------------------------------------------------------------------------------------------------


class ReplicateEmulator(BackgroundServer):
    """An in-process Replicate API and delivery host on one local HTTP server; see the module docstring."""

    _server_label = "replicate emulator"
    _server_thread = "replicate-emulator"

    def __init__(
        self,
        *,
        token: str = DEFAULT_TOKEN,
        webhook_secret: str = DEFAULT_WEBHOOK_SECRET,
        plan: PredictionPlan | None = None,
        models: Mapping[str, ModelSchema] | None = None,
        page_size: int = 100,
        rate_limits: Mapping[str, int] | None = None,
        rate_window_s: float = 60.0,
        retry_after_on_429: bool = True,
        max_wait_s: float = _MAX_WAIT_S,
        wait_expired_status: Status | None = "starting",
        default_events: tuple[str, ...] = EVENTS,
        webhook_throttle_s: float = 0.5,
        coerce_numeric_strings: bool = False,
        require_https_webhooks: bool = False,
        require_delivery_auth: bool = False,
        fetch_inputs: bool = False,
        data_retention_s: float = 3600.0,
        tls: bool = False,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        super().__init__(host=host, port=port, tls=tls, log_filter=DropTruncatedLogs())
        self.tokens: set[str] = {token}
        self.token = token
        self.webhook_secret = webhook_secret
        self.plan = plan if plan is not None else PredictionPlan()
        self.models: dict[str, ModelSchema] = dict(OFFICIAL_MODELS if models is None else models)
        self.page_size = page_size
        # Reference §6: 600 creates/min, 3000/min for everything else. None for a kind: unlimited.
        self.rate_limits: dict[str, int] = dict(rate_limits or {"create": 600, "other": 3000})
        self.rate_window_s = rate_window_s
        # Reference: Retry-After on 429 is undocumented; the built-in limiter sends it unless this is False.
        self.retry_after_on_429 = retry_after_on_429
        # Real Replicate holds a ``Prefer: wait`` request up to 60 s; tests may hold it shorter.
        self.max_wait_s = max_wait_s
        # Documented: an unfinished ``Prefer: wait`` answer says ``starting``. None: the actual status.
        self.wait_expired_status = wait_expired_status
        # Reference: the events sent when no filter is given are unconfirmed; default here: all of them.
        self.default_events = default_events
        self.webhook_throttle_s = webhook_throttle_s
        # Reference: whether "5" is accepted for an integer input is unconfirmed; default: rejected (422).
        self.coerce_numeric_strings = coerce_numeric_strings
        # Replicate wants HTTPS webhooks; off by default so plain-http test receivers work.
        self.require_https_webhooks = require_https_webhooks
        # Reference: fetching outputs "may require" the Authorization header.
        self.require_delivery_auth = require_delivery_auth
        # Reference silent on input fetching: off by default; on, URI inputs are fetched when the prediction
        # starts (bytes kept in ``Prediction.fetched_inputs``) and an unreachable one fails the prediction.
        self.fetch_inputs = fetch_inputs
        self.data_retention_s = data_retention_s
        self.cancel_after_parser: Callable[[str], float | None] = parse_duration
        self.sink_status = 200
        self.requests: list[RecordedRequest] = []
        self.webhook_deliveries: list[WebhookDelivery] = []
        self.sink: list[ReceivedWebhook] = []
        self.files: dict[str, MediaFile] = {}  # delivery URL path -> file
        self.uploads: dict[str, UploadedFile] = {}
        self._clock = _Clock()
        self._lock = threading.RLock()
        self._changed = threading.Condition(self._lock)
        self._predictions: dict[str, Prediction] = {}
        self._versions: dict[str, str] = {}  # 64-hex version id -> owner/name
        self._seq = 0
        self._model_plans: dict[str, PredictionPlan] = {}
        self._next_plans: list[tuple[str | None, PredictionPlan]] = []
        self._faults: list[list[Any]] = []  # [Fault, remaining]
        self._windows: dict[str, list[float]] = {}  # rate-limit kind -> [window start, count]
        self._sink_script: list[int] = []
        self._tasks: set[asyncio.Task[Any]] = set()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._http: httpx.AsyncClient | None = None
        self.app = self._build_app()

    # ---------------------------------------------------------------- addresses

    @property
    def api_url(self) -> str:
        """Stand-in for ``https://api.replicate.com/v1`` (the v1 Python client wants ``base_url`` instead)."""
        return self.base_url + API_PREFIX

    @property
    def delivery_url(self) -> str:
        """Stand-in for ``https://replicate.delivery``."""
        return self.base_url + DELIVERY_PREFIX

    @property
    def sink_url(self) -> str:
        """A webhook receiver on the emulator that records deliveries in ``sink``."""
        return self.base_url + SINK_PATH

    def env(self) -> dict[str, str]:
        """Environment variables pointing our settings at the emulator (plus SSL_CERT_FILE with ``tls``)."""
        env = {"REPLICATE_API_TOKEN": self.token, "REPLICATE_API_URL": self.base_url}
        if self.ca_file is not None:
            env["SSL_CERT_FILE"] = self.ca_file
        return env

    def verify(self) -> ssl.SSLContext | bool:
        """TLS verification trusting the emulator's certificate as well as the usual CAs (True without tls)."""
        if self.ca_file is None:
            return True
        context = ssl.create_default_context(cafile=certifi.where())
        context.load_verify_locations(cafile=self.ca_file)
        return context

    def http_client(self, **kwargs: Any) -> httpx.Client:
        """An httpx client that trusts the emulator (its certificate when ``tls``)."""
        return httpx.Client(verify=self.verify(), **kwargs)

    def auth_headers(self) -> dict[str, str]:
        """``Authorization: Bearer <token>``."""
        return {"Authorization": f"Bearer {self.token}"}

    # ---------------------------------------------------------------- configuration

    def set_plan(self, plan: PredictionPlan, *, model: str | None = None) -> None:
        """Set the default plan for all predictions, or for one model (owner/name)."""
        with self._lock:
            if model is None:
                self.plan = plan
            else:
                self._model_plans[model] = plan

    def push_plan(self, plan: PredictionPlan, *, model: str | None = None, times: int = 1) -> None:
        """Use ``plan`` for the next ``times`` predictions (of ``model`` if given), before any default plan."""
        with self._lock:
            self._next_plans.extend([(model, plan)] * times)

    def add_fault(self, fault: Fault) -> Fault:
        """Inject a fault into matching calls (until used up ``fault.times``); the first match fires."""
        with self._lock:
            self._faults.append([fault, fault.times])
        return fault

    def clear_faults(self) -> None:
        """Remove every injected fault."""
        with self._lock:
            self._faults.clear()

    def add_model(self, schema: ModelSchema) -> None:
        """Make a model available (or replace its schema)."""
        with self._lock:
            self.models[schema.name] = schema

    def add_version(self, model: str, version_id: str | None = None) -> str:
        """Register a 64-hex version id of ``model`` for ``POST /v1/predictions``; returns it."""
        version_id = version_id or secrets.token_hex(32)
        with self._lock:
            self._versions[version_id] = model
        return version_id

    def add_file(self, path: str, media: MediaFile) -> str:
        """Serve ``media`` on the delivery host at ``/{path}``; returns its URL."""
        url_path = f"{DELIVERY_PREFIX}/{path.lstrip('/')}"
        with self._lock:
            self.files[url_path] = media
        return self.base_url + url_path

    def fail_sink(self, times: int, status: int = 500) -> None:
        """Make the webhook sink answer ``status`` to its next ``times`` POSTs."""
        with self._lock:
            self._sink_script.extend([status] * times)

    # ---------------------------------------------------------------- inspection and control

    def prediction(self, prediction_id: str) -> Prediction:
        """The live state of one prediction."""
        with self._lock:
            return self._predictions[prediction_id]

    def predictions(self) -> list[Prediction]:
        """Every prediction so far, in creation order."""
        with self._lock:
            return list(self._predictions.values())

    def requests_for(self, op: str | None = None, *, method: str | None = None) -> list[RecordedRequest]:
        """Recorded requests, filtered by operation name and/or HTTP method."""
        with self._lock:
            return [
                r
                for r in self.requests
                if (op is None or r.op == op) and (method is None or r.method == method.upper())
            ]

    def wait_for(self, prediction_id: str, status: Status | None = None, timeout: float = 5.0) -> Prediction:
        """Block until a prediction reaches ``status`` or later (None: any terminal status); returns it."""
        target = _RANK.get(status or "", 2)

        def reached() -> bool:
            p = self._predictions.get(prediction_id)
            return p is not None and _RANK.get(p.status, 2) >= target

        with self._changed:
            if not self._changed.wait_for(reached, timeout):
                raise TimeoutError(
                    f"prediction {prediction_id} did not reach {status or 'a terminal status'}"
                )
            return self._predictions[prediction_id]

    def wait_for_webhooks(
        self,
        count: int = 1,
        *,
        prediction_id: str | None = None,
        event: str | None = None,
        timeout: float = 5.0,
    ) -> list[WebhookDelivery]:
        """Block until at least ``count`` matching webhook attempts were made; returns them."""

        def matching() -> list[WebhookDelivery]:
            return [
                d
                for d in self.webhook_deliveries
                if (prediction_id is None or d.prediction_id == prediction_id)
                and (event is None or d.event == event)
            ]

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

    def start_prediction(self, prediction_id: str) -> Prediction:
        """Move a ``starting`` prediction to ``processing`` now (for plans with ``start_s=None``)."""
        self._call_in_loop(lambda: self._start(self._predictions[prediction_id]))
        return self.prediction(prediction_id)

    def finish(self, prediction_id: str, *, error: str | None = None) -> Prediction:
        """Finish a prediction now, as its plan says (or failed with ``error``); returns it."""
        self._call_in_loop(lambda: self._complete(self._predictions[prediction_id], error=error))
        return self.prediction(prediction_id)

    def append_log(self, prediction_id: str, line: str) -> None:
        """Add a log line to a processing prediction (a ``logs`` event, throttled)."""
        self._call_in_loop(lambda: self._append_log(self._predictions[prediction_id], line))

    def remove_data(self, prediction_id: str) -> Prediction:
        """Purge a finished prediction's input, output and logs now, as Replicate does after about an hour."""
        with self._lock:
            p = self._predictions[prediction_id]
            if not p.terminal:
                raise ValueError(f"prediction {prediction_id} has not finished")
            self._purge(p)
            return p

    def reset(self) -> None:
        """Forget records, faults, plans and rate-limit windows (predictions and files stay)."""
        with self._lock:
            self.requests.clear()
            self.webhook_deliveries.clear()
            self.sink.clear()
            self._faults.clear()
            self._next_plans.clear()
            self._model_plans.clear()
            self._windows.clear()
            self._sink_script.clear()

    # ---------------------------------------------------------------- the prediction object

    def prediction_json(self, p: Prediction) -> dict[str, Any]:
        """The prediction object as the API shows it now."""
        with self._lock:
            self._expire(p)
            body: dict[str, Any] = {
                "id": p.id,
                "model": p.plan.reported_model or p.model,
                "version": p.version,
                "input": p.input,
                "logs": None if p.data_removed else "\n".join(p.logs),
                "output": p.output,
                "data_removed": p.data_removed,
                "error": p.error,
                "status": p.status,
                "created_at": self._clock.iso(p.created_at),
                "urls": {
                    "cancel": f"{self.api_url}/predictions/{p.id}/cancel",
                    "get": f"{self.api_url}/predictions/{p.id}",
                    "web": f"{self.base_url}/p/{p.id}",  # Replicate's web page; not served here
                },
            }
            if p.started_at is not None:
                body["started_at"] = self._clock.iso(p.started_at)
            if p.completed_at is not None:
                body["completed_at"] = self._clock.iso(p.completed_at)
                predict = p.completed_at - p.started_at if p.started_at is not None else 0.0
                body["metrics"] = {
                    "predict_time": round(predict, 6),
                    "total_time": round(p.completed_at - p.created_at, 6),
                }
            if p.deadline is not None:
                body["deadline"] = self._clock.iso(p.deadline)
            return body

    def _expire(self, p: Prediction) -> None:
        """Apply data retention lazily."""
        if (
            p.completed_at is not None
            and not p.data_removed
            and time.time() - p.completed_at > self.data_retention_s
        ):
            self._purge(p)

    def _purge(self, p: Prediction) -> None:
        """Delete inputs, outputs and logs: ``output`` null, ``data_removed`` true (reference §4).

        Reference silent on ``input`` and ``logs`` afterwards: both null here; the output file is gone too.
        """
        p.data_removed = True
        p.input = p.output = None
        p.logs = []
        if p._output_path is not None:
            self.files.pop(p._output_path, None)

    # ---------------------------------------------------------------- webhooks: build, sign, send

    def build_webhook(
        self,
        prediction_id: str | None = None,
        *,
        body: Mapping[str, Any] | bytes | None = None,
        webhook_id: str | None = None,
        timestamp: int | None = None,
        timestamp_offset_s: int = 0,
        secret: str | None = None,
    ) -> SignedWebhook:
        """A signed message (not sent): a prediction's current object by default, or any ``body``."""
        if body is None:
            if prediction_id is None:
                raise ValueError("give a prediction_id or a body")
            body = self.prediction_json(self.prediction(prediction_id))
        raw = body if isinstance(body, bytes) else encode_webhook(body)
        msg_id = webhook_id or _new_webhook_id()
        ts = (int(time.time()) if timestamp is None else timestamp) + timestamp_offset_s
        return SignedWebhook(msg_id, webhook_headers(secret or self.webhook_secret, msg_id, ts, raw), raw)

    def deliver_webhook(
        self, prediction_id: str, url: str | None = None, *, event: str = "completed", **build: Any
    ) -> WebhookDelivery:
        """POST a signed message for a prediction now, from the calling thread; records it."""
        target = url or self.prediction(prediction_id).webhook
        if target is None:
            raise ValueError(f"prediction {prediction_id} has no webhook URL; pass url=")
        signed = self.build_webhook(prediction_id, **build)
        status: int | None = None
        error: str | None = None
        try:
            with self.http_client(timeout=_WEBHOOK_TIMEOUT_S) as client:
                status = client.post(target, content=signed.body, headers=signed.headers).status_code
        except httpx.HTTPError as exc:
            error = f"{type(exc).__name__}: {exc}"
        record = WebhookDelivery(
            prediction_id, event, target, signed.webhook_id, signed.headers, signed.body, 0, 0, status, error
        )
        self._record_delivery(record)
        return record

    def _record_delivery(self, record: WebhookDelivery) -> None:
        with self._changed:
            self.webhook_deliveries.append(record)
            self._changed.notify_all()

    def _emit(self, p: Prediction, event: Event) -> None:
        """Send a message for ``event`` if the prediction asked for it (loop thread, under the lock).

        ``output`` and ``logs`` are throttled to one per ``webhook_throttle_s``. Reference silent on the
        details: each of the two events is throttled on its own, a change inside the window is sent once when
        the window ends, and a pending one is dropped if the prediction finishes first (``completed`` carries
        the final state). ``start`` and ``completed`` are always sent when asked for.
        """
        if p.webhook is None or event not in p.events:
            return
        if event in ("output", "logs") and self.webhook_throttle_s > 0:
            now = time.monotonic()
            last = p._throttle_last.get(event)
            if last is not None and now - last < self.webhook_throttle_s:
                if event not in p._throttle_pending:
                    p._throttle_pending.add(event)
                    wait = self.webhook_throttle_s - (now - last)
                    asyncio.get_running_loop().call_later(wait, self._flush_throttled, p, event)
                return
            p._throttle_last[event] = now
        self._send(p, event)

    def _flush_throttled(self, p: Prediction, event: Event) -> None:
        with self._lock:
            p._throttle_pending.discard(event)
            if p.terminal:
                return
            p._throttle_last[event] = time.monotonic()
            self._send(p, event)

    def _send(self, p: Prediction, event: Event) -> None:
        """Snapshot the prediction as one message and deliver it in the background."""
        body = encode_webhook(self.prediction_json(p))
        self._spawn(self._deliver(p, event, _new_webhook_id(), body))

    async def _deliver(self, p: Prediction, event: Event, webhook_id: str, body: bytes) -> None:
        """Deliver one message as the plan says: re-stamped and re-signed per attempt, same webhook-id.

        Reference silent on ordering: each message is delivered (and retried) on its own, so messages of one
        prediction can arrive out of order. Every non-2xx answer (redirects included: they are not followed)
        counts as a failure.
        """
        plan, url = p.plan.webhook, p.webhook
        if not plan.send or event in plan.lost_events or url is None or self._http is None:
            return
        await asyncio.sleep(plan.delay_s)
        secret = FORGED_WEBHOOK_SECRET if plan.forged else self.webhook_secret
        for copy in range(plan.copies):
            for attempt in range(plan.retries + 1):
                ts = int(time.time()) + plan.timestamp_offset_s
                headers = webhook_headers(secret, webhook_id, ts, body)
                status: int | None = None
                error: str | None = None
                try:
                    response = await self._http.post(url, content=body, headers=headers)
                    status = response.status_code
                except httpx.HTTPError as exc:
                    error = f"{type(exc).__name__}: {exc}"
                record = WebhookDelivery(
                    p.id, event, url, webhook_id, headers, body, copy, attempt, status, error
                )
                self._record_delivery(record)
                if record.ok:
                    break
                await asyncio.sleep(min(plan.retry_base_s * 2**attempt, plan.retry_max_s))

    # ---------------------------------------------------------------- the event loop side

    def _call_in_loop(self, fn: Callable[[], Any]) -> Any:
        """Run ``fn`` on the server's loop and wait for its result."""
        if self._loop is None:
            raise RuntimeError("the emulator is not running")

        async def call() -> Any:
            return fn()

        return asyncio.run_coroutine_threadsafe(call(), self._loop).result(10)

    def _spawn(self, coro: Awaitable[Any]) -> None:
        """Run a background coroutine on the loop, cancelled at shutdown."""

        async def run() -> Any:
            return await coro

        task = asyncio.get_running_loop().create_task(run())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    @contextlib.asynccontextmanager
    async def _lifespan(self, app: Starlette) -> AsyncIterator[None]:
        """Own the loop-side resources: the webhook HTTP client and background tasks."""
        self._loop = asyncio.get_running_loop()
        self._http = httpx.AsyncClient(
            timeout=_WEBHOOK_TIMEOUT_S, verify=self.verify(), follow_redirects=False
        )
        try:
            yield
        finally:
            with self._lock:
                for p in self._predictions.values():
                    self._cancel_timers(p)
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

    def _choose_plan(self, model: str) -> PredictionPlan:
        """The plan for a new prediction: a pushed one-shot plan, else the model's, else the default."""
        with self._lock:
            for i, (wanted, plan) in enumerate(self._next_plans):
                if wanted is None or wanted == model:
                    del self._next_plans[i]
                    return plan
            return self._model_plans.get(model) or self.plan

    @staticmethod
    def _cancel_timers(p: Prediction) -> None:
        for timer in p._timers:
            timer.cancel()
        p._timers.clear()

    def _later(self, p: Prediction, delay: float, fn: Callable[..., Any], *args: Any) -> None:
        p._timers.append(asyncio.get_running_loop().call_later(delay, fn, *args))

    def _start(self, p: Prediction) -> None:
        """starting -> processing: the ``start`` event, the plan's logs, then the run (loop thread)."""
        with self._lock:
            if p.status != "starting":
                return
            p.status = "processing"
            p.started_at = self._clock.now()
            self._emit(p, "start")
            if p.plan.log_interval_s > 0:
                for i, line in enumerate(p.plan.logs):
                    self._later(p, i * p.plan.log_interval_s, self._append_log, p, line)
            elif p.plan.logs:
                p.logs.extend(p.plan.logs)
                self._emit(p, "logs")
        if self.fetch_inputs:
            self._spawn(self._fetch_then_run(p))
        else:
            self._schedule_run(p)
        self._notify()

    def _schedule_run(self, p: Prediction) -> None:
        if p.plan.run_s is not None and not p.terminal:
            self._later(p, p.plan.run_s, self._complete, p)

    def _append_log(self, p: Prediction, line: str) -> None:
        with self._lock:
            if p.status != "processing":
                return
            p.logs.append(line)
            self._emit(p, "logs")
        self._notify()

    def _complete(self, p: Prediction, outcome: Status | None = None, error: str | None = None) -> None:
        """Finish a prediction with its planned (or the given) outcome and send ``completed`` (loop thread)."""
        with self._lock:
            if p.terminal:
                return
            self._cancel_timers(p)
            if outcome is None:
                error = (
                    error
                    or p.plan.error
                    or next((msg for rule in p.schema.rules if (msg := rule(p.effective_input))), None)
                )
                outcome = "failed" if error else "succeeded"
            if outcome in ("succeeded", "failed") and p.status == "starting":
                p.status = "processing"
                p.started_at = self._clock.now()
                self._emit(p, "start")
            if outcome == "succeeded":
                p.output = self._make_output(p)
                if p.output is not None:
                    self._emit(p, "output")  # the output appears while still processing
            p.status = outcome
            p.error = error if outcome == "failed" else None
            p.completed_at = self._clock.now()
            p._done.set()
            # Reference: ``completed`` is for succeeded/failed/canceled; silent on aborted (sent here too).
            self._emit(p, "completed")
        self._notify()

    def _make_output(self, p: Prediction) -> Any:
        """The output of a successful prediction: a single file URL on the delivery host, or the plan's JSON."""
        if p.plan.result is not None:
            return p.plan.result(p) if callable(p.plan.result) else p.plan.result
        media = p.plan.output
        if not isinstance(media, MediaFile):
            media = self._default_media(p, media)
        suffix = Path(media.file_name).suffix or ".bin"
        name = "tmp" + _new_prediction_id()[:8] + suffix  # like replicate.delivery's tmpdyra4cuz.mp4
        path = f"{DELIVERY_PREFIX}/xezq/{secrets.token_urlsafe(24)}/{name}"
        self.files[path] = media
        p.output_media = media
        p._output_path = path
        return self.base_url + path

    @staticmethod
    def _default_media(p: Prediction, data: bytes | None) -> MediaFile:
        """The output file for plain bytes (or none): an MP4 for video models, a JPEG/PNG for image models."""
        if p.schema.output == "video":
            return MediaFile(data=data)
        fmt = "png" if p.effective_input.get("output_format") == "png" else "jpg"
        content_type = "image/png" if fmt == "png" else "image/jpeg"
        return MediaFile(
            data=data or default_image_bytes(fmt), content_type=content_type, file_name=f"output.{fmt}"
        )

    def _on_deadline(self, p: Prediction) -> None:
        """Cancel-After passed: ``aborted`` before the start, ``canceled`` while running."""
        self._complete(p, "aborted" if p.status == "starting" else "canceled")

    async def _fetch_then_run(self, p: Prediction) -> None:
        """Fetch every URI input (``fetch_inputs``), failing the prediction on the first unreachable one."""
        assert self._http is not None
        for name, spec in p.schema.fields.items():
            value = p.effective_input.get(name)
            urls = value if spec.kind == "uri_list" and isinstance(value, list) else [value]
            if spec.kind not in ("uri", "uri_list") or not value:
                continue
            for i, url in enumerate(urls):
                key = name if spec.kind == "uri" else f"{name}[{i}]"
                try:
                    p.fetched_inputs[key] = await self._fetch(str(url))
                except (httpx.HTTPError, ValueError) as exc:
                    # Reference silent on the error text of an unreachable input: ours.
                    self._complete(p, "failed", f"Failed to fetch input {name}: {exc}")
                    return
        with self._lock:
            self._schedule_run(p)

    async def _fetch(self, url: str) -> bytes:
        """The bytes behind a URI input: a data URL, one of our uploads, or any http(s) URL."""
        assert self._http is not None
        if url.startswith("data:"):
            header, _, data = url.partition(",")
            return (
                base64.b64decode(data, validate=True)
                if header.endswith(";base64")
                else unquote_to_bytes(data)
            )
        prefix = f"{self.api_url}/files/"
        with self._lock:
            upload = self.uploads.get(url[len(prefix) :]) if url.startswith(prefix) else None
        if upload is not None:
            return upload.data
        response = await self._http.get(url)
        response.raise_for_status()
        return response.content

    # ---------------------------------------------------------------- HTTP plumbing

    def _record(self, request: Request, op: Op, body: bytes) -> None:
        record = RecordedRequest(
            op=op,
            method=request.method,
            path=request.url.path,
            query=dict(request.query_params),
            headers={k.lower(): v for k, v in request.headers.items()},
            body=body,
        )
        with self._changed:
            self.requests.append(record)
            self._changed.notify_all()

    def _take_fault(self, op: Op, model: str | None, prediction_id: str | None) -> Fault | None:
        """The first live fault matching a call (using one of its ``times``)."""
        with self._lock:
            for slot in self._faults:
                f: Fault = slot[0]
                if f.op not in (op, "any") or slot[1] == 0:
                    continue
                if f.model is not None and f.model != model:
                    continue
                if f.prediction_id is not None and f.prediction_id != prediction_id:
                    continue
                if slot[1] is not None:
                    slot[1] -= 1
                return f
        return None

    @staticmethod
    def _fault_response(fault: Fault) -> Response:
        status = fault.status_code or 500
        headers = dict(fault.headers)
        if fault.retry_after is not None:
            headers["Retry-After"] = str(fault.retry_after)
        return _problem(status, _default_fault_body(status) if fault.body is None else fault.body, headers)

    def _authorized(self, request: Request) -> bool:
        """``Authorization: Bearer <token>`` (or the older ``Token <token>``) with a known token."""
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        return scheme.lower() in ("bearer", "token") and token.strip() in self.tokens

    def _rate_limit(self, op: Op) -> tuple[dict[str, str], Response | None]:
        """Fixed-window counting per kind (create / other): the ``ratelimit-*`` headers and a 429 if over."""
        kind = "create" if op == "create" else "other"
        limit = self.rate_limits.get(kind)
        if limit is None:
            return {}, None
        now = time.monotonic()
        with self._lock:
            window = self._windows.setdefault(kind, [now, 0.0])
            if now - window[0] >= self.rate_window_s:
                window[:] = [now, 0.0]
            window[1] += 1
            count, started = int(window[1]), window[0]
        reset = max(1, math.ceil(self.rate_window_s - (now - started)))
        headers = {"ratelimit-remaining": str(max(0, limit - count)), "ratelimit-reset": str(reset)}
        if count <= limit:
            return headers, None
        extra = {"Retry-After": str(reset)} if self.retry_after_on_429 else {}
        return headers, _problem(429, _throttled_body(reset), {**headers, **extra})

    async def _api(
        self,
        request: Request,
        op: Op,
        handler: Callable[[bytes], Awaitable[Response]],
        *,
        model: str | None = None,
        prediction_id: str | None = None,
    ) -> Response:
        """Every API call: record, injected fault, auth, rate limit, the handler, ``after`` faults."""
        raw = await request.body()
        self._record(request, op, raw)
        fault = self._take_fault(op, model, prediction_id)
        if fault is not None and not fault.after:
            await asyncio.sleep(fault.delay_s)
            if fault.status_code is not None:
                return self._fault_response(fault)
        if not self._authorized(request):
            return _problem(401, _UNAUTHENTICATED)
        limit_headers, throttled = self._rate_limit(op)
        if throttled is not None:
            return throttled
        response = await handler(raw)
        if fault is not None and fault.after:
            await asyncio.sleep(fault.delay_s)
            if fault.status_code is not None:
                response = self._fault_response(fault)
        response.headers.update(limit_headers)
        return response

    def _build_app(self) -> Starlette:
        """The Starlette app serving the API, the delivery host and the sink."""
        v1 = API_PREFIX
        return Starlette(
            routes=[
                Route(v1 + "/models/{owner}/{name}/predictions", self._route_model_create, methods=["POST"]),
                Route(v1 + "/predictions", self._route_version_create, methods=["POST"]),
                Route(v1 + "/predictions", self._route_list, methods=["GET"]),
                Route(v1 + "/predictions/{id}", self._route_get, methods=["GET"]),
                Route(v1 + "/predictions/{id}/cancel", self._route_cancel, methods=["POST"]),
                Route(v1 + "/webhooks/default/secret", self._route_secret, methods=["GET"]),
                Route(v1 + "/files", self._route_files, methods=["GET", "POST"]),
                Route(v1 + "/files/{id}", self._route_file, methods=["GET", "DELETE"]),
                Route(DELIVERY_PREFIX + "/{path:path}", self._route_delivery, methods=["GET", "HEAD"]),
                Route(SINK_PATH, self._route_sink, methods=["POST"]),
                # Deployments and everything else: not emulated, 404 as for any unknown resource.
                Route("/{path:path}", self._route_unknown, methods=["GET", "POST", "PUT", "PATCH", "DELETE"]),
            ],
            lifespan=self._lifespan,
        )

    # ---------------------------------------------------------------- create

    async def _route_model_create(self, request: Request) -> Response:
        """POST /v1/models/{owner}/{name}/predictions."""
        model = f"{request.path_params['owner']}/{request.path_params['name']}"

        async def handle(raw: bytes) -> Response:
            with self._lock:
                schema = self.models.get(model)
            if schema is None:
                return _problem(404, _NOT_FOUND)
            return await self._create(request, raw, schema, schema.version)

        return await self._api(request, "create", handle, model=model)

    async def _route_version_create(self, request: Request) -> Response:
        """POST /v1/predictions with ``version``: ``owner/name`` (official), ``owner/name:<hex>`` or ``<hex>``."""
        raw = await request.body()
        version = self._body_field(raw, "version")
        resolved = self._resolve_version(version) if isinstance(version, str) else None

        async def handle(raw: bytes) -> Response:
            if resolved is None:
                return _problem(422, _BAD_VERSION)
            schema, version_id = resolved
            return await self._create(request, raw, schema, version_id)

        return await self._api(request, "create", handle, model=resolved[0].name if resolved else None)

    @staticmethod
    def _body_field(raw: bytes, name: str) -> Any:
        with contextlib.suppress(ValueError, AttributeError):
            return json.loads(raw).get(name)
        return None

    def _resolve_version(self, version: str) -> tuple[ModelSchema, str] | None:
        """(model schema, reported version) of a ``version`` value, or None when unknown."""
        model, _, version_id = version.rpartition(":") if ":" in version else ("", "", version)
        with self._lock:
            if re.fullmatch(r"[0-9a-f]{64}", version_id):
                known = self._versions.get(version_id)
                schema = self.models.get(known) if known and (not model or model == known) else None
                return (schema, version_id) if schema is not None else None
            schema = self.models.get(version) if not model else None
            return (schema, schema.version) if schema is not None else None

    async def _create(self, request: Request, raw: bytes, schema: ModelSchema, version: str) -> Response:
        """Validate a create body, start the prediction and answer 201 (after ``Prefer: wait`` if asked)."""
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = None
        if not isinstance(body, dict):
            # Reference silent on an unparsable body: a 400 problem of our own.
            return _problem(
                400, {"title": "Invalid request", "detail": "The body must be a JSON object", "status": 400}
            )
        inputs = body.get("input")
        if not isinstance(inputs, dict):
            return self._invalid_input(
                [{"type": "required", "field": "input", "description": "input is required"}]
            )
        coerced, problems = validate_input(schema, inputs, coerce_numeric_strings=self.coerce_numeric_strings)
        if problems:
            return self._invalid_input(problems)
        webhook, events, refusal = self._webhook_options(body)
        if refusal is not None:
            return refusal
        deadline_s: float | None = None
        if (cancel_after := request.headers.get("cancel-after")) is not None:
            deadline_s = self.cancel_after_parser(cancel_after)
            if deadline_s is None:
                # Reference silent on a malformed Cancel-After: a 422 problem of our own.
                detail = f"Cancel-After must be a duration such as 15s or 1m, got {cancel_after!r}"
                return _problem(
                    422, {"title": "Invalid Cancel-After header", "detail": detail, "status": 422}
                )
        # Other top-level fields (``stream``, the client's ``webhook_completed``): reference silent; ignored.
        p = self._new_prediction(request, schema, version, inputs, coerced, webhook, events, deadline_s)
        wait = _prefer_wait(request.headers.get("prefer", ""))
        if wait is None:
            return _json(self.prediction_json(p), 201)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(p._done.wait(), min(wait, self.max_wait_s))
        answer = self.prediction_json(p)
        if not p.terminal and self.wait_expired_status is not None:
            answer["status"] = self.wait_expired_status
        if (
            p.terminal
            and p.plan.inline_output_on_wait
            and p.output_media is not None
            and p.output is not None
        ):
            data = base64.b64encode(p.output_media.read()).decode()
            answer["output"] = f"data:{p.output_media.content_type};base64,{data}"
        return _json(answer, 201, {"Preference-Applied": "wait"})

    @staticmethod
    def _invalid_input(problems: list[dict[str, str]]) -> Response:
        detail = "".join(f"- {p['field']}: {p['description']}\n" for p in problems)
        return _problem(
            422,
            {"detail": detail, "status": 422, "title": "Input validation failed", "invalid_fields": problems},
        )

    def _webhook_options(self, body: Mapping[str, Any]) -> tuple[str | None, frozenset[str], Response | None]:
        """(webhook URL, events, refusal). Reference silent on invalid values: 422 problems of our own."""
        webhook = body.get("webhook")
        events_filter = body.get("webhook_events_filter")
        schemes = ("https://",) if self.require_https_webhooks else ("https://", "http://")
        if webhook is not None and not (isinstance(webhook, str) and webhook.startswith(schemes)):
            detail = f"webhook must be an {' or '.join(s[:-3].upper() for s in schemes)} URL"
            return (
                None,
                frozenset(),
                _problem(422, {"title": "Invalid webhook", "detail": detail, "status": 422}),
            )
        if events_filter is None:
            return webhook, frozenset(self.default_events), None
        if not isinstance(events_filter, list) or not all(e in EVENTS for e in events_filter):
            detail = f"webhook_events_filter must be a list of {', '.join(EVENTS)}"
            refusal = _problem(
                422, {"title": "Invalid webhook_events_filter", "detail": detail, "status": 422}
            )
            return None, frozenset(), refusal
        return webhook, frozenset(events_filter), None

    def _new_prediction(
        self,
        request: Request,
        schema: ModelSchema,
        version: str,
        inputs: dict[str, Any],
        coerced: dict[str, Any],
        webhook: str | None,
        events: frozenset[str],
        deadline_s: float | None,
    ) -> Prediction:
        """Register a prediction and schedule its start (and deadline) on the loop."""
        now = self._clock.now()
        with self._lock:
            self._seq += 1
            p = Prediction(
                id=_new_prediction_id(),
                model=schema.name,
                version=version,
                schema=schema,
                input=inputs,
                effective_input=schema.effective(coerced),
                webhook=webhook,
                events=events,
                headers={k.lower(): v for k, v in request.headers.items()},
                plan=self._choose_plan(schema.name),
                seq=self._seq,
                created_at=now,
            )
            if deadline_s is not None:
                p.deadline = now + deadline_s
                self._later(p, deadline_s, self._on_deadline, p)
            if p.plan.start_s is not None:
                self._later(p, p.plan.start_s, self._start, p)
            self._predictions[p.id] = p
        self._notify()
        return p

    # ---------------------------------------------------------------- get, cancel, list, secret

    def _lookup(self, prediction_id: str) -> Prediction | None:
        with self._lock:
            return self._predictions.get(prediction_id)

    async def _route_get(self, request: Request) -> Response:
        """GET /v1/predictions/{id}."""
        prediction_id = request.path_params["id"]

        async def handle(_: bytes) -> Response:
            p = self._lookup(prediction_id)
            return _json(self.prediction_json(p)) if p is not None else _problem(404, _NOT_FOUND)

        p = self._lookup(prediction_id)
        return await self._api(
            request, "get", handle, model=p.model if p else None, prediction_id=prediction_id
        )

    async def _route_cancel(self, request: Request) -> Response:
        """POST /v1/predictions/{id}/cancel: 200 and the prediction, canceled unless it had already finished.

        Reference: a finished prediction comes back in its terminal status; the code is unconfirmed: 200 here.
        """
        prediction_id = request.path_params["id"]

        async def handle(_: bytes) -> Response:
            p = self._lookup(prediction_id)
            if p is None:
                return _problem(404, _NOT_FOUND)
            self._complete(p, "canceled")
            return _json(self.prediction_json(p))

        p = self._lookup(prediction_id)
        return await self._api(
            request, "cancel", handle, model=p.model if p else None, prediction_id=prediction_id
        )

    async def _route_list(self, request: Request) -> Response:
        """GET /v1/predictions: newest first, ``page_size`` a page, absolute ``next``/``previous`` URLs."""

        async def handle(_: bytes) -> Response:
            query = request.query_params
            after = _parse_iso(query.get("created_after", "")) if "created_after" in query else None
            before = _parse_iso(query.get("created_before", "")) if "created_before" in query else None
            with self._lock:
                items = sorted(self._predictions.values(), key=lambda p: p.seq, reverse=True)
            items = [
                p
                for p in items
                if (after is None or p.created_at > after) and (before is None or p.created_at < before)
            ]
            page = self._page(items, query.get("cursor"))
            if page is None:
                return _problem(
                    400, {"title": "Invalid cursor", "detail": "The cursor is not valid", "status": 400}
                )
            filters = {k: v for k, v in query.items() if k in ("created_after", "created_before")}
            more_older = bool(page) and items[-1].seq < page[-1].seq
            more_newer = bool(page) and items[0].seq > page[0].seq
            return _json(
                {
                    "previous": self._cursor_url(filters, "a", page[0].seq) if more_newer else None,
                    "next": self._cursor_url(filters, "b", page[-1].seq) if more_older else None,
                    "results": [self.prediction_json(p) for p in page],
                }
            )

        return await self._api(request, "list", handle)

    def _page(self, items: list[Prediction], cursor: str | None) -> list[Prediction] | None:
        """One page of ``items`` (newest first) for a cursor; None when the cursor is invalid.

        Reference silent on the cursor format: an opaque base64 of "b:<seq>" (older than) or "a:<seq>" (newer).
        """
        if cursor is None:
            return items[: self.page_size]
        try:
            direction, _, seq_text = base64.urlsafe_b64decode(cursor.encode()).decode().partition(":")
            seq = int(seq_text)
        except ValueError:
            return None
        if direction == "b":
            return [p for p in items if p.seq < seq][: self.page_size]
        if direction == "a":
            newer = [p for p in items if p.seq > seq]
            return newer[-self.page_size :]
        return None

    def _cursor_url(self, filters: Mapping[str, str], direction: str, seq: int) -> str:
        cursor = base64.urlsafe_b64encode(f"{direction}:{seq}".encode()).decode()
        return f"{self.api_url}/predictions?{urlencode({**filters, 'cursor': cursor})}"

    async def _route_secret(self, request: Request) -> Response:
        """GET /v1/webhooks/default/secret: the account's signing secret."""

        async def handle(_: bytes) -> Response:
            return _json({"key": self.webhook_secret})

        return await self._api(request, "secret", handle)

    async def _route_unknown(self, request: Request) -> Response:
        """Anything else: 404, as for an unknown resource."""

        async def handle(_: bytes) -> Response:
            return _problem(404, _NOT_FOUND)

        return await self._api(request, "any", handle)

    # ---------------------------------------------------------------- files API

    def file_json(self, upload: UploadedFile) -> dict[str, Any]:
        """A file object as the Files API shows it."""
        return {
            "id": upload.id,
            "name": upload.name,
            "content_type": upload.content_type,
            "size": len(upload.data),
            "etag": hashlib.md5(upload.data, usedforsecurity=False).hexdigest(),
            "checksums": {
                "sha256": hashlib.sha256(upload.data).hexdigest(),
                "md5": hashlib.md5(upload.data, usedforsecurity=False).hexdigest(),
            },
            "metadata": upload.metadata,
            "created_at": self._clock.iso(upload.created_at),
            "expires_at": self._clock.iso(upload.created_at + _FILE_TTL_S),
            "urls": {"get": f"{self.api_url}/files/{upload.id}"},
        }

    def _live_uploads(self) -> dict[str, UploadedFile]:
        """Uploads younger than 24 h (older ones expire)."""
        now = time.time()
        with self._lock:
            for file_id in [k for k, u in self.uploads.items() if now - u.created_at > _FILE_TTL_S]:
                del self.uploads[file_id]
            return dict(self.uploads)

    async def _route_files(self, request: Request) -> Response:
        """POST /v1/files (multipart, part ``content``) -> 201; GET /v1/files (one page)."""

        async def handle(_: bytes) -> Response:
            if request.method == "GET":
                # Reference: the same paging envelope as predictions; silent on file page sizes: one page.
                files = sorted(self._live_uploads().values(), key=lambda u: u.created_at, reverse=True)
                return _json({"previous": None, "next": None, "results": [self.file_json(u) for u in files]})
            return await self._upload(request)

        return await self._api(request, "files", handle)

    async def _upload(self, request: Request) -> Response:
        async with request.form() as form:
            content = form.get("content")
            if not isinstance(content, UploadFile):
                detail = "The multipart part 'content' is required"
                return _problem(400, {"title": "Invalid request", "detail": detail, "status": 400})
            data = await content.read()
            filename = form.get("filename")
            file_type = form.get("type")
            metadata_text = form.get("metadata")
            name = filename if isinstance(filename, str) and filename else content.filename or "file"
            content_type = file_type if isinstance(file_type, str) and file_type else content.content_type
            try:
                metadata = json.loads(metadata_text) if isinstance(metadata_text, str) else {}
            except ValueError:
                metadata = None
        if not isinstance(metadata, dict):
            return _problem(
                400, {"title": "Invalid request", "detail": "metadata must be a JSON object", "status": 400}
            )
        file_id = base64.b64encode(str(uuid.uuid4()).encode()).decode()
        upload = UploadedFile(
            file_id, name, content_type or "application/octet-stream", data, metadata, self._clock.now()
        )
        with self._lock:
            self.uploads[file_id] = upload
        return _json(self.file_json(upload), 201)

    async def _route_file(self, request: Request) -> Response:
        """GET /v1/files/{id} (the file object); DELETE /v1/files/{id} -> 204."""
        file_id = request.path_params["id"]

        async def handle(_: bytes) -> Response:
            upload = self._live_uploads().get(file_id)
            if upload is None:
                return _problem(404, _NOT_FOUND)
            if request.method == "DELETE":
                with self._lock:
                    self.uploads.pop(file_id, None)
                return Response(status_code=204)
            return _json(self.file_json(upload))

        return await self._api(request, "files", handle)

    # ---------------------------------------------------------------- delivery host and sink

    async def _route_delivery(self, request: Request) -> Response:
        """GET an output file, honouring single byte ranges and planned faults."""
        self._record(request, "delivery", b"")
        path = request.url.path
        fault = self._take_fault("delivery", None, None)
        if fault is not None:
            await asyncio.sleep(fault.delay_s)
            if fault.status_code is not None:
                return self._fault_response(fault)
        if self.require_delivery_auth and not self._authorized(request):
            return _problem(401, _UNAUTHENTICATED)
        with self._lock:
            for p in self._predictions.values():
                self._expire(p)
            media = self.files.get(path)
        return await serve_media(request, media)

    async def _route_sink(self, request: Request) -> Response:
        """POST {base}/_sink/webhook: record a webhook; answer the scripted status, else ``sink_status``."""
        body = await request.body()
        received = ReceivedWebhook(dict(request.headers.items()), body, dict(request.query_params))
        with self._changed:
            self.sink.append(received)
            status = self._sink_script.pop(0) if self._sink_script else self.sink_status
            self._changed.notify_all()
        return Response(status_code=status)


@pytest.fixture
def replicate_emulator() -> Iterator[ReplicateEmulator]:
    """A running Replicate emulator, stopped after the test (import it into a conftest to use it)."""
    with ReplicateEmulator() as emulator:
        yield emulator
