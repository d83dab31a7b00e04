"""What the billed request path remembers or skips for speed changes no answer: a remembered token still
expires and still needs the current key, and the gated log scrubbing redacts exactly what scrubbing every
pattern over every line does."""

from __future__ import annotations

import time
import uuid

import jwt
from hypothesis import given, settings
from hypothesis import strategies as st

from shared import logs
from shared.auth import AUDIENCE, DEV_ISSUER
from shared.settings import get_settings
from tests.conftest import Caller, configured


def _token(user: uuid.UUID, exp: int) -> str:
    now = int(time.time())
    claims = {"iss": DEV_ISSUER, "sub": str(user), "aud": AUDIENCE, "exp": exp, "iat": now - 60}
    claims["role"] = "authenticated"
    return jwt.encode(claims, get_settings().jwt_secret(), algorithm="HS256")


def test_a_remembered_token_still_expires(caller: Caller) -> None:
    """A token accepted once is refused when it expires (the 30 s leeway included), though it was remembered."""
    token = _token(caller.id, exp=int(time.time()) - 28)  # within the leeway for about two more seconds
    headers = {"Authorization": f"Bearer {token}"}
    assert caller.http.get("/functions/v1/get-credits", headers=headers).status_code == 200
    time.sleep(3)
    refused = caller.http.get("/functions/v1/get-credits", headers=headers)
    assert refused.status_code == 401 and refused.json()["error"]["details"]["reason"] == "expired"


def test_a_remembered_token_needs_the_current_key(caller: Caller) -> None:
    """A token accepted under one signing secret is refused once the server's secret is another."""
    assert caller.http.get("/functions/v1/get-credits").status_code == 200
    with configured(SUPABASE_JWT_SECRET="another-secret-of-at-least-thirty-two-bytes"):
        refused = caller.http.get("/functions/v1/get-credits")
    assert refused.status_code == 401 and refused.json()["error"]["details"]["reason"] == "signature"
    assert caller.http.get("/functions/v1/get-credits").status_code == 200


def _scrub_everything(text: str) -> str:
    """The reference: every pattern applied to the whole text, in order, with no gate."""
    for pattern, replacement, _ in logs._SCRUB:
        text = pattern.sub(replacement, text)
    return text


_PIECES = [
    "Bearer abc.def",
    "BASİC xyz",
    "baſic q",
    "basıc z",
    "eyJhbGciOi.eyJzdWIi.sig",
    "sk_live_abc123",
    "rk_test_x",
    "whsec_abc/+=",
    "v1=" + "ab" * 10,
    "Key id-1:secret",
    "6099c61f-7a5f-4a20-b650-23571238ed0c:" + "f" * 20,
    "a" * 128,
    "x-AMZ-Signature=abc&x=1",
    "X-Amz-Credential=AKIA/2026",
    "https://h/p?sig=abc&token=def",
    "\u212aey a:b",
    '{"time": "2026-12-05T02:12:01.258Z", "job_id": "6099c61f-7a5f-4a20-b650-23571238ed0c"}',
]


@settings(max_examples=2000, deadline=None)
@given(
    st.lists(
        st.one_of(
            st.sampled_from(_PIECES),
            st.text(alphabet='abcdefiklmnorstvwxyzBEAKSIXMZ-_=:/?&." 0123456789\u0130\u0131\u017f\u212a'),
        ),
        max_size=6,
    )
)
def test_gated_scrubbing_redacts_what_full_scrubbing_does(parts: list[str]) -> None:
    """Log redaction with its cheap gates gives the same line as running every pattern over it."""
    text = "".join(parts)
    assert logs.redact(text) == _scrub_everything(text)
