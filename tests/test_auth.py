"""Token verification: allow-listed algorithms, audience, expiry, role; JWKS keys for ES256."""

from __future__ import annotations

import base64
import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from shared import errors
from shared.auth import verify_token
from shared.settings import Settings, get_settings
from tests.conftest import token_claims

SUPABASE_VECTOR_SECRET = "super-secret-jwt-token-with-at-least-32-characters-long"
SUPABASE_VECTOR_TOKEN = (
    "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJpc3MiOiJodHRwOi8vMTI3LjAuMC4xOjU0MzIxL2F1dGgvdjEiLCJzdWIiOiIxMTExMTExMS"
    "0yMjIyLTMzMzMtNDQ0NC01NTU1NTU1NTU1NTUiLCJhdWQiOiJhdXRoZW50aWNhdGVkIiwiZXhwIjo0MTAyNDQ0ODAwLCJpYXQiOjE3MDAwMDAw"
    "MDAsInJvbGUiOiJhdXRoZW50aWNhdGVkIiwiZW1haWwiOiJhbGljZUBleGFtcGxlLmNvbSIsInNlc3Npb25faWQiOiI2NjY2NjY2Ni03Nzc3LT"
    "g4ODgtOTk5OS0wMDAwMDAwMDAwMDAiLCJhYWwiOiJhYWwxIiwiaXNfYW5vbnltb3VzIjpmYWxzZX0.wSQKKGGRDeo_-AgW2bQf1a6UaG-hVCC"
    "qckKQbZivn84"
)


def _hs(claims: dict[str, Any], secret: str | None = None) -> str:
    return jwt.encode(claims, secret or get_settings().jwt_secret(), algorithm="HS256")


def _unsigned(claims: dict[str, Any]) -> str:
    def seg(obj: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(obj).encode()).rstrip(b"=").decode()

    return f"{seg({'alg': 'none', 'typ': 'JWT'})}.{seg(claims)}."


def _get(stack: str, token: str) -> httpx.Response:
    return httpx.get(f"{stack}/functions/v1/get-credits", headers={"Authorization": f"Bearer {token}"})


def test_valid_token_is_accepted(stack: str) -> None:
    """A token signed with the server's secret, right audience and role, is accepted."""
    assert _get(stack, _hs(token_claims())).status_code == 200


@pytest.mark.parametrize(
    ("name", "make"),
    [
        ("alg none", lambda: _unsigned(token_claims())),
        ("wrong secret", lambda: _hs(token_claims(), "another-secret-that-is-at-least-32-bytes-long")),
        ("wrong audience", lambda: _hs(token_claims(aud="anon"))),
        ("no audience", lambda: _hs(token_claims(aud=None))),
        ("expired", lambda: _hs(token_claims(exp=int(time.time()) - 120, iat=int(time.time()) - 800))),
        ("no exp", lambda: _hs(token_claims(exp=None))),
        ("no sub", lambda: _hs(token_claims(sub=None))),
        ("sub not a uuid", lambda: _hs(token_claims(sub="alice"))),
        ("anon role", lambda: _hs(token_claims(role="anon"))),
        (
            "service key shape",
            lambda: _hs(
                {
                    "iss": "supabase",
                    "ref": "x",
                    "role": "service_role",
                    "iat": int(time.time()),
                    "exp": int(time.time()) + 60,
                }
            ),
        ),
        ("garbage", lambda: "not.a.token"),
    ],
)
def test_bad_tokens_are_401(stack: str, name: str, make: Any) -> None:
    """Forged, unsigned, expired, wrong-audience, wrong-role and garbage tokens are refused with 401."""
    resp = _get(stack, make())
    assert resp.status_code == 401, name
    assert resp.json()["error"]["code"] == "unauthorized"


