"""A Supabase Auth (GoTrue) emulator: what the web console's supabase-js uses to sign a user in and out.

Written from Supabase Auth's REST API description (``openapi.yaml`` of github.com/supabase/auth: ``/token``,
``/logout``, ``/user``, ``AccessTokenResponseSchema``, ``UserSchema``, ``ErrorSchema``) and, for the access
token's claims and signing keys, from ``shared/reference/supabase-auth.md`` (§1 claims, §2 asymmetric keys at
``<issuer>/.well-known/jwks.json``). The console's vendored supabase-js runs unmodified against it::

    with SupabaseAuthEmulator() as auth:
        user_id = auth.add_user("ada@example.com", "correct horse")
        # SUPABASE_URL=auth.base_url  SUPABASE_ANON_KEY=auth.anon_key
        # SUPABASE_JWKS_URL=auth.jwks_url  SUPABASE_JWT_ISSUER=auth.issuer

Served under ``/auth/v1`` as on a Supabase project, with CORS open to any origin (a browser app on another
origin calls it), and every endpoint but the key set requires the ``apikey`` header (``APIKeyAuth``):

* ``POST /token?grant_type=password`` ``{"email", "password"}`` and ``grant_type=refresh_token``
  ``{"refresh_token"}``: an ``AccessTokenResponseSchema`` (``access_token`` an ES256 JWT with the reference's
  claims, ``token_type`` ``bearer``, ``expires_in``, a single-use opaque ``refresh_token``, ``user``). Wrong
  credentials or a used or revoked refresh token: 400 with ``ErrorSchema``'s ``error`` / ``error_description``.
* ``POST /logout?scope=global|local|others`` (``UserAuth``): 204; the session's refresh tokens stop working.
* ``GET /user`` (``UserAuth``): the ``UserSchema`` of the token's user.
* ``GET /.well-known/jwks.json``: the public key, with ``kid``, ``alg`` ``ES256`` and ``use`` ``sig``.

Every request is kept in ``requests`` as ``(method, path, grant_type or None)``.
"""

from __future__ import annotations

import json
import secrets
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import ec
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from tests.emulators._server import BackgroundServer

_KID = "emulator-es256"


@dataclass
class AuthUser:
    """A registered user: its id, email and password, and when it was created."""

    id: uuid.UUID
    email: str
    password: str
    created_at: str = field(default_factory=lambda: _now())


def _now() -> str:
    return datetime.now(UTC).isoformat().replace("+00:00", "Z")


def _error(status: int, error: str, description: str) -> JSONResponse:
    """An ``ErrorSchema`` answer in its OAuth form (``error`` and ``error_description``)."""
    return JSONResponse({"error": error, "error_description": description}, status_code=status)


