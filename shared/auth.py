"""Supabase access-token verification (PyJWT) and dev-token minting.

Algorithms are allow-listed: HS256 with SUPABASE_JWT_SECRET (or the dev secret), ES256/RS256 with keys from
SUPABASE_JWKS_URL chosen by ``kid``. Audience must be ``authenticated``, ``exp``/``iat``/``sub`` are required,
the role must be ``authenticated`` and ``sub`` a UUID. Every failure is ``Unauthorized`` (401).
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING, Any

from shared import errors
from shared.settings import Settings, get_settings

if TYPE_CHECKING:  # PyJWT (with cryptography) is imported on the first token, not by every function
    import jwt

AUDIENCE = "authenticated"
DEV_ISSUER = "i2v-local"
_ASYMMETRIC = ("ES256", "RS256")
_LEEWAY_S = 30


@dataclass(frozen=True)
class User:
    """The authenticated caller."""

    id: uuid.UUID
    email: str | None = None
    is_anonymous: bool = False


def verify_token(token: str, settings: Settings | None = None) -> User:
    """Verify a Supabase access token and return its user, or raise ``Unauthorized``."""
    import jwt

    settings = settings or get_settings()
    try:
        header = jwt.get_unverified_header(token)
        alg = header.get("alg")
        key: Any
        if alg in _ASYMMETRIC and settings.supabase_jwks_url:
            key = _jwks_client(settings.supabase_jwks_url).get_signing_key_from_jwt(token).key
        elif alg == "HS256":
            key = settings.jwt_secret()
        else:
            raise errors.Unauthorized("The token's signing algorithm is not accepted.")
        claims = jwt.decode(
            token,
            key,
            algorithms=[alg],
            audience=AUDIENCE,
            issuer=settings.supabase_jwt_issuer,
            leeway=_LEEWAY_S,
            options={"require": ["exp", "iat", "sub", "aud"]},
        )
    except jwt.ExpiredSignatureError as exc:
        raise errors.Unauthorized("The token has expired.") from exc
    except (jwt.InvalidTokenError, jwt.PyJWKClientError) as exc:
        raise errors.Unauthorized("The token is not valid.") from exc
    return _user_from_claims(claims)


def _user_from_claims(claims: dict[str, Any]) -> User:
    if claims.get("role") != "authenticated":
        raise errors.Unauthorized("The token is not a user access token.")
    try:
        user_id = uuid.UUID(str(claims["sub"]))
    except ValueError as exc:
        raise errors.Unauthorized("The token's subject is not a user id.") from exc
    return User(id=user_id, email=claims.get("email") or None, is_anonymous=bool(claims.get("is_anonymous")))


@lru_cache(maxsize=4)
def _jwks_client(url: str) -> jwt.PyJWKClient:
    import jwt

    return jwt.PyJWKClient(url, cache_jwk_set=True, lifespan=600, timeout=5)


def bearer_token(authorization: str | None) -> str:
    """The token in an ``Authorization: Bearer ...`` header, or raise ``Unauthorized``."""
    if not authorization:
        raise errors.Unauthorized("An Authorization: Bearer <token> header is required.")
    scheme, _, token = authorization.strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise errors.Unauthorized("The Authorization header must be 'Bearer <token>'.")
    return token.strip()


def mint_dev_token(
    user_id: uuid.UUID, *, expires_in: int = 3600, settings: Settings | None = None, email: str | None = None
) -> str:
    """An HS256 token shaped like a Supabase access token, signed with the server's secret."""
    import jwt

    settings = settings or get_settings()
    now = int(time.time())
    claims = {
        "iss": settings.supabase_jwt_issuer or DEV_ISSUER,
        "sub": str(user_id),
        "aud": AUDIENCE,
        "exp": now + expires_in,
        "iat": now,
        "role": "authenticated",
        "email": email or "",
        "aal": "aal1",
        "is_anonymous": False,
        "session_id": str(uuid.uuid4()),
    }
    return jwt.encode(claims, settings.jwt_secret(), algorithm="HS256")
