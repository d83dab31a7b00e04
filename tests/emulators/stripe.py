"""A stateful, protocol-faithful Stripe emulator for the test suite.

The emulator is a real HTTP server (Starlette on uvicorn, background thread, 127.0.0.1, free port) that
speaks the v1 wire format stripe-python uses: form-encoded requests with bracket notation, JSON responses,
Bearer secret-key auth, Stripe's error envelope, ``Request-Id`` headers and ``Idempotency-Key`` replay.

Point the unmodified SDK at it::

    with StripeEmulator() as emu:
        client = StripeClient(emu.api_key, base_addresses={"api": emu.base_url})
        session = client.v1.checkout.sessions.create(params={...}, options={"idempotency_key": "k1"})
        event = emu.complete_session(session.id)          # checkout.session.completed, paid by card
        deliver(event, "http://127.0.0.1:8000/webhooks/stripe", emu.webhook_secret)

Endpoints:

- ``POST /v1/checkout/sessions`` (create, ``mode=payment``)
- ``GET  /v1/checkout/sessions/{id}`` (retrieve, ``expand[]=line_items|payment_intent``)
- ``POST /v1/checkout/sessions/{id}/expire``
- ``GET  /v1/charges/{id}``, ``GET /v1/payment_intents/{id}``
- ``GET  /v1/events/{id}``, ``GET /v1/events`` (``type``, ``types[]``, ``limit``, ``starting_after``)

Customer-side actions (paying, delayed settlement, expiry, refunds) are Python methods on the emulator;
each one mutates state and returns the Event it produced, shaped like Stripe's snapshot events. The
module-level helpers :func:`serialize_event`, :func:`sign`, :func:`prepare_delivery`, :func:`send` and
:func:`deliver` turn events into signed webhook deliveries (``Stripe-Signature: t=...,v1=...``).
"""

from __future__ import annotations

import asyncio
import base64
import copy
import hashlib
import hmac
import json
import re
import secrets
import socket
import string
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import httpx
import pytest
import stripe
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from stripe._request_options import RequestOptions
from stripe.params.checkout import SessionCreateParams

__all__ = [
    "DEFAULT_API_KEY",
    "DEFAULT_WEBHOOK_SECRET",
    "WEBHOOK_USER_AGENT",
    "BackgroundServer",
    "RecordedRequest",
    "SignedDelivery",
    "StripeEmulator",
    "StripeEmulatorError",
    "deliver",
    "prepare_delivery",
    "send",
    "serialize_event",
    "sign",
    "stripe_emulator",
]

DEFAULT_API_KEY = "sk_test_emulator_4eC39HqLyjWDarjtT1zdp7dc"
DEFAULT_WEBHOOK_SECRET = "whsec_emulator_test_secret"
WEBHOOK_USER_AGENT = "Stripe/1.0 (+https://stripe.com/docs/webhooks)"
WEBHOOK_CONTENT_TYPE = "application/json; charset=utf-8"

_ALNUM = string.ascii_letters + string.digits
_IDEMPOTENCY_TTL_S = 24 * 3600
_SESSION_MIN_TTL_S = 30 * 60
_SESSION_MAX_TTL_S = 24 * 3600
_MAX_IDEMPOTENCY_KEY_LEN = 255
_METADATA_MAX_KEYS = 50
_METADATA_MAX_KEY_LEN = 40
_METADATA_MAX_VALUE_LEN = 500
_CLIENT_REFERENCE_ID_MAX_LEN = 200
_MAX_LINE_ITEMS = 100
# Stripe's minimum charge amounts, in the smallest currency unit (only the ones we sell in).
_MIN_AMOUNT = {"usd": 50, "eur": 50, "gbp": 30}
# Top-level parameters the SDK can send to POST /v1/checkout/sessions (request options are not parameters).
_SESSION_CREATE_PARAMS = frozenset(SessionCreateParams.__annotations__) - frozenset(
    RequestOptions.__annotations__
)
_KEY_RE = re.compile(r"^([^\[\]]+)((?:\[[^\[\]]*\])*)$")


class StripeEmulatorError(ValueError):
    """A simulation helper was used on an object in the wrong state (or an unknown id)."""