class SupabaseAuthEmulator(BackgroundServer):
    """Supabase Auth on a loopback port: password and refresh-token grants, logout, the user and the key set."""

    _server_label = "Supabase Auth emulator"
    _server_thread = "supabase-auth-emulator"

    def __init__(self, *, host: str = "127.0.0.1", port: int = 0, access_token_ttl: int = 3600) -> None:
        super().__init__(host=host, port=port)
        self.access_token_ttl = access_token_ttl
        self.anon_key = "anon-" + secrets.token_urlsafe(16)
        self.requests: list[tuple[str, str, str | None]] = []
        self._key = ec.generate_private_key(ec.SECP256R1())
        self._users: dict[str, AuthUser] = {}
        self._refresh: dict[str, tuple[uuid.UUID, uuid.UUID]] = {}  # live refresh token -> (user, session)
        self._ended_sessions: set[uuid.UUID] = set()
        self._lock = threading.Lock()
        routes = [
            Route("/auth/v1/token", self._token, methods=["POST"]),
            Route("/auth/v1/logout", self._logout, methods=["POST"]),
            Route("/auth/v1/user", self._user, methods=["GET"]),
            Route("/auth/v1/.well-known/jwks.json", self._jwks, methods=["GET"]),
        ]
        cors = Middleware(
            CORSMiddleware, allow_origins=["*"], allow_methods=["*"], allow_headers=["*"], max_age=600
        )
        self.app = Starlette(routes=routes, middleware=[cors])

    @property
    def issuer(self) -> str:
        """The ``iss`` of its tokens: ``<base_url>/auth/v1``."""
        return f"{self.base_url}/auth/v1"

    @property
    def jwks_url(self) -> str:
        """Where its public key is published."""
        return f"{self.issuer}/.well-known/jwks.json"

    def add_user(self, email: str, password: str) -> uuid.UUID:
        """Register a confirmed user; returns its id (the ``sub`` of its tokens)."""
        user = AuthUser(uuid.uuid4(), email.lower(), password)
        with self._lock:
            self._users[user.email] = user
        return user.id

    def grants(self, grant_type: str) -> int:
        """How many ``/token`` requests of this grant type it has answered."""
        return sum(
            1 for method, path, grant in self.requests if path.endswith("/token") and grant == grant_type
        )

    # ------------------------------------------------------------------------------------------ endpoints

    async def _token(self, request: Request) -> Response:
        grant = request.query_params.get("grant_type")
        self.requests.append((request.method, request.url.path, grant))
        if (refused := self._check_apikey(request)) is not None:
            return refused
        try:
            body = json.loads(await request.body() or b"{}")
        except json.JSONDecodeError:
            return _error(400, "invalid_request", "Could not read the request body as JSON")
        if not isinstance(body, dict):
            return _error(400, "invalid_request", "The request body must be a JSON object")
        if grant == "password":
            return self._password_grant(body)
        if grant == "refresh_token":
            return self._refresh_grant(body)
        return _error(400, "unsupported_grant_type", "unsupported_grant_type")

    def _password_grant(self, body: dict[str, Any]) -> Response:
        email, password = body.get("email"), body.get("password")
        if not isinstance(email, str) or not isinstance(password, str) or not password:
            return _error(400, "invalid_request", "Only an email address or phone number should be provided")
        with self._lock:
            user = self._users.get(email.lower())
        if user is None or not secrets.compare_digest(user.password, password):
            return _error(400, "invalid_grant", "Invalid login credentials")
        return JSONResponse(self._session(user, uuid.uuid4()))

    def _refresh_grant(self, body: dict[str, Any]) -> Response:
        token = body.get("refresh_token")
        with self._lock:
            found = self._refresh.pop(token, None) if isinstance(token, str) else None
            if found is None or found[1] in self._ended_sessions:
                return _error(400, "invalid_grant", "Invalid Refresh Token: Refresh Token Not Found")
            user = next(u for u in self._users.values() if u.id == found[0])
        return JSONResponse(self._session(user, found[1]))

    async def _logout(self, request: Request) -> Response:
        self.requests.append((request.method, request.url.path, None))
        if (refused := self._check_apikey(request)) is not None:
            return refused
        claims = self._bearer(request)
        if claims is None:
            return _error(401, "unauthorized", "This endpoint requires a valid Bearer token")
        session = uuid.UUID(claims["session_id"])
        with self._lock:
            if request.query_params.get("scope", "global") == "local":
                self._ended_sessions.add(session)
            else:  # global (the default) and others end every session of the user (others: but this one)
                ended = {s for (u, s) in self._refresh.values() if str(u) == claims["sub"]}
                if request.query_params.get("scope") == "others":
                    ended.discard(session)
                else:
                    ended.add(session)
                self._ended_sessions |= ended
        return Response(status_code=204)

    async def _user(self, request: Request) -> Response:
        self.requests.append((request.method, request.url.path, None))
        if (refused := self._check_apikey(request)) is not None:
            return refused
        claims = self._bearer(request)
        if claims is None:
            return _error(401, "unauthorized", "This endpoint requires a valid Bearer token")
        with self._lock:
            user = next((u for u in self._users.values() if str(u.id) == claims["sub"]), None)
        if user is None:
            return _error(404, "user_not_found", "User from sub claim in JWT does not exist")
        return JSONResponse(self._user_record(user))

    async def _jwks(self, request: Request) -> Response:
        self.requests.append((request.method, request.url.path, None))
        jwk = json.loads(jwt.algorithms.ECAlgorithm.to_jwk(self._key.public_key()))
        jwk.update(kid=_KID, alg="ES256", use="sig", key_ops=["verify"])
        return JSONResponse({"keys": [jwk]})

    # ------------------------------------------------------------------------------------------ helpers

    def _check_apikey(self, request: Request) -> Response | None:
        if not secrets.compare_digest(request.headers.get("apikey", ""), self.anon_key):
            return JSONResponse({"code": 401, "msg": "Invalid API key"}, status_code=401)
        return None

    def _bearer(self, request: Request) -> dict[str, Any] | None:
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not token:
            return None
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                self._key.public_key(),
                algorithms=["ES256"],
                audience="authenticated",
                issuer=self.issuer,
            )
        except jwt.PyJWTError:
            return None
        return claims

    def _session(self, user: AuthUser, session: uuid.UUID) -> dict[str, Any]:
        """A new access token and single-use refresh token for ``user`` in ``session``."""
        now = int(time.time())
        claims = {
            "iss": self.issuer,
            "sub": str(user.id),
            "aud": "authenticated",
            "exp": now + self.access_token_ttl,
            "iat": now,
            "email": user.email,
            "phone": "",
            "app_metadata": {"provider": "email", "providers": ["email"]},
            "user_metadata": {},
            "role": "authenticated",
            "aal": "aal1",
            "amr": [{"method": "password", "timestamp": now}],
            "session_id": str(session),
            "is_anonymous": False,
        }
        refresh = secrets.token_urlsafe(16)
        with self._lock:
            self._refresh[refresh] = (user.id, session)
        return {
            "access_token": jwt.encode(claims, self._key, algorithm="ES256", headers={"kid": _KID}),
            "token_type": "bearer",
            "expires_in": self.access_token_ttl,
            "refresh_token": refresh,
            "user": self._user_record(user),
        }

    @staticmethod
    def _user_record(user: AuthUser) -> dict[str, Any]:
        """The user as ``UserSchema``."""
        return {
            "id": str(user.id),
            "aud": "authenticated",
            "role": "authenticated",
            "email": user.email,
            "email_confirmed_at": user.created_at,
            "phone": "",
            "confirmed_at": user.created_at,
            "last_sign_in_at": _now(),
            "app_metadata": {"provider": "email", "providers": ["email"]},
            "user_metadata": {},
            "identities": [],
            "created_at": user.created_at,
            "updated_at": _now(),
        }
