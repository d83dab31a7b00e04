"""Standard Webhooks signatures (v1, HMAC-SHA256): secrets, message ids and the three headers of a delivery."""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import time
import uuid

SECRET_PREFIX = "whsec_"  # noqa: S105 (the prefix every secret is shown with, not a secret)
_SECRET_BYTES = 32


def new_secret() -> str:
    """A new endpoint secret: ``whsec_`` + base64 of 32 random bytes."""
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(_SECRET_BYTES)).decode()


def message_id(delivery_id: uuid.UUID | str) -> str:
    """The ``webhook-id`` of a delivery: the same on every attempt (the consumer's idempotency key)."""
    return "msg_" + uuid.UUID(str(delivery_id)).hex


def signature(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    """``v1,<base64 HMAC-SHA256 of "{id}.{timestamp}.{body}">`` keyed with the decoded secret."""
    key = base64.b64decode(secret.removeprefix(SECRET_PREFIX))
    signed = f"{msg_id}.{timestamp}.".encode() + body
    return "v1," + base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()


def headers(secret: str, msg_id: str, body: bytes, now: float | None = None) -> dict[str, str]:
    """The headers of one attempt, signed at send time (each retry gets a fresh timestamp and signature)."""
    timestamp = int(time.time() if now is None else now)
    return {
        "content-type": "application/json",
        "webhook-id": msg_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": signature(secret, msg_id, timestamp, body),
    }
