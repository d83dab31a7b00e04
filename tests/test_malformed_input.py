"""Malformed input never answers 500: each case is a 4xx in the one error shape, naming the field."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from tests.billing_support import stripe_settings
from tests.conftest import Caller, configured, raw_http
from tests.emulators.fal import FalEmulator
from tests.emulators.stripe import prepare_delivery
from tests.test_auth import serve_jwks

DEEP = "[" * 5000 + "]" * 5000  # 10 KB nested 5,000 levels deep
QUOTE = "/functions/v1/quote"
GENERATE = "/functions/v1/generate-video"


def _error(resp: httpx.Response, status: int, field: str | None = None) -> dict[str, Any]:
    """The response's error body, checked for the status, the one error shape and (when given) the field."""
    assert resp.status_code == status, resp.text
    assert resp.headers["content-type"].startswith("application/json")
    err: dict[str, Any] = resp.json()["error"]
    assert {"code", "message", "details", "request_id"} <= set(err)
    assert err["request_id"] == resp.headers["x-request-id"]
    if field is not None:
        assert err["details"].get("field") == field, err
    return err


def _without_id(err: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in err.items() if k != "request_id"}


def _post_raw(caller: Caller, path: str, body: bytes | str) -> httpx.Response:
    headers = {"Content-Type": "application/json", "Idempotency-Key": uuid.uuid4().hex}
    return caller.http.post(path, content=body, headers=headers)


# --------------------------------------------------------------------------------- tokens and signing keys


@pytest.fixture(scope="module")
def mixed_jwks() -> Iterator[tuple[str, ec.EllipticCurvePrivateKey, rsa.RSAPrivateKey]]:
    """A JWKS publishing one EC key (kid "ec") and one RSA key (kid "rsa")."""
    ec_key = ec.generate_private_key(ec.SECP256R1())
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    ec_jwk = json.loads(jwt.algorithms.ECAlgorithm.to_jwk(ec_key.public_key()))
    rsa_jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(rsa_key.public_key()))
    ec_jwk.update(kid="ec", use="sig")
    rsa_jwk.update(kid="rsa", use="sig")
    with serve_jwks({"keys": [ec_jwk, rsa_jwk]}) as url:
        yield url, ec_key, rsa_key


def _claims() -> dict[str, Any]:
    now = int(time.time())
    return {
        "sub": str(uuid.uuid4()),
        "aud": "authenticated",
        "role": "authenticated",
        "iat": now,
        "exp": now + 600,
    }


def test_token_naming_a_key_of_another_type_is_401(
    stack: str, mixed_jwks: tuple[str, ec.EllipticCurvePrivateKey, rsa.RSAPrivateKey]
) -> None:
    """RS256 with an EC key's kid, or ES256 with an RSA key's kid, is a 401 (the right pairs still verify)."""
    url, ec_key, rsa_key = mixed_jwks
    rs_with_ec_kid = jwt.encode(_claims(), rsa_key, algorithm="RS256", headers={"kid": "ec"})
    es_with_rsa_kid = jwt.encode(_claims(), ec_key, algorithm="ES256", headers={"kid": "rsa"})
    good = [
        jwt.encode(_claims(), rsa_key, algorithm="RS256", headers={"kid": "rsa"}),
        jwt.encode(_claims(), ec_key, algorithm="ES256", headers={"kid": "ec"}),
    ]
    with configured(SUPABASE_JWKS_URL=url):
        for token in (rs_with_ec_kid, es_with_rsa_kid):
            resp = httpx.get(
                f"{stack}/functions/v1/get-credits", headers={"Authorization": f"Bearer {token}"}
            )
            err = _error(resp, 401)
            assert err["code"] == "unauthorized" and err["details"]["reason"] == "algorithm"
        for token in good:
            resp = httpx.get(
                f"{stack}/functions/v1/get-credits", headers={"Authorization": f"Bearer {token}"}
            )
            assert resp.status_code == 200, resp.text


# ------------------------------------------------------------------------------------------------ image URLs


@pytest.mark.parametrize(
    "url",
    [
        "https://93.184.215.14:99999/x.jpg",
        "https://93.184.215.14:-1/x.jpg",
        "https://93.184.215.14:0/x.jpg",
        "https://example.com:https/x.jpg",
        "https://[::1/x.jpg",
        "https://[not-an-address]/x.jpg",
    ],
)
def test_unparseable_image_url_is_400_on_quote_and_generate(caller: Caller, url: str) -> None:
    """An image_url with a port out of range or a broken IPv6 literal is a 400 naming image_url, on both
    endpoints that take it."""
    body = {"model_id": "local-motion", "prompt": "zoom", "image_url": url}
    quoted = _error(caller.http.post(QUOTE, json=body), 400, "image_url")
    generated = _error(caller.generate(**body), 400, "image_url")
    assert _without_id(quoted) == _without_id(generated)


