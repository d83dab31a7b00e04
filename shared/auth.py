"""Supabase access-token verification (PyJWT) and dev-token minting.

Algorithms are allow-listed: HS256 with SUPABASE_JWT_SECRET (or the dev secret), ES256/RS256 with keys from
SUPABASE_JWKS_URL chosen by ``kid`` (the key must be one for the token's algorithm). Audience must be
``authenticated``, ``exp``/``iat``/``sub`` are required, the role must be ``authenticated`` and ``sub`` a UUID.
Every failure is ``Unauthorized`` (401) saying why, with ``details.reason``.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections import OrderedDict
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


#: What an API key may be allowed to do; a user's access token may do all of it.
SCOPES: tuple[str, ...] = ("generate", "read", "billing", "campaigns", "webhooks", "keys")
#: The scopes of a key created without naming any: everything but money and keys.
DEFAULT_SCOPES: tuple[str, ...] = ("generate", "read", "campaigns", "webhooks")


@dataclass(frozen=True)
class User:
    """The authenticated caller: a user's access token, or one of the user's API keys (``api_key_id``), which
    acts as the user within its ``scopes``."""

    id: uuid.UUID
    email: str | None = None
    is_anonymous: bool = False
    #: Roles the project granted (the token's ``app_metadata.roles``, which only the service role can set).
    roles: frozenset[str] = frozenset()
    api_key_id: uuid.UUID | None = None
    scopes: frozenset[str] | None = None

    def allows(self, scope: str) -> bool:
        """Whether the caller may do what ``scope`` names (an access token may do everything)."""
        return self.scopes is None or scope in self.scopes


def verify_token(token: str, settings: Settings | None = None) -> User:
    """Verify a Supabase access token and return its user, or raise ``Unauthorized`` saying why.

    ``details.reason`` names the failure (malformed, algorithm, unknown_key, expired, not_yet_valid, signature,
    audience, issuer, missing_claim, role, subject); messages never carry a key or the token.
    """
    import jwt

    settings = settings or get_settings()
    try:
        header = jwt.get_unverified_header(token)
    except jwt.PyJWTError as exc:
        raise _malformed() from exc
    alg = header.get("alg")
    key: Any
    if alg in _ASYMMETRIC and settings.supabase_jwks_url:
        key = _jwks_key(token, str(alg), settings.supabase_jwks_url)
    elif alg == "HS256":
        key = settings.jwt_secret()
    else:
        raise errors.Unauthorized(
            f"The token's signing algorithm ({alg}) is not accepted; "
            f"accepted: HS256{', ES256, RS256' if settings.supabase_jwks_url else ''}.",
            reason="algorithm",
        )
    try:
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
        raise errors.Unauthorized(
            "The token has expired; sign in again for a new one.", reason="expired"
        ) from exc
    except jwt.ImmatureSignatureError as exc:
        raise errors.Unauthorized(
            "The token is not valid yet (its iat or nbf is in the future); check the clock.",
            reason="not_yet_valid",
        ) from exc
    except jwt.InvalidSignatureError as exc:
        raise _bad_signature(token, alg, settings) from exc
    except jwt.InvalidAudienceError as exc:
        raise errors.Unauthorized(
            f"The token's audience (aud) is not {AUDIENCE!r}: it is not a user access token.",
            reason="audience",
        ) from exc
    except jwt.InvalidIssuerError as exc:
        raise errors.Unauthorized(
            f"The token's issuer (iss) is not {settings.supabase_jwt_issuer!r}, the one this server accepts.",
            reason="issuer",
        ) from exc
    except jwt.MissingRequiredClaimError as exc:
        raise errors.Unauthorized(
            f"The token has no {exc.claim!r} claim; an access token carries exp, iat, sub and aud.",
            reason="missing_claim",
        ) from exc
    except jwt.DecodeError as exc:
        raise _malformed() from exc
    except jwt.PyJWTError as exc:
        raise errors.Unauthorized("The token is not valid.", reason="invalid") from exc
    return _user_from_claims(claims)


def _malformed() -> errors.Unauthorized:
    return errors.Unauthorized(
        "The token is malformed: a JWT is three base64url parts separated by dots.", reason="malformed"
    )


def _jwks_key(token: str, alg: str, url: str) -> Any:
    """The public key of the JWKS entry named by the token's ``kid``, which must be a key for ``alg``."""
    import jwt

    try:
        jwk = _jwks_client(url).get_signing_key_from_jwt(token)
    except jwt.PyJWKClientConnectionError as exc:
        raise errors.Unauthorized(
            "The signing keys (SUPABASE_JWKS_URL) cannot be fetched right now; retry later.",
            reason="keys_unavailable",
        ) from exc
    except jwt.PyJWKClientError as exc:
        raise errors.Unauthorized(
            "No signing key of this server has the token's kid: it was signed by another project, or the key "
            "was rotated out.",
            reason="unknown_key",
        ) from exc
    except jwt.PyJWTError as exc:
        raise _malformed() from exc
    if jwk.algorithm_name != alg:  # e.g. RS256 named with the kid of an EC key: never hand one to the other
        raise errors.Unauthorized(
            f"The token says {alg} but its kid names a {jwk.algorithm_name} key.", reason="algorithm"
        )
    return jwk.key


