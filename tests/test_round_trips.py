"""Each request reports its database round trips in Server-Timing; the hot paths make one each."""

from __future__ import annotations

import re

import httpx

from tests.conftest import Caller


def _round_trips(resp: httpx.Response) -> int:
    match = re.search(r'desc="(\d+) round trips"', resp.headers["server-timing"])
    assert match, resp.headers["server-timing"]
    return int(match.group(1))


def test_generate_and_status_take_one_round_trip_each(caller: Caller) -> None:
    """generate-video (verified upload, local engine) and get-video-status each make one database round trip."""
    caller.grant(10)
    url = caller.upload()
    caller.generate(model_id="local-motion", image_url=url, settings={"duration": 1})  # first use verifies
    created = caller.generate(model_id="local-motion", image_url=url, settings={"duration": 1})
    assert created.status_code == 202
    assert _round_trips(created) == 1
    assert _round_trips(caller.status(created.json()["job_id"])) == 1


def test_replay_takes_one_round_trip(caller: Caller) -> None:
    """A replayed Idempotency-Key is answered from one procedure call too."""
    caller.grant(10)
    url = caller.upload()
    body = {"model_id": "local-motion", "image_url": url, "settings": {"duration": 1}}
    caller.generate("same", **body)
    assert _round_trips(caller.generate("same", **body)) == 1


def test_generate_with_key_budget_and_rate_limit_takes_one_round_trip(caller: Caller) -> None:
    """With an API key, a campaign budget and a rate limit all on, generate-video still makes one round trip
    (after the key's first use in this container): key check, limit, budget and debit ride in one call."""
    from tests.conftest import configured
    from tests.teams_support import campaign, generate, key_client, new_key, video_body

    caller.grant(10)
    camp = campaign(caller, budget=5)
    body = video_body(caller, campaign_id=camp["id"])
    generate(caller.http, body)  # the upload's first use verifies it
    with configured(RATE_LIMITS="generate-video=5/min"), key_client(caller, new_key(caller)) as http:
        http.get("/functions/v1/list-videos")  # the key's first use in this container looks it up
        created = generate(http, body)
    assert created.status_code == 202 and "ratelimit" in created.headers
    assert _round_trips(created) == 1