def test_missing_or_malformed_header_is_401(stack: str) -> None:
    """No Authorization header, or one that is not Bearer, is refused with 401."""
    assert httpx.get(f"{stack}/functions/v1/get-credits").status_code == 401
    for value in ("Basic abc", "Bearer", "Token abc"):
        resp = httpx.get(f"{stack}/functions/v1/get-credits", headers={"Authorization": value})
        assert resp.status_code == 401, value


def test_algorithms_outside_the_allow_list_are_refused() -> None:
    """A token signed correctly but with an algorithm outside the allow-list (HS512) is refused."""
    settings = Settings(supabase_jwt_secret="s" * 64)
    token = jwt.encode(token_claims(), "s" * 64, algorithm="HS512")
    with pytest.raises(errors.Unauthorized):
        verify_token(token, settings)


def test_rs256_header_without_jwks_is_refused() -> None:
    """Without SUPABASE_JWKS_URL an asymmetric-algorithm token is refused, never tried against the HMAC secret."""
    settings = Settings(supabase_jwt_secret="s" * 64)
    header = base64.urlsafe_b64encode(b'{"alg":"RS256","typ":"JWT"}').rstrip(b"=").decode()
    body = base64.urlsafe_b64encode(json.dumps(token_claims()).encode()).rstrip(b"=").decode()
    with pytest.raises(errors.Unauthorized):
        verify_token(f"{header}.{body}.c2ln", settings)


def test_supabase_reference_vector_verifies() -> None:
    """The Supabase CLI's documented HS256 token verifies with its secret and issuer."""
    settings = Settings(
        supabase_jwt_secret=SUPABASE_VECTOR_SECRET, supabase_jwt_issuer="http://127.0.0.1:54321/auth/v1"
    )
    user = verify_token(SUPABASE_VECTOR_TOKEN, settings)
    assert str(user.id) == "11111111-2222-3333-4444-555555555555"
    assert user.email == "alice@example.com"


def test_wrong_issuer_is_refused_when_configured() -> None:
    """With SUPABASE_JWT_ISSUER set, a token from another issuer is refused."""
    settings = Settings(
        supabase_jwt_secret=SUPABASE_VECTOR_SECRET, supabase_jwt_issuer="https://x.supabase.co/auth/v1"
    )
    with pytest.raises(errors.Unauthorized):
        verify_token(SUPABASE_VECTOR_TOKEN, settings)


@contextmanager
def serve_jwks(document: dict[str, Any]) -> Iterator[str]:
    """A local HTTP server publishing ``document`` as a JWKS; yields its URL."""
    payload = json.dumps(document).encode()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/auth/v1/.well-known/jwks.json"
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def jwks_server() -> Iterator[tuple[str, ec.EllipticCurvePrivateKey]]:
    """A local HTTP server publishing one ES256 key as a JWKS."""
    key = ec.generate_private_key(ec.SECP256R1())
    jwk = json.loads(jwt.algorithms.ECAlgorithm.to_jwk(key.public_key()))
    jwk.update(kid="test-kid", alg="ES256", use="sig")
    with serve_jwks({"keys": [jwk]}) as url:
        yield url, key


def test_es256_token_verifies_from_jwks(jwks_server: tuple[str, ec.EllipticCurvePrivateKey]) -> None:
    """An ES256 token is verified with the JWKS key named by its kid; an unknown kid is refused."""
    url, key = jwks_server
    settings = Settings(supabase_jwks_url=url, supabase_jwt_secret="x" * 40)
    claims = token_claims()
    good = jwt.encode(claims, key, algorithm="ES256", headers={"kid": "test-kid"})
    assert str(verify_token(good, settings).id) == claims["sub"]
    stranger = ec.generate_private_key(ec.SECP256R1())
    with pytest.raises(errors.Unauthorized):
        verify_token(jwt.encode(claims, stranger, algorithm="ES256", headers={"kid": "test-kid"}), settings)
    with pytest.raises(errors.Unauthorized):
        verify_token(jwt.encode(claims, key, algorithm="ES256", headers={"kid": "other"}), settings)
