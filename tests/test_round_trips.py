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
