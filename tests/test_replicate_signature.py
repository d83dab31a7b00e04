"""Our Standard Webhooks verifier agrees with the reference's test vector and with the standardwebhooks package."""

from __future__ import annotations

import base64
import os
from datetime import UTC, datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from standardwebhooks import Webhook, WebhookVerificationError

from shared.providers.replicate.signature import SignatureError, sign, verify

SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
MSG_ID = "msg_p5jXN8AQM9LWM0D4loKWxJek"
TIMESTAMP = 1614265330
BODY = b'{"test": 2432232314}'
SIGNATURE = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="


def headers(signature: str, msg_id: str = MSG_ID, timestamp: int = TIMESTAMP) -> dict[str, str]:
    """The three Standard Webhooks headers."""
    return {"webhook-id": msg_id, "webhook-timestamp": str(timestamp), "webhook-signature": signature}


def test_the_reference_vector_verifies() -> None:
    """The reference's vector signs to the published value and verifies at its own time."""
    assert sign(SECRET, MSG_ID, TIMESTAMP, BODY) == SIGNATURE
    assert verify(SECRET, headers(SIGNATURE), BODY, now=TIMESTAMP) == MSG_ID
    assert verify(SECRET, headers(f"v1,bm90IGl0 {SIGNATURE}"), BODY, now=TIMESTAMP) == MSG_ID  # rotation


@pytest.mark.parametrize(
    ("changed", "now"),
    [
        ({"webhook-signature": "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE"}, TIMESTAMP),  # padding cut
        ({"webhook-signature": "v2," + SIGNATURE[3:]}, TIMESTAMP),  # unknown version
        ({"webhook-id": "msg_other"}, TIMESTAMP),
        ({"webhook-timestamp": str(TIMESTAMP + 1)}, TIMESTAMP),
        ({"webhook-timestamp": "１６１４２６５３３０"}, TIMESTAMP),  # non-ASCII digits
        ({}, TIMESTAMP + 301),  # too old
        ({}, TIMESTAMP - 301),  # too new
        ({"webhook-signature": ""}, TIMESTAMP),
    ],
)
def test_a_changed_delivery_is_refused(changed: dict[str, str], now: int) -> None:
    """Any change of id, timestamp or signature, or a time outside ±5 minutes, is refused."""
    with pytest.raises(SignatureError):
        verify(SECRET, {**headers(SIGNATURE), **changed}, BODY, now=now)


@settings(max_examples=200, deadline=None)
@given(
    text=st.text(max_size=200),
    skew=st.integers(min_value=-400, max_value=400).filter(lambda s: abs(abs(s) - 300) > 2),
    flip=st.booleans(),
)
def test_agrees_with_the_standardwebhooks_package(text: str, skew: int, flip: bool) -> None:
    """For random bodies, clock skews and tampering, our verifier and the package accept exactly the same."""
    secret = "whsec_" + base64.b64encode(os.urandom(24)).decode()
    stamp = datetime.fromtimestamp(int(datetime.now(UTC).timestamp()) + skew, tz=UTC)
    signature = Webhook(secret).sign(MSG_ID, stamp, text)
    sent = text + "x" if flip else text
    hdrs = headers(signature, timestamp=int(stamp.timestamp()))
    try:
        Webhook(secret).verify(sent, hdrs, json_parse=False)
        theirs = True
    except WebhookVerificationError:
        theirs = False
    try:
        verify(secret, hdrs, sent.encode())
        ours = True
    except SignatureError:
        ours = False
    assert ours == theirs == (not flip and abs(skew) < 300)