def _bad_signature(token: str, alg: Any, settings: Settings) -> errors.Unauthorized:
    """The 401 for a signature that does not verify; for a dev token checked against this server's own dev
    secret, it says how to mint one that verifies (secrets are named, never shown)."""
    import jwt

    if alg == "HS256" and not settings.supabase_jwt_secret:
        try:
            issuer = jwt.decode(token, options={"verify_signature": False}).get("iss")
        except jwt.PyJWTError:
            issuer = None
        if issuer == (settings.supabase_jwt_issuer or DEV_ISSUER):
            return errors.Unauthorized(
                "The token was signed with another dev secret than this server's: it was minted under another "
                "I2V_HOME. Mint it with `i2v dev-token` using the same I2V_HOME as the server "
                "(its dev secret is the file I2V_HOME/dev-jwt-secret).",
                reason="signature",
            )
    return errors.Unauthorized(
        "The token's signature does not verify: it was not signed with this server's key.", reason="signature"
    )


def _user_from_claims(claims: dict[str, Any]) -> User:
    if claims.get("role") != "authenticated":
        raise errors.Unauthorized(
            "The token is not a user access token (its role is not 'authenticated').", reason="role"
        )
    try:
        user_id = uuid.UUID(str(claims["sub"]))
    except ValueError as exc:
        raise errors.Unauthorized(
            "The token's subject (sub) is not a user id (a UUID).", reason="subject"
        ) from exc
    return User(
        id=user_id,
        email=claims.get("email") or None,
        is_anonymous=bool(claims.get("is_anonymous")),
        roles=_roles(claims.get("app_metadata")),
    )


def _roles(app_metadata: Any) -> frozenset[str]:
    """The roles in ``app_metadata.roles`` (a list of strings; anything else grants none)."""
    roles = app_metadata.get("roles") if isinstance(app_metadata, dict) else None
    return frozenset(r for r in roles if isinstance(r, str)) if isinstance(roles, list) else frozenset()


def is_operator(user: User, settings: Settings | None = None) -> bool:
    """Whether ``user`` may read the operator overview: named in OPERATOR_USER_IDS, or holding the ``operator``
    role in the token's ``app_metadata``."""
    settings = settings or get_settings()
    return user.id in settings.operators() or "operator" in user.roles


@lru_cache(maxsize=4)
def _jwks_client(url: str) -> jwt.PyJWKClient:
    import jwt

    return jwt.PyJWKClient(url, cache_jwk_set=True, lifespan=600, timeout=5)


def bearer_token(authorization: str | None) -> str:
    """The token in an ``Authorization: Bearer ...`` header, or raise ``Unauthorized``."""
    if not authorization:
        raise errors.Unauthorized(
            "An Authorization: Bearer <token> header (an access token or an i2v_sk_ API key) or an X-API-Key "
            "header is required."
        )
    scheme, _, token = authorization.strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise errors.Unauthorized("The Authorization header must be 'Bearer <token>'.")
    return token.strip()


def mint_dev_token(
    user_id: uuid.UUID,
    *,
    expires_in: int = 3600,
    settings: Settings | None = None,
    email: str | None = None,
    roles: tuple[str, ...] = (),
) -> str:
    """An HS256 token shaped like a Supabase access token, signed with the server's secret; ``roles`` go in its
    ``app_metadata`` (``("operator",)`` for an operator)."""
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
        "app_metadata": {
            "provider": "email",
            "providers": ["email"],
            **({"roles": list(roles)} if roles else {}),
        },
    }
    return jwt.encode(claims, settings.jwt_secret(), algorithm="HS256")


#: Verified tokens remembered at once, and for how long each (so a key rotated out of the JWKS stops working
#: within this much of when it would without the memory).
_VERIFIED_MAX = 4096
_VERIFIED_TTL_S = 60.0
_verified: OrderedDict[str, tuple[User, float, float, Settings]] = OrderedDict()
_verified_lock = threading.Lock()


def verified_user(token: str) -> User:
    """:func:`verify_token` for a request, remembering each token it accepted for up to a minute.

    A client sends the same access token with every request until it expires. Its signature, audience, issuer,
    role and subject cannot change, so they are verified once (per token and settings); the expiry is checked
    on every use, with the same leeway. Refused tokens are not remembered.
    """
    settings = get_settings()
    now = time.time()
    with _verified_lock:
        hit = _verified.get(token)
        if hit is not None:
            user, exp, until, checked_with = hit
            if checked_with is settings and now < until and exp > now - _LEEWAY_S:
                _verified.move_to_end(token)
                return user
            del _verified[token]
    user = verify_token(token, settings)
    import jwt

    exp = float(jwt.decode(token, options={"verify_signature": False})["exp"])
    with _verified_lock:
        _verified[token] = (user, exp, now + _VERIFIED_TTL_S, settings)
        while len(_verified) > _VERIFIED_MAX:
            _verified.popitem(last=False)
    return user
