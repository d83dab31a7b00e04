"""API keys: ``i2v_sk_`` + 43 base62 characters (256 random bits), shown once and stored as a SHA-256 digest.

A key is looked up by its digest, so the database never holds anything a key could be rebuilt from, and the
comparison an attacker could time is between digests of their guesses, not of the key. No slow hash: a key has
256 bits of entropy, so hashing it slowly adds nothing, and a salt would only make the lookup by digest impossible.

Which user a key belongs to never changes, so each container remembers it; whether the key is still live (not
revoked, not expired) is asked again after API_KEY_RECHECK_S seconds (5 by default), and billed requests ask
inside their own procedure call (start_generation), so a revoked key is refused there at once and everywhere
within seconds, without a database round trip of its own on the hot path.
"""

from __future__ import annotations

import hashlib
import secrets
import threading
import time
import uuid
from collections import OrderedDict
from datetime import datetime

from shared import errors
from shared.auth import User
from shared.db import get_db
from shared.settings import get_settings

PREFIX = "i2v_sk_"
#: Characters of a key shown in lists to tell keys apart (the prefix and the first 8 random characters).
VISIBLE = len(PREFIX) + 8
_ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
_RANDOM_BYTES = 32
_BODY_LENGTH = 43  # base62 digits of a 256-bit number, zero-padded
_REMEMBERED_MAX = 4096


def new_key() -> str:
    """A new random key (256 bits from the OS's CSPRNG, in base62)."""
    number = int.from_bytes(secrets.token_bytes(_RANDOM_BYTES), "big")
    digits = []
    for _ in range(_BODY_LENGTH):
        number, rest = divmod(number, 62)
        digits.append(_ALPHABET[rest])
    return PREFIX + "".join(reversed(digits))


def digest(key: str) -> bytes:
    """The SHA-256 digest a key is stored and looked up by."""
    return hashlib.sha256(key.encode()).digest()


def looks_like_key(token: str) -> bool:
    """Whether a bearer token is an API key (rather than an access token)."""
    return token.startswith(PREFIX)


def _well_formed(key: str) -> bool:
    body = key[len(PREFIX) :]
    return key.startswith(PREFIX) and len(body) == _BODY_LENGTH and all(c in _ALPHABET for c in body)


_remembered: OrderedDict[bytes, tuple[User, float | None, float]] = OrderedDict()
_lock = threading.Lock()


def authenticate(key: str, *, recheck: bool = True) -> User:
    """The user an API key acts for, or ``Unauthorized`` (unknown, revoked or expired).

    With ``recheck`` false the caller's own procedure call checks that the key is still live (start_generation),
    so a remembered key needs no round trip however long ago it was checked.
    """
    if not _well_formed(key):
        raise _refused()
    wanted = digest(key)
    now = time.time()
    with _lock:
        hit = _remembered.get(wanted)
    if hit is not None:
        user, expires, checked = hit
        fresh = now - checked < get_settings().api_key_recheck_s
        if (expires is None or expires > now) and (fresh or not recheck):
            return user
    found = get_db().call("authenticate_api_key", digest=wanted)
    if found is None:
        forget(wanted)
        raise _refused()
    user = User(
        id=uuid.UUID(str(found["user_id"])),
        api_key_id=uuid.UUID(str(found["id"])),
        scopes=frozenset(found["scopes"]),
    )
    expires_at = found.get("expires_at")
    expires = datetime.fromisoformat(expires_at).timestamp() if expires_at else None
    with _lock:
        _remembered[wanted] = (user, expires, now)
        _remembered.move_to_end(wanted)
        while len(_remembered) > _REMEMBERED_MAX:
            _remembered.popitem(last=False)
    return user


def forget(key_digest: bytes | None = None, key_id: uuid.UUID | None = None) -> None:
    """Drop what this container remembers of a key (by digest or id), e.g. once it is revoked."""
    with _lock:
        for remembered, (user, _, _) in list(_remembered.items()):
            if remembered == key_digest or (key_id is not None and user.api_key_id == key_id):
                del _remembered[remembered]


def _refused() -> errors.Unauthorized:
    return errors.Unauthorized("The API key is not valid: unknown, revoked or expired.", reason="api_key")
