"""Replicate's webhook signatures: the Standard Webhooks scheme (HMAC-SHA256 over ``id.timestamp.body``).

``tests/test_replicate_signature.py`` proves this verifier against the reference's test vector and against the
``standardwebhooks`` package (both accept and refuse the same deliveries).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import time
from collections.abc import Mapping

TOLERANCE_S = 5 * 60  # the Standard Webhooks libraries' window, both ways


class SignatureError(Exception):
    """The delivery is not signed by the secret, or is outside the time window."""


def secret_key(secret: str) -> bytes:
    """The HMAC key of a ``whsec_<base64>`` secret."""
    try:
        return base64.b64decode(secret.removeprefix("whsec_"), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise SignatureError("the webhook secret is not whsec_<base64>") from exc


def sign(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    """The ``webhook-signature`` entry (``v1,<base64>``) for one delivery."""
    mac = hmac.new(secret_key(secret), f"{msg_id}.{timestamp}.".encode() + body, hashlib.sha256).digest()
    return "v1," + base64.b64encode(mac).decode()


def verify(secret: str, headers: Mapping[str, str], body: bytes, *, now: float | None = None) -> str:
    """Check a delivery over its raw bytes; return its ``webhook-id`` (the same on every retry)."""
    lowered = {k.lower(): v for k, v in headers.items()}
    msg_id = lowered.get("webhook-id", "")
    stamp = lowered.get("webhook-timestamp", "")
    signatures = lowered.get("webhook-signature", "")
    if not msg_id or not stamp or not signatures:
        raise SignatureError("missing webhook-id, webhook-timestamp or webhook-signature")
    if not stamp.isascii() or not stamp.isdigit():
        raise SignatureError("webhook-timestamp is not Unix seconds")
    timestamp = int(stamp)
    current = time.time() if now is None else now
    if abs(current - timestamp) > TOLERANCE_S:
        raise SignatureError("webhook-timestamp is outside the 5 minute window")
    expected = sign(secret, msg_id, timestamp, body).encode()
    for entry in signatures.split():
        version, _, _value = entry.partition(",")
        if version == "v1" and hmac.compare_digest(entry.encode(), expected):
            return msg_id
    raise SignatureError("no signature matches the body")
