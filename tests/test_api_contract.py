"""Property-based tests against the running local server: requests generated from openapi.json must be answered
as documented, and hostile input on every route must never be answered with a 5xx."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

import httpx
import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from shared.auth import mint_dev_token
from tests.app_store_support import apple_settings, base_settings
from tests.billing_support import stripe_settings
from tests.conftest import configured
from tests.emulators.app_store import Notification, Transaction, default_pki
from tests.emulators.fal import FalEmulator
from tests.emulators.stripe import StripeEmulator, sign

ROOT = Path(__file__).resolve().parent.parent
schema = schemathesis.openapi.from_path(ROOT / "openapi.json")
# 502/503 are documented states (a provider down, Stripe not configured here), checked by status_code_conformance;
# an unexpected exception answers 500, which no operation documents.
CHECKS = [status_code_conformance, content_type_conformance, response_schema_conformance]


@pytest.fixture(scope="module")
def token(stack: str) -> str:
    """A bearer token for a user of the running stack (one per module: the generated cases share it)."""
    return mint_dev_token(uuid.uuid4())


@pytest.fixture(scope="module")
def session() -> Iterator[requests.Session]:
    """One HTTP session for all generated cases, closed at the end."""
    with requests.Session() as http:
        yield http


@schema.parametrize()
@settings(
    max_examples=25,
    deadline=None,
    derandomize=True,  # the same cases on every run
    suppress_health_check=list(HealthCheck),
)
def test_every_operation_answers_as_documented(
    case: schemathesis.Case, stack: str, token: str, session: requests.Session
) -> None:
    """Whatever the generated input: never a 500, only documented statuses, every body matching its schema."""
    response = case.call_and_validate(
        base_url=stack, headers={"Authorization": f"Bearer {token}"}, checks=CHECKS
    )
    assert response.status_code != 500, response.text


# --------------------------------------------------------------------------------------------- hostile input
#
# Beyond the documented contract: every route of the local server (webhooks signed as their senders sign them,
# the upload PUT route, media and unknown paths included) gets bodies, query parameters and headers made of
# hostile strings (NUL, unpaired surrogates, bidi and zero-width characters, path traversal, injections),
# numbers JSON cannot carry (1e999, NaN, 5,000-digit integers), deep nesting and bytes that are not UTF-8.
# Whatever comes in, the answer is never a 5xx, and every error is the one JSON shape.

HOSTILE_STRINGS = [
    "",
    " ",
    "\x00",
    "a\x00b",
    "\ud800",
    "\udc00\ud800",
    "x\ud83d",
    "\ufeff",
    "\u202eevil",
    "\u200b\u200d",
    "e" + "\u0301" * 200,
    "\U0001f9d1\u200d\U0001f91d\u200d\U0001f9d1",
    "\U0010ffff\uffff\ufffe",
    "\u0130\u00df\u03a9",
    "\r\nX-Injected: 1",
    "\t\x01\x1f\x7f",
    "\u00a0\u2028\u2029",
    "null",
    "[]",
    "{}",
    "-1",
    "1e999",
    "NaN",
    "../../../etc/passwd",
    "..%2f..%2fetc%2fpasswd",
    "%00",
    "' OR '1'='1",
    '"; DROP TABLE ledger; --',
    "<script>alert(1)</script>",
    "${jndi:ldap://x/a}",
    "{{7*7}}",
    "https://[::1/x.jpg",
    "https://93.184.215.14:99999/x.jpg",
    "https://169.254.169.254/latest/meta-data",
    "https://[64:ff9b::a00:1]/x.jpg",
    "https://[2002:c0a8:101::1]/x.jpg",
    "https://user:pw@example.com/x.jpg",
    "file:///etc/passwd",
    "http://example.com/x.jpg",
    "local-motion",
    "pack_500",
    "00000000-0000-0000-0000-000000000000",
    "Ω" * 3000,
]
NUMBER_TOKENS = [
    "0",
    "-0",
    "1e999",
    "-1e999",
    "NaN",
    "Infinity",
    "-Infinity",
    "9" * 5000,
    "1" + "0" * 400,
    "5e-324",
    "9223372036854775808",
    "-9223372036854775809",
    "18446744073709551616",
    "0.5",
    "1E+2",
]
RAW_BODIES = [
    b"",
    b"null",
    b"[",
    b'{"a":',
    b"\xff\xfe\x00\x00",
    b"\xc3\x28",
    b'\xef\xbb\xbf{"model_id": "local-motion"}',
    '{"model_id": "local-motion"}'.encode("utf-16"),
    b"[" * 5000 + b"]" * 5000,
    b'{"a":' * 3000 + b"1" + b"}" * 3000,
    b'"' + b"\\" * 9999 + b'"',
    b'{"a": "\\ud800"}',
    b'{"a\\u0000": 1}',
    b"9" * 5000,
]
_NUMBER = "\x00number\x00"  # stands for one raw number token in a JSON text (a string JSON would never carry)


POISON = ["\x00", "\ud800", "\udfff", "\u202e", "\ufeff", "\U0010ffff", "\x7f", "\u2028", "%00"]


def _text() -> st.SearchStrategy[str]:
    """A hostile string, some ordinary text with one poisonous character in it, or any text."""
    poisoned = st.builds(
        lambda pre, poison, post: pre + poison + post,
        st.text(max_size=8),
        st.sampled_from(POISON),
        st.text(max_size=8),
    )
    return st.one_of(st.sampled_from(HOSTILE_STRINGS), poisoned, st.text(max_size=40))


def _json_values() -> st.SearchStrategy[Any]:
    leaves = st.one_of(
        _text(),
        st.just(_NUMBER),
        st.integers(min_value=-(2**70), max_value=2**70),
        st.floats(allow_nan=False, allow_infinity=False),
        st.booleans(),
        st.none(),
    )
    return st.recursive(
        leaves,
        lambda inner: st.lists(inner, max_size=4) | st.dictionaries(_text(), inner, max_size=4),
        max_leaves=8,
    )


def _encode(value: Any, numbers: list[str]) -> bytes:
    """JSON text of ``value`` (ASCII-escaped, so unpaired surrogates travel as escapes) with each number
    placeholder replaced by the next raw token."""
    text = json.dumps(value, ensure_ascii=True)
    placeholder = json.dumps(_NUMBER)
    for token in numbers:
        text = text.replace(placeholder, token, 1)
    return text.replace(placeholder, "0").encode()


def _one_in(n: int) -> st.SearchStrategy[bool]:
    """True about once in ``n`` draws (False is the simpler case, where shrinking goes)."""
    return st.integers(min_value=0, max_value=n - 1).map(lambda i: i == n - 1)


def _string_paths(value: Any, path: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    """The paths of the string leaves of a JSON object."""
    if isinstance(value, str):
        return [path]
    if isinstance(value, dict):
        return [p for key, item in value.items() for p in _string_paths(item, (*path, key))]
    return []


def _set(body: dict[str, Any], path: tuple[str, ...], value: Any) -> None:
    for key in path[:-1]:
        body = body[key]
    body[path[-1]] = value


@st.composite
def _hostile_body(draw: st.DrawFn, base: dict[str, Any]) -> bytes:
    """A valid-looking body with one string made hostile, a number JSON cannot carry, a hostile key or value
    added, another JSON value entirely, or raw bytes."""
    how = draw(st.sampled_from(["string", "string", "string", "number", "key", "value", "raw"]))
    if how == "raw":
        return draw(st.sampled_from(RAW_BODIES))
    body: Any = json.loads(json.dumps(base))
    paths = _string_paths(body)
    if how == "string" and paths:
        _set(body, draw(st.sampled_from(paths)), draw(_text()))
    elif how == "number":
        holder = body.get("settings") or body.get("data") or body
        holder[draw(st.sampled_from(["duration", "seed", "size", "created", "x"]))] = _NUMBER
    elif how == "key":
        (body.get("settings") or body)[draw(_text())] = draw(_json_values())
    else:
        body = draw(_json_values())
    return _encode(body, draw(st.lists(st.sampled_from(NUMBER_TOKENS), min_size=1, max_size=3)))


def _header_text() -> st.SearchStrategy[bytes]:
    """Header values an HTTP client can send: Latin-1 bytes, no NUL and no whitespace but inner spaces and tabs."""
    return _text().map(
        lambda s: (
            "".join(c for c in s if c not in "\r\n\x00\x0b\x0c" and ord(c) < 256)
            .strip(" \t")
            .encode("latin-1")
        )
    )


@dataclass(frozen=True)
class Target:
    """One route of the local server and a valid-looking body for it."""

    name: str
    method: str
    path: str
    params: tuple[str, ...] = ()
    body: dict[str, Any] | None = None
    idempotency: bool = False
    signer: str | None = None  # "stripe" or "fal": the body is signed as the sender signs it


VALID_PARAMS = {"job_id": "7c9e6679-7425-40de-944b-e07fc1f90ae7", "limit": "10", "status": "completed"}
IMAGE = "https://93.184.215.14/x.jpg"
VIDEO_BODY = {"model_id": "local-motion", "prompt": "zoom", "image_url": IMAGE, "settings": {"duration": 1}}
UPLOAD_BODY = {"content_type": "image/png", "size": 100, "sha256": "ab" * 32}
FAL_RID = "7c9e6679-7425-40de-944b-e07fc1f90ae7"
TARGETS = [
    Target("generate-video", "POST", "/functions/v1/generate-video", body=VIDEO_BODY, idempotency=True),
    Target("quote", "POST", "/functions/v1/quote", body=VIDEO_BODY),
    Target("get-video-status", "GET", "/functions/v1/get-video-status", ("job_id",)),
    Target("cancel-video", "POST", "/functions/v1/cancel-video", body={"job_id": FAL_RID}),
    Target("list-models", "GET", "/functions/v1/list-models"),
    Target("get-credits", "GET", "/functions/v1/get-credits", ("limit",)),
    Target("list-videos", "GET", "/functions/v1/list-videos", ("status", "limit", "cursor")),
    Target("status", "GET", "/functions/v1/status"),
    Target("create-upload-url", "POST", "/functions/v1/create-upload-url", body=UPLOAD_BODY),
    Target("list-credit-packs", "GET", "/functions/v1/list-credit-packs"),
    Target(
        "create-checkout-session",
        "POST",
        "/functions/v1/create-checkout-session",
        body={"pack_id": "pack_500"},
    ),
    Target("health", "GET", "/functions/v1/health"),
    Target(
        "redeem-app-store-transaction",
        "POST",
        "/functions/v1/redeem-app-store-transaction",
        body={"signed_transaction": default_pki().sign_transaction(Transaction())},
    ),
    Target(
        "app-store-notification",
        "POST",
        "/functions/v1/app-store-notification",
        body={
            "signedPayload": default_pki().sign_notification(Notification("REFUND", Transaction().revoked()))
        },
    ),
    Target(
        "fal-webhook",
        "POST",
        "/functions/v1/fal-webhook",
        ("job_id",),
        body={"request_id": FAL_RID, "status": "ERROR", "error": "failed", "payload": {"detail": []}},
        signer="fal",
    ),
    Target(
        "stripe-webhook",
        "POST",
        "/functions/v1/stripe-webhook",
        body={
            "id": "evt_1",
            "type": "checkout.session.completed",
            "created": 1,
            "data": {"object": {"id": "cs_1", "payment_status": "paid", "metadata": {"pack_id": "pack_500"}}},
        },
        signer="stripe",
    ),
    Target("upload PUT", "PUT", "/storage/v1/upload/", ("exp", "size", "sig")),
    Target("media GET", "GET", "/media/", ("exp", "sig")),
    Target("unknown path", "POST", "/functions/v1/", body={}),
]


@pytest.fixture(scope="module")
def hostile_env(stack: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[FalEmulator, str]]:
    """Stripe (the emulator), fal (its webhook signing keys) and the App Store (the test PKI's root) configured,
    so signed webhooks and App Store data reach parsing and verification."""
    root = tmp_path_factory.mktemp("apple") / "root.der"
    root.write_bytes(default_pki().root_der)
    with ExitStack() as stack_:
        stack_.enter_context(apple_settings(**base_settings(root)))
        stripe_emu = stack_.enter_context(StripeEmulator())
        fal_emu = stack_.enter_context(FalEmulator())
        stack_.enter_context(configured(**fal_emu.env()))
        stack_.enter_context(
            stripe_settings(
                stripe_secret_key=stripe_emu.api_key,
                stripe_webhook_secret=stripe_emu.webhook_secret,
                stripe_api_base=stripe_emu.base_url,
                checkout_success_url="https://app.example.com/ok",
                checkout_cancel_url="https://app.example.com/cancel",
            )
        )
        yield fal_emu, stripe_emu.webhook_secret


def _check_answer(resp: httpx.Response, what: str) -> None:
    """Never a 5xx; an error is the one JSON shape with the response's request id."""
    assert resp.status_code < 500, f"{what}: {resp.status_code} {resp.text[:500]}"
    if resp.status_code >= 400:
        assert resp.headers["content-type"].startswith("application/json"), what
        err = resp.json()["error"]
        assert isinstance(err["code"], str) and isinstance(err["message"], str), what
        assert isinstance(err["details"], dict), what
        assert err["request_id"] == resp.headers["x-request-id"], what


BODY_TARGETS = [t for t in TARGETS if t.body is not None or t.method == "PUT"]
OTHER_TARGETS = [t for t in TARGETS if t not in BODY_TARGETS]


@pytest.mark.parametrize("target", BODY_TARGETS, ids=[t.name for t in BODY_TARGETS])
@settings(
    max_examples=80,
    deadline=None,
    derandomize=True,  # the same cases on every run
    database=None,
    suppress_health_check=list(HealthCheck),
)
@given(data=st.data())
def test_hostile_bodies_never_answer_5xx(
    target: Target, data: st.DataObject, stack: str, token: str, hostile_env: tuple[FalEmulator, str]
) -> None:
    """Whatever hostile body (and query, path, headers) a route taking a body gets, webhooks signed as their
    senders sign them, it answers below 500, errors in the one JSON error shape."""
    _hostile_request(target, data, stack, token, hostile_env)


@pytest.mark.parametrize("target", OTHER_TARGETS, ids=[t.name for t in OTHER_TARGETS])
@settings(
    max_examples=25,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=list(HealthCheck),
)
@given(data=st.data())
def test_hostile_queries_and_headers_never_answer_5xx(
    target: Target, data: st.DataObject, stack: str, token: str, hostile_env: tuple[FalEmulator, str]
) -> None:
    """Whatever hostile query, path or headers a route without a body gets, it answers below 500, errors in
    the one JSON error shape."""
    _hostile_request(target, data, stack, token, hostile_env)


def _hostile_request(
    target: Target, data: st.DataObject, stack: str, token: str, hostile_env: tuple[FalEmulator, str]
) -> None:
    fal_emu, stripe_secret = hostile_env
    params = {name: VALID_PARAMS.get(name, "") for name in target.params}
    for name in [*target.params, *data.draw(st.lists(_text(), max_size=2), label="extra params")]:
        if name not in params or data.draw(_one_in(2), label=f"hostile {name}"):
            params[name] = data.draw(_text(), label=f"param {name}")
    path = target.path
    if target.path.endswith("/"):  # upload, media and unknown routes: a hostile path after the prefix
        path += quote(data.draw(_text(), label="path").encode("utf-8", "surrogatepass"), safe="/")
    content_type = data.draw(st.sampled_from([b"application/json", b"image/png"]), label="content type")
    headers: dict[str, bytes] = {"Content-Type": content_type}
    # Headers are mostly valid, so that the hostile body or query reaches the code behind the checks.
    headers["Authorization"] = f"Bearer {token}".encode()
    if data.draw(_one_in(6), label="hostile token"):
        headers["Authorization"] = b"Bearer " + (data.draw(_header_text(), label="token") or b"x")
    if target.idempotency or data.draw(_one_in(4), label="idempotency key"):
        headers["Idempotency-Key"] = uuid.uuid4().hex.encode()
        if data.draw(_one_in(6), label="hostile idempotency key"):
            headers["Idempotency-Key"] = data.draw(_header_text(), label="idempotency key") or b"k"
    body = data.draw(_hostile_body(target.body), label="body") if target.body is not None else b""
    if target.method == "PUT":
        body = data.draw(st.binary(max_size=300), label="upload bytes")
    if target.signer == "stripe":
        headers["Stripe-Signature"] = sign(body, stripe_secret).encode()
    elif target.signer == "fal":
        headers.update({name: value.encode() for name, value in fal_emu.sign(body, FAL_RID).items()})
    query = urlencode(params, errors="surrogatepass")  # unpaired surrogates travel as their UTF-8 bytes
    with httpx.Client(base_url=stack, timeout=30) as http:
        resp = http.request(target.method, f"{path}?{query}", headers=headers, content=body)
    _check_answer(resp, f"{target.method} {path} params={params!r} body={body[:200]!r}")