@pytest.mark.parametrize(
    "host",
    [
        "[64:ff9b::a00:1]",  # NAT64 of 10.0.0.1
        "[64:ff9b::7f00:1]",  # NAT64 of 127.0.0.1
        "[64:ff9b:1::a9fe:a9fe]",  # local-use NAT64
        "[2002:c0a8:101::1]",  # 6to4 of 192.168.1.1
        "[2002:a9fe:a9fe::1]",  # 6to4 of 169.254.169.254 (cloud metadata)
        "[2001:0:4136:e378:8000:63bf:f5ff:fffe]",  # Teredo, client 10.0.0.1
        "[::a00:1]",  # IPv4-compatible 10.0.0.1
        "[::ffff:a9fe:a9fe]",  # IPv4-mapped 169.254.169.254
        "192.0.0.9",
        "192.0.0.170",
    ],
)
def test_private_address_inside_a_public_looking_one_is_refused(caller: Caller, host: str) -> None:
    """Image hosts that only look public (NAT64, 6to4, Teredo or IPv4-compatible forms of a private address,
    192.0.0.0/24) are refused like private ones."""
    err = _error(
        caller.http.post(QUOTE, json={"model_id": "local-motion", "image_url": f"https://{host}/x.jpg"}), 400
    )
    assert err["details"]["field"] == "image_url" and "private or reserved" in err["message"]


def test_nat64_and_6to4_of_public_addresses_pass_the_check(caller: Caller) -> None:
    """The same forms around a public IPv4 address are not refused."""
    for host in ("[64:ff9b::5db8:d70e]", "[2002:5db8:d70e::1]", "93.184.215.14"):
        resp = caller.http.post(
            QUOTE, json={"model_id": "local-motion", "image_url": f"https://{host}/x.jpg"}
        )
        assert resp.status_code == 200, (host, resp.text)


# ----------------------------------------------------------------------------------------- JSON bodies


@pytest.mark.parametrize(
    "path",
    [GENERATE, QUOTE, "/functions/v1/cancel-video", "/functions/v1/create-upload-url"],
)
def test_deeply_nested_body_is_400_before_parsing(caller: Caller, path: str) -> None:
    """A ~10 KB body nested 5,000 levels deep is a 400 naming the body, whatever the endpoint."""
    for body in (DEEP, '{"model_id": "local-motion", "settings": {"x": ' + DEEP + "}}"):
        err = _error(_post_raw(caller, path, body), 400, "body")
        assert "nested deeper than 64" in err["message"]


def test_nesting_inside_strings_does_not_count(caller: Caller) -> None:
    """Brackets inside strings (escaped quotes included) are text, not nesting: such a prompt is accepted."""
    prompt = '\\"' + "[" * 200 + "{" * 200
    body = (
        '{"model_id": "local-motion", "image_url": "https://93.184.215.14/x.jpg", "prompt": "' + prompt + '"}'
    )
    resp = _post_raw(caller, QUOTE, body)
    assert resp.status_code == 200, resp.text


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"model_id": "local-motion", "prompt": "a\u0000b"}, "prompt"),
        ({"model_id": "local-motion", "prompt": "lone \ud800 surrogate"}, "prompt"),
        ({"model_id": "local-motion\u0000"}, "model_id"),
        ({"model_id": "local-motion", "settings": {"resolution": "480p\u0000"}}, "settings.resolution"),
        ({"model_id": "local-motion", "settings": {"seed\u0000": 1}}, "settings.seed\\u0000"),
        ({"model_id": "local-motion", "image_url": "https://example.com/\u0000.jpg"}, "image_url"),
    ],
)
def test_nul_and_unpaired_surrogates_are_400_on_quote_and_generate_alike(
    caller: Caller, body: dict[str, Any], field: str
) -> None:
    """A NUL or an unpaired surrogate in any string or key of the body is a 400 naming its path, and quote
    answers exactly as generate-video does."""
    raw = json.dumps(body)  # ASCII-escaped: \\u0000 and \\ud800 travel as JSON escapes
    quoted = _error(_post_raw(caller, QUOTE, raw), 400, field)
    generated = _error(_post_raw(caller, GENERATE, raw), 400, field)
    assert _without_id(quoted) == _without_id(generated)


@pytest.mark.parametrize(
    "raw",
    [
        '{"model_id": "local-motion", "settings": {"duration": ' + "9" * 5000 + "}}",
        '{"model_id": "local-motion", "settings": {"duration": NaN}}',
        '{"model_id": "local-motion", "settings": {"seed": 1e999}}',
        '{"model_id": "local-motion", "settings": {"seed": -Infinity}}',
    ],
)
def test_numbers_json_cannot_carry_are_400(caller: Caller, raw: str) -> None:
    """Integers too long to convert, NaN, Infinity and floats that overflow are refused with a 400."""
    for path in (QUOTE, GENERATE):
        err = _error(_post_raw(caller, path, raw), 400)
        assert err["details"]["field"] in ("body", "settings.seed")