class _ApiError(Exception):
    """An error answered to the client in Stripe's ``{"error": {...}}`` envelope."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        type_: str = "invalid_request_error",
        code: str | None = None,
        param: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.headers = dict(headers or {})
        body: dict[str, Any] = {"message": message, "type": type_}
        if code is not None:
            body["code"] = code
            body["doc_url"] = f"https://stripe.com/docs/error-codes/{code.replace('_', '-')}"
        if param is not None:
            body["param"] = param
        self.body: dict[str, Any] = {"error": body}


@dataclass(frozen=True)
class RecordedRequest:
    """One API request the emulator answered, kept for assertions."""

    method: str
    path: str
    headers: dict[str, str]
    """Lower-cased header names."""
    raw_body: bytes
    params: dict[str, Any]
    """Decoded bracket-notation parameters (body for POST, query string for GET)."""
    status: int
    response: dict[str, Any]
    request_id: str
    idempotency_key: str | None
    replayed: bool
    """True when the answer was replayed from the idempotency cache."""


@dataclass(frozen=True)
class SignedDelivery:
    """A webhook delivery ready to be POSTed: the exact body bytes and the headers Stripe would send."""

    body: bytes
    headers: dict[str, str]
    timestamp: int

    @property
    def signature(self) -> str:
        """The ``Stripe-Signature`` header value."""
        return self.headers["Stripe-Signature"]


@dataclass
class _IdempotencyEntry:
    method: str
    path: str
    fingerprint: tuple[tuple[str, str], ...]
    created: float
    status: int | None = None
    body: dict[str, Any] | None = None
    headers: dict[str, str] = field(default_factory=dict)
    request_id: str = ""


@dataclass
class _Failure:
    status: int
    type_: str
    message: str
    saved: bool


def _new_id(prefix: str, length: int = 24) -> str:
    return prefix + "".join(secrets.choice(_ALNUM) for _ in range(length))


# ----------------------------------------------------------------------------------------------------
# Form decoding (the inverse of stripe-python's _api_encode + urlencode)
# ----------------------------------------------------------------------------------------------------


def _decode_form(pairs: Sequence[tuple[str, str]]) -> dict[str, Any]:
    """Decode ``a[b][0][c]=v`` pairs into nested dicts; ``a[]=v`` appends to a list.

    Indexed arrays stay dicts keyed by the index string; :func:`_as_list` turns them into lists where
    the endpoint expects an array (so ``metadata[0]=x`` remains a metadata key).
    """
    out: dict[str, Any] = {}
    for raw_key, value in pairs:
        match = _KEY_RE.match(raw_key)
        if match is None:
            raise _ApiError(400, f"Invalid parameter name: {raw_key}", param=raw_key)
        parts = [match.group(1), *re.findall(r"\[([^\[\]]*)\]", match.group(2))]
        node: Any = out
        for i, part in enumerate(parts):
            last = i == len(parts) - 1
            nxt = None if last else parts[i + 1]
            if isinstance(node, list):
                if last:
                    node.append(value)
                    break
                child: Any = [] if nxt == "" else {}
                node.append(child)
                node = child
                continue
            if last:
                node[part] = value
            else:
                default: Any = [] if nxt == "" else {}
                existing = node.setdefault(part, default)
                if not isinstance(existing, (dict, list)):
                    raise _ApiError(400, f"Invalid parameter nesting: {raw_key}", param=raw_key)
                node = existing
    return out


def _as_list(value: Any, param: str) -> list[Any]:
    if isinstance(value, list):
        return value
    if isinstance(value, dict) and all(k.isdigit() for k in value):
        indices = sorted(int(k) for k in value)
        if indices != list(range(len(indices))):
            raise _ApiError(
                400, f"Invalid array: {param} indices must start at 0 and be contiguous", param=param
            )
        return [value[str(i)] for i in indices]
    raise _ApiError(400, f"Invalid array: {param}", param=param)


def _as_int(value: Any, param: str, *, minimum: int | None = None) -> int:
    if not isinstance(value, str) or not re.fullmatch(r"-?\d+", value):
        raise _ApiError(400, f"Invalid integer: {value}", param=param, code="parameter_invalid_integer")
    number = int(value)
    if minimum is not None and number < minimum:
        raise _ApiError(
            400,
            f"This value must be greater than or equal to {minimum}.",
            param=param,
            code="parameter_invalid_integer",
        )
    return number


def _as_str(value: Any, param: str) -> str:
    if not isinstance(value, str):
        raise _ApiError(400, f"Invalid string: {param} must be a string", param=param)
    return value


def _require(params: Mapping[str, Any], name: str, prefix: str = "") -> Any:
    full = f"{prefix}[{name}]" if prefix else name
    if name not in params or params[name] == "":
        raise _ApiError(400, f"Missing required param: {full}.", param=full, code="parameter_missing")
    return params[name]


def _is_url(value: str) -> bool:
    parts = urlsplit(value)
    return parts.scheme in ("http", "https") and bool(parts.netloc)


# ----------------------------------------------------------------------------------------------------
# Webhook payloads and signatures
# ----------------------------------------------------------------------------------------------------


def serialize_event(event: Mapping[str, Any]) -> bytes:
    """Serialize an event the way Stripe delivers it: pretty-printed UTF-8 JSON (not ASCII-escaped).

    The body is deliberately not compact, so a handler that re-serializes JSON before verifying the
    signature fails instead of passing by accident.
    """
    return json.dumps(event, indent=2, ensure_ascii=False).encode("utf-8")


def _hmac_hex(secret: str, timestamp: int, payload: bytes) -> str:
    signed = str(timestamp).encode() + b"." + payload
    return hmac.new(secret.encode("utf-8"), signed, hashlib.sha256).hexdigest()


def sign(
    payload: bytes,
    secret: str | Sequence[str],
    timestamp: int | None = None,
    *,
    scheme: str = "v1",
) -> str:
    """Build a ``Stripe-Signature`` header value: ``t=<ts>,v1=<hex>[,v1=<hex>...]``.

    Each signature is the lowercase hex HMAC-SHA256 of ``b"{t}." + payload`` keyed with the secret's UTF-8
    bytes (``whsec_`` prefix included). Several secrets (e.g. during rotation) give several entries, in the
    order given. ``timestamp`` defaults to now; ``scheme`` other than ``v1`` (e.g. ``v0``) produces a header
    a verifier must reject.
    """
    ts = int(time.time()) if timestamp is None else int(timestamp)
    secret_list = [secret] if isinstance(secret, str) else list(secret)
    if not secret_list:
        raise ValueError("at least one signing secret is required")
    items = [f"t={ts}"] + [f"{scheme}={_hmac_hex(s, ts, payload)}" for s in secret_list]
    return ",".join(items)


def _payload_bytes(event: Mapping[str, Any] | bytes) -> bytes:
    return bytes(event) if isinstance(event, (bytes, bytearray)) else serialize_event(event)


def prepare_delivery(
    event: Mapping[str, Any] | bytes,
    secret: str | Sequence[str],
    timestamp: int | None = None,
) -> SignedDelivery:
    """Serialize (unless already bytes) and sign an event without sending it.

    Use the result to tamper with a byte, swap the header, replay it later or send it from threads.
    """
    body = _payload_bytes(event)
    ts = int(time.time()) if timestamp is None else int(timestamp)
    headers = {
        "Content-Type": WEBHOOK_CONTENT_TYPE,
        "User-Agent": WEBHOOK_USER_AGENT,
        "Cache-Control": "no-cache",
        "Accept": "*/*; q=0.5, application/xml",
        "Stripe-Signature": sign(body, secret, ts),
    }
    return SignedDelivery(body=body, headers=headers, timestamp=ts)


def send(
    delivery: SignedDelivery,
    url: str,
    *,
    client: httpx.Client | None = None,
    timeout: float = 10.0,
) -> httpx.Response:
    """POST a prepared delivery to ``url`` (an absolute URL, or a path when ``client`` has a base URL).

    ``client`` may be any ``httpx.Client`` — including Starlette's ``TestClient`` for an in-process app.
    """
    if client is not None:
        return client.post(url, content=delivery.body, headers=delivery.headers, timeout=timeout)
    with httpx.Client(timeout=timeout) as own:
        return own.post(url, content=delivery.body, headers=delivery.headers)


def deliver(
    event: Mapping[str, Any] | bytes,
    url: str,
    secret: str | Sequence[str],
    *,
    times: int = 1,
    timestamp: int | None = None,
    concurrent: bool = False,
    client: httpx.Client | None = None,
    timeout: float = 10.0,
) -> list[httpx.Response]:
    """Deliver an event ``times`` times (at-least-once redelivery) and return the responses in order.

    Like Stripe, every attempt carries the same body but is signed afresh (new ``t``), unless a fixed
    ``timestamp`` is given. With ``concurrent=True`` all attempts are released at once from separate
    threads, each on its own connection unless a shared ``client`` is passed.
    """
    if times < 1:
        raise ValueError("times must be >= 1")
    body = _payload_bytes(event)
    if not concurrent:
        return [
            send(prepare_delivery(body, secret, timestamp), url, client=client, timeout=timeout)
            for _ in range(times)
        ]
    barrier = threading.Barrier(times)

    def attempt(_: int) -> httpx.Response:
        delivery = prepare_delivery(body, secret, timestamp)
        barrier.wait(timeout=timeout)
        return send(delivery, url, client=client, timeout=timeout)

    with ThreadPoolExecutor(max_workers=times) as pool:
        return list(pool.map(attempt, range(times)))


class BackgroundServer:
    """Serve an ASGI app with uvicorn on ``host`` and a free port, in a daemon thread.

    Used by :class:`StripeEmulator`, and handy for exposing a webhook receiver over real HTTP so that
    :func:`deliver` can hit it (e.g. concurrently)::

        with BackgroundServer(app) as server:
            deliver(event, f"{server.base_url}/webhooks/stripe", secret, times=5, concurrent=True)
    """

    def __init__(self, app: Any, *, host: str = "127.0.0.1", name: str = "asgi-server") -> None:
        """Wrap ``app`` (any ASGI application); nothing is bound until :meth:`start`."""
        self.app = app
        self.host = host
        self.name = name
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self._socket: socket.socket | None = None
        self._port: int | None = None

    def start(self) -> BackgroundServer:
        """Bind the port and start serving; returns once uvicorn accepts connections."""
        if self._server is not None:
            raise RuntimeError(f"{self.name} already started")
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.bind((self.host, 0))
        self._port = sock.getsockname()[1]
        config = uvicorn.Config(
            self.app,
            lifespan="off",
            log_level="warning",
            access_log=False,
            http="h11",
            ws="none",
            loop="asyncio",
        )
        server = uvicorn.Server(config)
        thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, name=self.name, daemon=True)
        self._server, self._thread, self._socket = server, thread, sock
        thread.start()
        deadline = time.monotonic() + 10
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"{self.name} failed to start")
            time.sleep(0.005)
        return self

    def stop(self) -> None:
        """Shut the server down, join its thread and close the listening socket (idempotent)."""
        server, thread, sock = self._server, self._thread, self._socket
        self._server = self._thread = self._socket = None
        if server is not None:
            server.should_exit = True
        if thread is not None:
            thread.join(timeout=10)
        if sock is not None:
            sock.close()

    def __enter__(self) -> BackgroundServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def base_url(self) -> str:
        """``http://<host>:<port>`` of the running server."""
        if self._port is None or self._server is None:
            raise RuntimeError(f"{self.name} not started")
        return f"http://{self.host}:{self._port}"


