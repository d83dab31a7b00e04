"""Rate limits kept in Postgres: exactly N of many concurrent requests pass, the rest get 429 with headers."""

from __future__ import annotations

import re
import uuid

import pytest

from shared.db import Database
from shared.ratelimit import Limit, parse_limits
from tests.conftest import Caller, configured
from tests.teams_support import generate, key_client, new_key, post_many, video_body


def test_rate_limits_setting_is_parsed() -> None:
    """RATE_LIMITS takes NAME=N/s|/min|/h and off, per endpoint or for all; anything else is refused."""
    assert parse_limits("generate-video=5/min, generate-image=10/h") == {
        "generate-video": Limit("generate-video", 5, 60),
        "generate-image": Limit("generate-image", 10, 3600),
    }
    assert parse_limits("generate-video=off") == {"generate-video": None}
    assert parse_limits("off") == {}
    for bad in ("generate-video=5", "generate-video=5/day", "generate-video=0/min", "=5/min"):
        with pytest.raises(ValueError, match="RATE_LIMITS"):
            parse_limits(bad)


def test_concurrent_requests_past_the_limit_get_429_and_no_charge(caller: Caller, db: Database) -> None:
    """12 parallel requests under 4/min: exactly 4 are accepted, 8 get 429 with Retry-After and the IETF
    RateLimit and RateLimit-Policy headers, and only 4 credits are debited."""
    caller.grant(20)
    body = video_body(caller)
    with configured(RATE_LIMITS="generate-video=4/min"):
        responses = post_many(caller.http, body, 12)
    codes = [r.status_code for r in responses]
    assert codes.count(202) == 4 and codes.count(429) == 8, codes
    limited = next(r for r in responses if r.status_code == 429)
    assert limited.json()["error"]["code"] == "rate_limited"
    assert 1 <= int(limited.headers["retry-after"]) <= 60
    assert limited.headers["ratelimit-policy"] == '"generate-video";q=4;w=60'
    assert re.fullmatch(r'"generate-video";r=0;t=\d+', limited.headers["ratelimit"])
    accepted = [r for r in responses if r.status_code == 202]
    assert {r.headers["ratelimit-policy"] for r in accepted} == {'"generate-video";q=4;w=60'}
    assert caller.balance() == 16
    assert db.call_rows("ledger_mismatches") == []


def test_a_limited_request_leaves_its_idempotency_key_unused(caller: Caller) -> None:
    """A 429 stores nothing under its Idempotency-Key: the same key and body are accepted once the limit allows."""
    caller.grant(5)
    body = video_body(caller)
    with configured(RATE_LIMITS="generate-video=1/h"):
        assert generate(caller.http, body).status_code == 202
        assert generate(caller.http, body, "later").status_code == 429
    with configured(RATE_LIMITS="off"):
        retried = generate(caller.http, body, "later")
    assert retried.status_code == 202 and "idempotent-replayed" not in retried.headers
    assert caller.balance() == 3


def test_replays_are_not_rate_limited(caller: Caller) -> None:
    """With the limit used up, a replay of an accepted request still answers its stored 202."""
    caller.grant(5)
    body = video_body(caller)
    with configured(RATE_LIMITS="generate-video=1/h"):
        first = generate(caller.http, body, "first")
        assert generate(caller.http, body).status_code == 429
        replay = generate(caller.http, body, "first")
    assert replay.status_code == 202 and replay.headers["idempotent-replayed"] == "true"
    assert replay.json() == first.json()


def test_each_api_key_has_its_own_limit(caller: Caller) -> None:
    """Requests with an API key count against that key's limit, not against the owner's other callers."""
    caller.grant(10)
    body = video_body(caller)
    key = new_key(caller)
    with configured(RATE_LIMITS="generate-video=1/h"), key_client(caller, key) as http:
        assert generate(caller.http, body).status_code == 202
        assert generate(http, body).status_code == 202
        assert generate(http, body).status_code == 429
        assert generate(caller.http, body).status_code == 429


def test_an_accepted_request_says_what_is_left(caller: Caller) -> None:
    """The 202 of a limited endpoint carries RateLimit with the requests left in the window."""
    caller.grant(5)
    body = video_body(caller)
    with configured(RATE_LIMITS=f"generate-video=3/min,other-{uuid.uuid4().hex[:6]}=off"):
        first = generate(caller.http, body)
        second = generate(caller.http, body)
    assert re.fullmatch(r'"generate-video";r=2;t=60', first.headers["ratelimit"])
    assert re.fullmatch(r'"generate-video";r=1;t=\d+', second.headers["ratelimit"])
