"""Verification of fal.ai webhook signatures (Ed25519 over request id, user id, timestamp and body hash).

fal signs every webhook delivery with one of the keys it publishes as a JWKS. The signed message is::

    f"{request_id}\\n{user_id}\\n{timestamp}\\n{sha256(raw_body).hexdigest()}"

taken from the ``X-Fal-Webhook-Request-Id``, ``X-Fal-Webhook-User-Id`` and ``X-Fal-Webhook-Timestamp``
headers; ``X-Fal-Webhook-Signature`` carries the signature as hex. The body must be hashed exactly as
received. Keys rotate, so every published key is tried.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import threading
import time
from collections.abc import Mapping
from typing import Any

import httpx
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from shared.http import make_client

__all__ = [
    "DEFAULT_JWKS_URL",
    "HEADER_REQUEST_ID",
    "HEADER_SIGNATURE",
    "HEADER_TIMESTAMP",
    "HEADER_USER_ID",
    "FalJwks",
    "FalSignatureError",
    "signed_message",
    "verify_fal_webhook",
]

DEFAULT_JWKS_URL = "https://rest.fal.ai/.well-known/jwks.json"
HEADER_REQUEST_ID = "x-fal-webhook-request-id"
HEADER_USER_ID = "x-fal-webhook-user-id"
HEADER_TIMESTAMP = "x-fal-webhook-timestamp"
HEADER_SIGNATURE = "x-fal-webhook-signature"
_REQUIRED_HEADERS = (HEADER_REQUEST_ID, HEADER_USER_ID, HEADER_TIMESTAMP, HEADER_SIGNATURE)

_FETCH_TIMEOUT_S = 5.0
_REFETCH_MIN_AGE_S = 60.0
_SIGNATURE_BYTES = 64


class FalSignatureError(Exception):
    """A fal webhook delivery failed verification; the message says which check failed."""


def _b64url_decode(value: str) -> bytes:
    """Decode base64url, tolerating missing padding."""
    return base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))


def _parse_jwks(document: Any) -> list[Ed25519PublicKey]:
    """Extract the Ed25519 public keys of a JWKS document, skipping entries that are not Ed25519 keys."""
    if not isinstance(document, dict) or not isinstance(document.get("keys"), list):
        raise FalSignatureError("no keys: JWKS document has no 'keys' list")
    keys: list[Ed25519PublicKey] = []
    for entry in document["keys"]:
        if not isinstance(entry, dict) or not isinstance(entry.get("x"), str):
            continue
        if entry.get("kty", "OKP") != "OKP" or entry.get("crv", "Ed25519") != "Ed25519":
            continue
        try:
            keys.append(Ed25519PublicKey.from_public_bytes(_b64url_decode(entry["x"])))
        except (ValueError, binascii.Error):
            continue
    return keys


class FalJwks:
    """fal's published webhook keys, fetched over HTTP and cached (thread-safe)."""

    def __init__(self, url: str, *, ttl_s: float = 86400.0, client: httpx.Client | None = None) -> None:
        self._url = url
        self._ttl_s = ttl_s
        self._client = client
        self._lock = threading.Lock()
        self._keys: list[Ed25519PublicKey] = []
        self._fetched_at: float | None = None

    @property
    def url(self) -> str:
        """The JWKS URL keys are fetched from."""
        return self._url

    def _fetch(self) -> list[Ed25519PublicKey]:
        """Download and parse the JWKS document."""
        try:
            if self._client is not None:
                response = self._client.get(self._url, timeout=_FETCH_TIMEOUT_S)
            else:
                with make_client(_FETCH_TIMEOUT_S) as client:
                    response = client.get(self._url)
            response.raise_for_status()
            document = response.json()
        except (httpx.HTTPError, ValueError) as exc:
            raise FalSignatureError(f"no keys: could not fetch JWKS from {self._url}: {exc}") from exc
        keys = _parse_jwks(document)
        if not keys:
            raise FalSignatureError(f"no keys: JWKS at {self._url} holds no Ed25519 key")
        return keys

    def _age(self, now: float) -> float:
        """Seconds since the cached keys were fetched (infinite when nothing is cached)."""
        return float("inf") if self._fetched_at is None else now - self._fetched_at

    def keys(self) -> list[Ed25519PublicKey]:
        """The cached public keys, fetched anew when the cache is empty or older than the TTL."""
        with self._lock:
            now = time.monotonic()
            if self._age(now) >= self._ttl_s:
                self._keys = self._fetch()
                self._fetched_at = now
            return list(self._keys)

    def refresh(self, *, min_age_s: float = _REFETCH_MIN_AGE_S) -> bool:
        """Refetch the keys if the cache is older than ``min_age_s``; True when a refetch happened."""
        with self._lock:
            now = time.monotonic()
            if self._age(now) <= min_age_s:
                return False
            self._keys = self._fetch()
            self._fetched_at = now
            return True


def signed_message(request_id: str, user_id: str, timestamp: str, body: bytes) -> bytes:
    """The exact bytes fal signs for one webhook delivery."""
    return f"{request_id}\n{user_id}\n{timestamp}\n{hashlib.sha256(body).hexdigest()}".encode()


def _matches_any(keys: list[Ed25519PublicKey], signature: bytes, message: bytes) -> bool:
    """Whether any key verifies the signature over the message."""
    for key in keys:
        try:
            key.verify(signature, message)
        except InvalidSignature:
            continue
        return True
    return False


def verify_fal_webhook(
    headers: Mapping[str, str],
    body: bytes,
    jwks: FalJwks,
    *,
    now: float | None = None,
    tolerance_s: int = 300,
) -> None:
    """Verify a fal webhook delivery (headers, raw body); raise FalSignatureError unless it is genuine."""
    lowered = {name.lower(): value for name, value in headers.items()}
    missing = [name for name in _REQUIRED_HEADERS if not lowered.get(name)]
    if missing:
        raise FalSignatureError(f"missing header(s): {', '.join(missing)}")
    request_id = lowered[HEADER_REQUEST_ID]
    user_id = lowered[HEADER_USER_ID]
    timestamp = lowered[HEADER_TIMESTAMP]

    if not (timestamp.isascii() and timestamp.isdigit()):
        raise FalSignatureError(f"invalid timestamp: {timestamp!r} is not Unix seconds")
    sent_at = int(timestamp)
    current = time.time() if now is None else now
    if abs(current - sent_at) > tolerance_s:
        raise FalSignatureError(
            f"stale timestamp: {sent_at} is {current - sent_at:+.0f} s from now (tolerance {tolerance_s} s)"
        )

    try:
        signature = bytes.fromhex(lowered[HEADER_SIGNATURE].strip())
    except ValueError as exc:
        raise FalSignatureError("bad signature: not a hex string") from exc
    if len(signature) != _SIGNATURE_BYTES:
        raise FalSignatureError(f"bad signature: {len(signature)} bytes, expected {_SIGNATURE_BYTES}")

    message = signed_message(request_id, user_id, timestamp, body)
    if _matches_any(jwks.keys(), signature, message):
        return
    try:
        refreshed = jwks.refresh()
    except FalSignatureError as exc:
        raise FalSignatureError(
            f"bad signature: no cached key verifies it, and refetching failed ({exc})"
        ) from exc
    if refreshed and _matches_any(jwks.keys(), signature, message):
        return
    raise FalSignatureError("bad signature: no published key verifies it")