# ----------------------------------------------------------------------------------------------------
# The emulator
# ----------------------------------------------------------------------------------------------------


class StripeEmulator:
    """Stateful fake of the Stripe v1 API for Checkout credit packs, served over real HTTP.

    Use as a context manager (or call :meth:`start` / :meth:`stop`). All state lives in memory and is
    guarded by one lock, so simulation helpers may be called from the test thread while the server
    answers the SDK from its own thread.
    """

    def __init__(
        self,
        *,
        api_key: str = DEFAULT_API_KEY,
        webhook_secret: str = DEFAULT_WEBHOOK_SECRET,
        api_version: str | None = None,
        pending_webhooks: int = 1,
        host: str = "127.0.0.1",
    ) -> None:
        """Configure the accepted secret key, the endpoint signing secret and the events' ``api_version``.

        ``api_version`` defaults to the version pinned by the installed stripe-python, which is what a
        webhook endpoint created alongside this SDK would render events with.
        """
        if not api_key.startswith("sk_test_"):
            raise ValueError("the emulator is test mode only: api_key must start with sk_test_")
        self.api_key = api_key
        self.webhook_secret = webhook_secret
        self.api_version = api_version or stripe.api_version
        self.pending_webhooks = pending_webhooks
        self.host = host
        self.processing_delay = 0.0
        """Seconds a request holding an idempotency key spends "executing" with the key reserved.

        Raise it to make concurrent requests that share a key overlap: the later ones get Stripe's 409."""
        self._lock = threading.RLock()
        self._time_offset = 0.0
        app = Starlette(
            routes=[Route("/{path:path}", self._handle, methods=["GET", "POST", "DELETE", "PUT", "PATCH"])]
        )
        self._server = BackgroundServer(app, host=host, name="stripe-emulator")
        self.reset()

    # ----------------------------------------------------------------------------------------- lifecycle

    def reset(self) -> None:
        """Forget every object, event, recorded request, idempotency key, price and injected failure."""
        with self._lock:
            self.sessions: dict[str, dict[str, Any]] = {}
            self.payment_intents: dict[str, dict[str, Any]] = {}
            self.charges: dict[str, dict[str, Any]] = {}
            self.prices: dict[str, dict[str, Any]] = {}
            self.events: list[dict[str, Any]] = []
            self.requests: list[RecordedRequest] = []
            self._line_items: dict[str, list[dict[str, Any]]] = {}
            self._pi_metadata: dict[str, dict[str, str]] = {}
            self._idempotency: dict[tuple[str, str], _IdempotencyEntry] = {}
            self._failures: list[_Failure] = []

    def start(self) -> StripeEmulator:
        """Bind a free port on ``host`` and serve in a daemon thread; returns once accepting connections."""
        self._server.start()
        return self

    def stop(self) -> None:
        """Shut the server down, join its thread and close the listening socket."""
        self._server.stop()

    def __enter__(self) -> StripeEmulator:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:<port>`` — pass as ``base_addresses={"api": ...}`` or ``stripe.api_base``."""
        return self._server.base_url

    # ------------------------------------------------------------------------------------------- clock

    def now(self) -> int:
        """The emulator's clock in Unix seconds (wall clock plus :meth:`advance_time` offsets)."""
        return int(time.time() + self._time_offset)

    def advance_time(self, seconds: float) -> None:
        """Move the emulator's clock forward (affects ``created``, expiry checks and idempotency pruning)."""
        with self._lock:
            self._time_offset += seconds

    # -------------------------------------------------------------------------------------- test setup

    def add_price(
        self,
        unit_amount: int,
        *,
        currency: str = "usd",
        product_name: str = "Credits",
        price_id: str | None = None,
    ) -> dict[str, Any]:
        """Create a one-time Price usable as ``line_items[i][price]``; returns the Price object."""
        pid = price_id or _new_id("price_")
        price = {
            "id": pid,
            "object": "price",
            "active": True,
            "billing_scheme": "per_unit",
            "created": self.now(),
            "currency": currency.lower(),
            "livemode": False,
            "lookup_key": None,
            "metadata": {},
            "nickname": None,
            "product": _new_id("prod_", 14),
            "recurring": None,
            "type": "one_time",
            "unit_amount": unit_amount,
            "unit_amount_decimal": str(unit_amount),
            "_product_name": product_name,
        }
        with self._lock:
            self.prices[pid] = price
        return {k: v for k, v in price.items() if not k.startswith("_")}

    def fail_next(
        self,
        count: int = 1,
        *,
        status: int = 500,
        error_type: str = "api_error",
        message: str = "An unknown error occurred",
        saved: bool = True,
    ) -> None:
        """Make the next ``count`` API requests fail with ``status``.

        ``saved=True`` models a failure after execution began: like Stripe, the error is stored under the
        request's idempotency key and replayed on retries with that key (``Stripe-Should-Retry: false``).
        ``saved=False`` models a failure before execution (nothing stored, retry advised).
        """
        with self._lock:
            self._failures.extend(_Failure(status, error_type, message, saved) for _ in range(count))

    # -------------------------------------------------------------------------------------- inspection

    def session(self, session_id: str) -> dict[str, Any]:
        """A deep copy of a Checkout Session's current state."""
        with self._lock:
            return copy.deepcopy(self._get(self.sessions, session_id, "checkout session"))

    def charge(self, charge_id: str) -> dict[str, Any]:
        """A deep copy of a Charge's current state."""
        with self._lock:
            return copy.deepcopy(self._get(self.charges, charge_id, "charge"))

    def charge_for_session(self, session_id: str) -> dict[str, Any]:
        """The Charge created when the session was paid (deep copy)."""
        with self._lock:
            pi_id = self._get(self.sessions, session_id, "checkout session")["payment_intent"]
            if pi_id is None:
                raise StripeEmulatorError(f"checkout session {session_id} has no payment yet")
            return copy.deepcopy(self.charges[self.payment_intents[pi_id]["latest_charge"]])

    def requests_to(self, method: str, path: str) -> list[RecordedRequest]:
        """Recorded requests matching an HTTP method and exact path."""
        with self._lock:
            return [r for r in self.requests if r.method == method.upper() and r.path == path]

    @staticmethod
    def success_redirect_url(session: Mapping[str, Any]) -> str:
        """Where the browser lands after paying: ``success_url`` with ``{CHECKOUT_SESSION_ID}`` filled in."""
        return str(session["success_url"]).replace("{CHECKOUT_SESSION_ID}", str(session["id"]))

    # ------------------------------------------------------------------------------- customer actions

    def complete_session(self, session_id: str, *, email: str | None = None) -> dict[str, Any]:
        """The customer pays by card: session ``complete``/``paid`` with a succeeded PaymentIntent and Charge.

        Returns the ``checkout.session.completed`` event.
        """
        with self._lock:
            session = self._open_session(session_id)
            self._pay(session, email=email, delayed=False)
            return self._emit("checkout.session.completed", session)

    def complete_session_delayed(self, session_id: str, *, email: str | None = None) -> dict[str, Any]:
        """The customer pays with a delayed method (bank debit): session ``complete`` but ``unpaid``.

        The PaymentIntent is ``processing`` and its Charge ``pending``. Returns the
        ``checkout.session.completed`` event; settle with :meth:`succeed_async_payment` or
        :meth:`fail_async_payment`.
        """
        with self._lock:
            session = self._open_session(session_id)
            self._pay(session, email=email, delayed=True)
            return self._emit("checkout.session.completed", session)

    def succeed_async_payment(self, session_id: str) -> dict[str, Any]:
        """A delayed payment settles (``payment_status`` → ``paid``).

        Returns the ``checkout.session.async_payment_succeeded`` event.
        """
        with self._lock:
            session, pi, charge = self._pending_async(session_id)
            session["payment_status"] = "paid"
            pi.update(status="succeeded", amount_received=pi["amount"])
            charge.update(status="succeeded", paid=True, captured=True, amount_captured=charge["amount"])
            return self._emit("checkout.session.async_payment_succeeded", session)

    def fail_async_payment(self, session_id: str) -> dict[str, Any]:
        """A delayed payment fails (session stays ``unpaid``).

        Returns the ``checkout.session.async_payment_failed`` event.
        """
        with self._lock:
            session, pi, charge = self._pending_async(session_id)
            pi.update(status="requires_payment_method")
            charge.update(
                status="failed",
                paid=False,
                failure_code="insufficient_funds",
                failure_message="The customer's account has insufficient funds to cover this payment.",
            )
            return self._emit("checkout.session.async_payment_failed", session)

    def expire_session(self, session_id: str) -> dict[str, Any]:
        """The session expires unpaid (timeout or early expiry); returns ``checkout.session.expired``."""
        with self._lock:
            session = self._open_session(session_id)
            self._expire(session)
            return self._emit("checkout.session.expired", session)

    def expire_due_sessions(self) -> list[dict[str, Any]]:
        """Expire every open session whose ``expires_at`` has passed on the emulator clock."""
        with self._lock:
            due = [
                s for s in self.sessions.values() if s["status"] == "open" and s["expires_at"] <= self.now()
            ]
            out = []
            for session in due:
                self._expire(session)
                out.append(self._emit("checkout.session.expired", session))
            return out

    def refund_charge(self, charge_id: str, amount: int | None = None) -> dict[str, Any]:
        """Refund part (``amount``) or the rest (``None``) of a succeeded charge; returns ``charge.refunded``.

        ``amount_refunded`` is cumulative, ``refunded`` turns true only once fully refunded, and the new
        ``re_...`` Refund is prepended to ``charge.refunds.data`` (newest first, as Stripe lists).
        """
        with self._lock:
            charge = self._get(self.charges, charge_id, "charge")
            if charge["status"] != "succeeded":
                raise StripeEmulatorError(
                    f"charge {charge_id} is {charge['status']}, only succeeded charges refund"
                )
            remaining = charge["amount"] - charge["amount_refunded"]
            value = remaining if amount is None else amount
            if remaining <= 0:
                raise StripeEmulatorError(f"charge {charge_id} has already been refunded")
            if value <= 0 or value > remaining:
                raise StripeEmulatorError(f"refund amount {value} must be in 1..{remaining}")
            refund = {
                "id": _new_id("re_"),
                "object": "refund",
                "amount": value,
                "balance_transaction": _new_id("txn_"),
                "charge": charge["id"],
                "created": self.now(),
                "currency": charge["currency"],
                "metadata": {},
                "payment_intent": charge["payment_intent"],
                "reason": None,
                "receipt_number": None,
                "source_transfer_reversal": None,
                "status": "succeeded",
                "transfer_reversal": None,
            }
            charge["amount_refunded"] += value
            charge["refunded"] = charge["amount_refunded"] == charge["amount"]
            refunds = charge["refunds"]
            refunds["data"].insert(0, refund)
            refunds["total_count"] = len(refunds["data"])
            return self._emit("charge.refunded", charge)

    # ------------------------------------------------------------------------------ internal: state

    @staticmethod
    def _get(table: Mapping[str, dict[str, Any]], obj_id: str, kind: str) -> dict[str, Any]:
        try:
            return table[obj_id]
        except KeyError:
            raise StripeEmulatorError(f"no such {kind}: {obj_id!r}") from None

    def _open_session(self, session_id: str) -> dict[str, Any]:
        session = self._get(self.sessions, session_id, "checkout session")
        if session["status"] != "open":
            raise StripeEmulatorError(f"checkout session {session_id} is {session['status']}, not open")
        return session

    def _pending_async(self, session_id: str) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
        session = self._get(self.sessions, session_id, "checkout session")
        pi = self.payment_intents.get(session["payment_intent"] or "")
        if session["status"] != "complete" or pi is None or pi["status"] != "processing":
            raise StripeEmulatorError(
                f"checkout session {session_id} has no delayed payment awaiting settlement"
            )
        return session, pi, self.charges[pi["latest_charge"]]

    def _expire(self, session: dict[str, Any]) -> None:
        session.update(status="expired", url=None)

    def _pay(self, session: dict[str, Any], *, email: str | None, delayed: bool) -> None:
        now = self.now()
        pi_id, ch_id = _new_id("pi_"), _new_id("ch_")
        metadata = dict(self._pi_metadata.get(session["id"], {}))
        amount, currency = session["amount_total"], session["currency"]
        payer = email or session["customer_email"] or "customer@example.com"
        self.payment_intents[pi_id] = {
            "id": pi_id,
            "object": "payment_intent",
            "amount": amount,
            "amount_received": 0 if delayed else amount,
            "created": now,
            "currency": currency,
            "customer": None,
            "latest_charge": ch_id,
            "livemode": False,
            "metadata": metadata,
            "payment_method": _new_id("pm_"),
            "payment_method_types": ["us_bank_account"] if delayed else ["card"],
            "status": "processing" if delayed else "succeeded",
        }
        self.charges[ch_id] = {
            "id": ch_id,
            "object": "charge",
            "amount": amount,
            "amount_captured": 0 if delayed else amount,
            "amount_refunded": 0,
            "balance_transaction": _new_id("txn_"),
            "billing_details": {"address": None, "email": payer, "name": None, "phone": None},
            "captured": not delayed,
            "created": now,
            "currency": currency,
            "customer": None,
            "description": None,
            "failure_code": None,
            "failure_message": None,
            "livemode": False,
            "metadata": metadata,
            "paid": not delayed,
            "payment_intent": pi_id,
            "payment_method": self.payment_intents[pi_id]["payment_method"],
            "receipt_email": None,
            "refunded": False,
            "refunds": {"object": "list", "data": [], "has_more": False, "total_count": 0, "url": ""},
            "status": "pending" if delayed else "succeeded",
        }
        self.charges[ch_id]["refunds"]["url"] = f"/v1/charges/{ch_id}/refunds"
        session.update(
            status="complete",
            payment_status="unpaid" if delayed else "paid",
            payment_intent=pi_id,
            url=None,
            customer_details={
                "address": None,
                "email": payer,
                "name": None,
                "phone": None,
                "tax_exempt": "none",
                "tax_ids": [],
            },
        )

    def _emit(
        self,
        type_: str,
        obj: Mapping[str, Any],
        *,
        request_id: str | None = None,
        idempotency_key: str | None = None,
    ) -> dict[str, Any]:
        event = {
            "id": _new_id("evt_"),
            "object": "event",
            "api_version": self.api_version,
            "created": self.now(),
            "data": {"object": copy.deepcopy(dict(obj))},
            "livemode": False,
            "pending_webhooks": self.pending_webhooks,
            "request": {"id": request_id, "idempotency_key": idempotency_key},
            "type": type_,
        }
        self.events.append(event)
        return copy.deepcopy(event)

    # ------------------------------------------------------------------------------ internal: HTTP

    def _authenticate(self, headers: Mapping[str, str]) -> None:
        auth = headers.get("authorization", "")
        key = ""
        scheme, _, credential = auth.partition(" ")
        if scheme.lower() == "bearer":
            key = credential.strip()
        elif scheme.lower() == "basic":
            try:
                key = base64.b64decode(credential.strip()).decode().partition(":")[0]
            except (ValueError, UnicodeDecodeError):
                key = ""
        if not key:
            raise _ApiError(
                401,
                "You did not provide an API key. You need to provide your "
                "API key in the Authorization header, "
                "using Bearer auth (e.g. 'Authorization: Bearer YOUR_SECRET_KEY'). See https://stripe.com/docs/api#"
                "authentication for details, or we can help at https://support.stripe.com/.",
            )
        if not hmac.compare_digest(key.encode(), self.api_key.encode()):
            redacted = key[:8] + "*" * max(len(key) - 12, 0) + key[-4:] if len(key) > 12 else "****"
            raise _ApiError(401, f"Invalid API Key provided: {redacted}", code="api_key_invalid")

    async def _handle(self, request: Request) -> Response:
        raw = await request.body()
        method, path = request.method, request.url.path
        headers = {k.lower(): v for k, v in request.headers.items()}
        request_id = _new_id("req_", 14)
        idem_key = headers.get("idempotency-key") if method == "POST" else None
        params: dict[str, Any] = {}
        replayed = False
        extra_headers: dict[str, str] = {}
        result: tuple[int, dict[str, Any]] | None = None
        reserved: _IdempotencyEntry | None = None
        with self._lock:
            try:
                self._authenticate(headers)
                source = raw.decode("utf-8") if method == "POST" else request.url.query
                pairs = parse_qsl(source, keep_blank_values=True)
                params = _decode_form(pairs)
                if idem_key is not None:
                    outcome = self._idempotency_begin(method, path, pairs, idem_key)
                    if isinstance(outcome, _IdempotencyEntry):
                        reserved = outcome
                    else:
                        result, extra_headers, request_id, replayed = (
                            outcome[:2],
                            outcome[2],
                            outcome[3],
                            True,
                        )
            except _ApiError as err:
                result, extra_headers = (err.status, err.body), err.headers
            except UnicodeDecodeError:
                result = 400, _ApiError(400, "Request body is not valid UTF-8").body
        if reserved is not None and self.processing_delay > 0:
            await asyncio.sleep(self.processing_delay)  # concurrent requests with the same key now see a 409
        with self._lock:
            if result is None:
                try:
                    result = self._execute(method, path, params, request_id, idem_key, headers)
                except _ApiError as err:
                    result, extra_headers = (err.status, err.body), err.headers
                if reserved is not None:
                    self._idempotency_finish(idem_key or "", reserved, result, extra_headers, request_id)
            status, body = result
            self.requests.append(
                RecordedRequest(
                    method=method,
                    path=path,
                    headers=headers,
                    raw_body=raw,
                    params=params,
                    status=status,
                    response=copy.deepcopy(body),
                    request_id=request_id,
                    idempotency_key=idem_key,
                    replayed=replayed,
                )
            )
        response_headers = {
            "Request-Id": request_id,
            "Stripe-Version": headers.get("stripe-version", self.api_version),
            **extra_headers,
        }
        if idem_key is not None:
            response_headers["Idempotency-Key"] = idem_key
        return Response(
            json.dumps(body, indent=2),
            status_code=status,
            headers=response_headers,
            media_type="application/json",
        )

    def _idempotency_begin(
        self, method: str, path: str, pairs: Sequence[tuple[str, str]], key: str
    ) -> _IdempotencyEntry | tuple[int, dict[str, Any], dict[str, str], str]:
        """Reserve ``key`` for this request, or return the saved (status, body, headers, request id)."""
        if len(key) > _MAX_IDEMPOTENCY_KEY_LEN:
            raise _ApiError(
                400,
                f"Invalid idempotency key: keys must be at most {_MAX_IDEMPOTENCY_KEY_LEN} characters long.",
            )
        now = self.now()
        for k, old in list(self._idempotency.items()):
            if now - old.created >= _IDEMPOTENCY_TTL_S:
                del self._idempotency[k]
        fingerprint = tuple(sorted(pairs))
        slot = (self.api_key, key)
        entry = self._idempotency.get(slot)
        if entry is None:
            entry = _IdempotencyEntry(method=method, path=path, fingerprint=fingerprint, created=now)
            self._idempotency[slot] = entry
            return entry
        if (entry.method, entry.path) != (method, path):
            raise _ApiError(
                400,
                "Keys for idempotent requests can only be used for the same endpoint they were first used "
                f"for ('{entry.method} {entry.path}' vs '{method} {path}'). Try using a key other than "
                f"'{key}' if you meant to execute a different request.",
                type_="idempotency_error",
            )
        if entry.fingerprint != fingerprint:
            raise _ApiError(
                400,
                "Keys for idempotent requests can only be used with the same parameters they were first "
                f"used with. Try using a key other than '{key}' if you meant to execute a different request.",
                type_="idempotency_error",
            )
        if entry.status is None or entry.body is None:
            raise _ApiError(
                409,
                "There is currently another in-progress request using this Idempotent Key (that probably "
                "means you submitted twice, and the other request is still going through): "
                f"{key}. Please try again later.",
                type_="idempotency_error",
                code="idempotency_key_in_use",
            )
        replay_headers = {**entry.headers, "Idempotent-Replayed": "true"}
        return entry.status, copy.deepcopy(entry.body), replay_headers, entry.request_id

    def _idempotency_finish(
        self,
        key: str,
        entry: _IdempotencyEntry,
        result: tuple[int, dict[str, Any]],
        headers: Mapping[str, str],
        request_id: str,
    ) -> None:
        """Save a result under its key: successes and post-execution 5xx; drop the key for anything else."""
        status, body = result
        executed_error = status >= 500 and headers.get("Stripe-Should-Retry") == "false"
        if status < 400 or executed_error:
            entry.status, entry.body, entry.request_id = status, copy.deepcopy(body), request_id
            entry.headers = dict(headers)
        elif self._idempotency.get((self.api_key, key)) is entry:
            del self._idempotency[(self.api_key, key)]

    def _execute(
        self,
        method: str,
        path: str,
        params: dict[str, Any],
        request_id: str,
        idem_key: str | None,
        headers: Mapping[str, str],
    ) -> tuple[int, dict[str, Any]]:
        if self._failures:
            failure = self._failures.pop(0)
            raise _ApiError(
                failure.status,
                failure.message,
                type_=failure.type_,
                headers={"Stripe-Should-Retry": "false" if failure.saved else "true"},
            )
        parts = path.strip("/").split("/")
        if parts[:3] == ["v1", "checkout", "sessions"]:
            if method == "POST" and len(parts) == 3:
                return 200, self._create_session(params, request_id)
            if method == "GET" and len(parts) == 4:
                return 200, self._retrieve_session(parts[3], params)
            if method == "POST" and len(parts) == 5 and parts[4] == "expire":
                return 200, self._api_expire_session(parts[3], request_id, idem_key)
        if method == "GET" and len(parts) == 3 and parts[:2] == ["v1", "charges"]:
            return 200, self._retrieve(self.charges, parts[2], "charge", "charge")
        if method == "GET" and len(parts) == 3 and parts[:2] == ["v1", "payment_intents"]:
            return 200, self._retrieve(self.payment_intents, parts[2], "payment_intent", "intent")
        if method == "GET" and parts[:2] == ["v1", "events"]:
            if len(parts) == 3:
                found = next((e for e in self.events if e["id"] == parts[2]), None)
                if found is None:
                    raise self._missing("event", parts[2], "id")
                return 200, copy.deepcopy(found)
            if len(parts) == 2:
                return 200, self._list_events(params)
        raise _ApiError(
            404,
            f"Unrecognized request URL ({method}: {path}). Please see "
            "https://stripe.com/docs or we can help at "
            "https://support.stripe.com/.",
        )

    @staticmethod
    def _missing(kind: str, obj_id: str, param: str) -> _ApiError:
        return _ApiError(404, f"No such {kind}: '{obj_id}'", code="resource_missing", param=param)

    def _retrieve(
        self, table: Mapping[str, dict[str, Any]], obj_id: str, kind: str, param: str
    ) -> dict[str, Any]:
        if obj_id not in table:
            raise self._missing(kind, obj_id, param)
        return copy.deepcopy(table[obj_id])

    # ------------------------------------------------------------------------------ endpoints

    def _create_session(self, params: dict[str, Any], request_id: str) -> dict[str, Any]:
        for name in params:
            if name not in _SESSION_CREATE_PARAMS:
                raise _ApiError(
                    400, f"Received unknown parameter: {name}", param=name, code="parameter_unknown"
                )
        mode = _as_str(_require(params, "mode"), "mode")
        if mode != "payment":
            raise _ApiError(
                400,
                f"Invalid mode: the emulator only supports mode=payment (got {mode!r}).",
                param="mode",
                code="parameter_invalid_empty" if mode == "" else None,
            )
        if "line_items" not in params:
            raise _ApiError(400, "`line_items` is required in `payment` mode.", param="line_items")
        raw_items = _as_list(params["line_items"], "line_items")
        if not raw_items:
            raise _ApiError(400, "`line_items` is required in `payment` mode.", param="line_items")
        if len(raw_items) > _MAX_LINE_ITEMS:
            raise _ApiError(
                400, f"You may only specify up to {_MAX_LINE_ITEMS} line items.", param="line_items"
            )
        items = [self._line_item(raw, f"line_items[{i}]") for i, raw in enumerate(raw_items)]
        currencies = {item["currency"] for item in items}
        if len(currencies) > 1:
            raise _ApiError(400, "All line items must use the same currency.", param="line_items")
        currency = currencies.pop()
        total = sum(item["amount_total"] for item in items)
        minimum = _MIN_AMOUNT.get(currency)
        if minimum is not None and total < minimum:
            raise _ApiError(
                400,
                f"The Checkout Session's total amount due must add up to at least {minimum} {currency} "
                "(in the smallest currency unit).",
                code="amount_too_small",
            )
        metadata = self._metadata(params.get("metadata", {}), "metadata")
        pi_data = params.get("payment_intent_data", {})
        if not isinstance(pi_data, dict):
            raise _ApiError(400, "Invalid object", param="payment_intent_data")
        pi_metadata = self._metadata(pi_data.get("metadata", {}), "payment_intent_data[metadata]")
        for url_param in ("success_url", "cancel_url"):
            value = params.get(url_param)
            if value is not None and not _is_url(_as_str(value, url_param)):
                raise _ApiError(400, "Not a valid URL", param=url_param, code="url_invalid")
        client_ref = params.get("client_reference_id")
        if client_ref is not None:
            client_ref = _as_str(client_ref, "client_reference_id")
            if not 1 <= len(client_ref) <= _CLIENT_REFERENCE_ID_MAX_LEN:
                raise _ApiError(
                    400,
                    f"client_reference_id must be 1 to {_CLIENT_REFERENCE_ID_MAX_LEN} characters long.",
                    param="client_reference_id",
                )
        email = params.get("customer_email")
        if email is not None and not re.fullmatch(
            r"[^@\s]+@[^@\s]+\.[^@\s]+", _as_str(email, "customer_email")
        ):
            raise _ApiError(
                400, "Invalid email address: " + str(email), param="customer_email", code="email_invalid"
            )
        now = self.now()
        expires_at = now + _SESSION_MAX_TTL_S
        if "expires_at" in params:
            expires_at = _as_int(params["expires_at"], "expires_at")
            if not now + _SESSION_MIN_TTL_S <= expires_at <= now + _SESSION_MAX_TTL_S:
                raise _ApiError(
                    400,
                    "The `expires_at` timestamp must be between 30 minutes "
                    "and 24 hours from Checkout Session "
                    "creation.",
                    param="expires_at",
                )
        session_id = _new_id("cs_test_", 58)
        session: dict[str, Any] = {
            "id": session_id,
            "object": "checkout.session",
            "after_expiration": None,
            "allow_promotion_codes": None,
            "amount_subtotal": total,
            "amount_total": total,
            "billing_address_collection": None,
            "cancel_url": params.get("cancel_url"),
            "client_reference_id": client_ref,
            "created": now,
            "currency": currency,
            "customer": None,
            "customer_creation": "if_required",
            "customer_details": None,
            "customer_email": email,
            "expires_at": expires_at,
            "invoice": None,
            "livemode": False,
            "locale": params.get("locale"),
            "metadata": metadata,
            "mode": "payment",
            "payment_intent": None,
            "payment_link": None,
            "payment_method_types": ["card"],
            "payment_status": "unpaid",
            "status": "open",
            "submit_type": params.get("submit_type"),
            "subscription": None,
            "success_url": params.get("success_url"),
            "total_details": {"amount_discount": 0, "amount_shipping": 0, "amount_tax": 0},
            "ui_mode": params.get("ui_mode", "hosted_page"),
            "url": f"https://checkout.stripe.com/c/pay/{session_id}#fid{_new_id('', 40)}",
        }
        self.sessions[session_id] = session
        self._line_items[session_id] = items
        self._pi_metadata[session_id] = pi_metadata
        return self._expand_session(session, params)

    def _line_item(self, raw: Any, prefix: str) -> dict[str, Any]:
        if not isinstance(raw, dict):
            raise _ApiError(400, f"Invalid object: {prefix}", param=prefix)
        quantity = _as_int(_require(raw, "quantity", prefix), f"{prefix}[quantity]", minimum=1)
        if ("price" in raw) == ("price_data" in raw):
            raise _ApiError(
                400, f"You must specify either `price` or `price_data` in {prefix}.", param=f"{prefix}[price]"
            )
        if "price" in raw:
            price_id = _as_str(raw["price"], f"{prefix}[price]")
            price = self.prices.get(price_id)
            if price is None:
                raise self._missing("price", price_id, f"{prefix}[price]")
            unit_amount, currency, name = price["unit_amount"], price["currency"], price["_product_name"]
            price_obj = {k: v for k, v in price.items() if not k.startswith("_")}
        else:
            pd_prefix = f"{prefix}[price_data]"
            data = raw["price_data"]
            if not isinstance(data, dict):
                raise _ApiError(400, f"Invalid object: {pd_prefix}", param=pd_prefix)
            currency = _as_str(_require(data, "currency", pd_prefix), f"{pd_prefix}[currency]")
            if not re.fullmatch(r"[a-z]{3}", currency):
                raise _ApiError(400, f"Invalid currency: {currency}", param=f"{pd_prefix}[currency]")
            unit_amount = _as_int(
                _require(data, "unit_amount", pd_prefix), f"{pd_prefix}[unit_amount]", minimum=0
            )
            if "product_data" in data:
                product_data = data["product_data"]
                if not isinstance(product_data, dict):
                    raise _ApiError(400, "Invalid object", param=f"{pd_prefix}[product_data]")
                name = _as_str(
                    _require(product_data, "name", f"{pd_prefix}[product_data]"),
                    f"{pd_prefix}[product_data][name]",
                )
            elif "product" in data:
                name = _as_str(data["product"], f"{pd_prefix}[product]")
            else:
                raise _ApiError(
                    400,
                    f"You must specify either `product` or `product_data` in {pd_prefix}.",
                    param=f"{pd_prefix}[product_data]",
                )
            price_obj = {
                "id": _new_id("price_"),
                "object": "price",
                "active": False,
                "currency": currency,
                "livemode": False,
                "product": _new_id("prod_", 14),
                "type": "one_time",
                "unit_amount": unit_amount,
                "unit_amount_decimal": str(unit_amount),
            }
        return {
            "id": _new_id("li_"),
            "object": "item",
            "amount_discount": 0,
            "amount_subtotal": unit_amount * quantity,
            "amount_tax": 0,
            "amount_total": unit_amount * quantity,
            "currency": currency,
            "description": name,
            "price": price_obj,
            "quantity": quantity,
        }

    @staticmethod
    def _metadata(raw: Any, param: str) -> dict[str, str]:
        if raw == "":
            return {}
        if not isinstance(raw, dict):
            raise _ApiError(400, "Invalid object", param=param)
        out: dict[str, str] = {}
        for key, value in raw.items():
            if not isinstance(value, str):
                raise _ApiError(
                    400, f"Invalid value for {param}[{key}]: must be a string", param=f"{param}[{key}]"
                )
            if len(key) > _METADATA_MAX_KEY_LEN:
                raise _ApiError(
                    400,
                    f"Metadata keys can have up to {_METADATA_MAX_KEY_LEN} "
                    f"characters; the key {key!r} is too long.",
                    param=f"{param}[{key}]",
                )
            if len(value) > _METADATA_MAX_VALUE_LEN:
                raise _ApiError(
                    400,
                    f"Metadata values can have up to {_METADATA_MAX_VALUE_LEN} "
                    "characters, but you passed in a value "
                    f"that is {len(value)} characters.",
                    param=f"{param}[{key}]",
                )
            if value != "":  # an empty value unsets the key
                out[key] = value
        if len(out) > _METADATA_MAX_KEYS:
            raise _ApiError(400, f"You can specify up to {_METADATA_MAX_KEYS} metadata keys.", param=param)
        return out

    def _expand_session(self, session: Mapping[str, Any], params: Mapping[str, Any]) -> dict[str, Any]:
        out = copy.deepcopy(dict(session))
        expand = params.get("expand", [])
        for target in _as_list(expand, "expand") if expand else []:
            if target == "line_items":
                items = copy.deepcopy(self._line_items[session["id"]])
                out["line_items"] = {
                    "object": "list",
                    "data": items,
                    "has_more": False,
                    "url": f"/v1/checkout/sessions/{session['id']}/line_items",
                }
            elif target == "payment_intent":
                pi_id = session["payment_intent"]
                out["payment_intent"] = copy.deepcopy(self.payment_intents[pi_id]) if pi_id else None
            else:
                raise _ApiError(
                    400,
                    f"This property cannot be expanded ({target}).",
                    param="expand",
                    code="parameter_invalid",
                )
        return out

    def _retrieve_session(self, session_id: str, params: Mapping[str, Any]) -> dict[str, Any]:
        session = self.sessions.get(session_id)
        if session is None:
            raise self._missing("checkout.session", session_id, "session")
        return self._expand_session(session, params)

    def _api_expire_session(self, session_id: str, request_id: str, idem_key: str | None) -> dict[str, Any]:
        session = self.sessions.get(session_id)
        if session is None:
            raise self._missing("checkout.session", session_id, "session")
        if session["status"] != "open":
            raise _ApiError(
                400,
                'Only Checkout Sessions with a status in ["open"] can be '
                "expired. This Checkout Session has a "
                f'status of "{session["status"]}".',
            )
        self._expire(session)
        self._emit("checkout.session.expired", session, request_id=request_id, idempotency_key=idem_key)
        return copy.deepcopy(session)

    def _list_events(self, params: Mapping[str, Any]) -> dict[str, Any]:
        events = list(reversed(self.events))  # newest first
        wanted: set[str] = set()
        if "type" in params:
            wanted.add(_as_str(params["type"], "type"))
        if "types" in params:
            wanted.update(_as_list(params["types"], "types"))
        if wanted:
            events = [e for e in events if e["type"] in wanted]
        if "starting_after" in params:
            ids = [e["id"] for e in events]
            cursor = _as_str(params["starting_after"], "starting_after")
            events = events[ids.index(cursor) + 1 :] if cursor in ids else []
        limit = _as_int(params.get("limit", "10"), "limit", minimum=1)
        return {
            "object": "list",
            "data": copy.deepcopy(events[:limit]),
            "has_more": len(events) > limit,
            "url": "/v1/events",
        }


@pytest.fixture
def stripe_emulator() -> Iterator[StripeEmulator]:
    """A started :class:`StripeEmulator`, stopped after the test."""
    with StripeEmulator() as emulator:
        yield emulator