def test_nul_in_a_query_parameter_is_400(caller: Caller) -> None:
    """A NUL in a query parameter's value or name is a 400 naming the parameter, on any endpoint."""
    _error(caller.http.get("/functions/v1/list-videos", params={"status": "done\u0000"}), 400, "status")
    _error(caller.http.get("/functions/v1/get-credits", params={"note": "\u0000"}), 400, "note")
    _error(caller.http.get("/functions/v1/get-credits?a%00b=1"), 400, "a\\u0000b")


# ------------------------------------------------------------------------------------------------- webhooks


def test_signed_stripe_event_with_nul_or_deep_nesting_is_400(stack: str) -> None:
    """A correctly signed Stripe event whose id holds a NUL, or that nests 5,000 levels, is a 400."""
    secret = "whsec_malformed_input_test"
    event = {
        "id": "evt_\u0000",
        "type": "checkout.session.expired",
        "created": 1,
        "data": {"object": {"id": "cs_1"}},
    }
    bodies = [json.dumps(event).encode(), b'{"id": "evt_1", "type": "x", "data": ' + DEEP.encode() + b"}"]
    with stripe_settings(stripe_webhook_secret=secret):
        for body in bodies:
            delivery = prepare_delivery(body, secret)
            resp = httpx.post(
                f"{stack}/functions/v1/stripe-webhook", content=delivery.body, headers=delivery.headers
            )
            _error(resp, 400)


@pytest.fixture(scope="module")
def fal_emulator(stack: str) -> Iterator[FalEmulator]:
    """The fal emulator (its signing keys published at FAL_JWKS_URL) for this module."""
    with FalEmulator() as emu, configured(**emu.env()):
        yield emu


def test_signed_fal_webhook_that_is_deep_or_not_an_object_is_400(
    stack: str, fal_emulator: FalEmulator
) -> None:
    """A fal delivery with a valid signature but a body nested 5,000 levels deep, or a JSON array, is a 400."""
    rid = str(uuid.uuid4())
    for body in (('{"request_id": "' + rid + '", "payload": ' + DEEP + "}").encode(), b"[1, 2]"):
        signed = fal_emulator.build_webhook(rid, body=body)
        resp = httpx.post(f"{stack}/functions/v1/fal-webhook", content=signed.body, headers=signed.headers)
        _error(resp, 400, "body")


# ------------------------------------------------------------------------------- malformed HTTP, raw sockets


def _raw_exchange(stack: str, request: bytes) -> tuple[int, dict[str, str], dict[str, Any]]:
    """Send bytes on a fresh connection and read the answer; (status, headers, JSON body)."""
    status, headers, body = raw_http(stack, request)
    assert len(body) == int(headers["content-length"])
    return status, headers, json.loads(body)


@pytest.mark.parametrize(
    "request_bytes",
    [
        b"GET /functions/v1/health HTTP/1.1\r\nHost: x\r\nX-Note: a\x00b\r\n\r\n",
        b"GET /functions/v1/health HTTP/1.1\r\nHost: x\r\nBad Name: a\r\n\r\n",
        b"GET /functions/v1/health HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer secret-token\x00\r\n\r\n",
        b"GET /functions/v1/he alth HTTP/1.1\r\nHost: x\r\n\r\n",
        b"POST /functions/v1/quote HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
    ],
)
def test_protocol_errors_answer_in_the_json_error_shape(stack: str, request_bytes: bytes) -> None:
    """Requests the HTTP parser refuses (NUL or control bytes in a header, a bad header name, a broken request
    line or chunk) get a 400 bad_request in the JSON shape with a request id, never echoing header values."""
    status, headers, body = _raw_exchange(stack, request_bytes)
    assert status == 400 and headers["content-type"] == "application/json"
    assert body["error"]["code"] == "bad_request" and body["error"]["request_id"] == headers["x-request-id"]
    assert "secret-token" not in json.dumps(body)


def test_oversized_headers_get_a_json_431_not_a_reset(stack: str) -> None:
    """3 MB of request headers get a clean 431 in the JSON shape, read to the end, not a connection reset."""
    request = b"GET /functions/v1/health HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 3_000_000 + b"\r\n\r\n"
    status, headers, body = _raw_exchange(stack, request)
    assert status == 431 and headers["connection"] == "close"
    assert body["error"]["code"] == "bad_request" and body["error"]["details"]["max_bytes"] == 16384


@pytest.mark.parametrize(
    ("path", "raw", "field"),
    [
        (GENERATE, "[1, 2]", "body"),
        ("/functions/v1/generate-image", '"a prompt"', "body"),
        (GENERATE, '{"model_id": "local-motion", "settings": []}', "settings"),
        (
            "/functions/v1/generate-image",
            '{"model_id": "local-card", "prompt": "x", "settings": 3}',
            "settings",
        ),
    ],
)
def test_a_value_that_should_be_an_object_is_named_in_json_terms(
    caller: Caller, path: str, raw: str, field: str
) -> None:
    """A body or settings that is not a JSON object is a 400 saying so, without naming internal classes."""
    err = _error(_post_raw(caller, path, raw), 400, field)
    assert err["message"] == f"{field}: must be a JSON object"
    assert "instance" not in json.dumps(err)
