"""Races with real concurrency: one key from many threads, many keys against one balance."""

from __future__ import annotations

import uuid
from concurrent.futures import ThreadPoolExecutor

import httpx

from shared.db import Database
from tests.conftest import Caller


def _post_many(
    caller: Caller, bodies_and_keys: list[tuple[dict[str, object], str]], workers: int
) -> list[httpx.Response]:
    def post(item: tuple[dict[str, object], str]) -> httpx.Response:
        body, key = item
        with httpx.Client(
            base_url=str(caller.http.base_url), headers=dict(caller.http.headers), timeout=60
        ) as c:
            return c.post("/functions/v1/generate-video", json=body, headers={"Idempotency-Key": key})

    with ThreadPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(post, bodies_and_keys))


def _generation_rows(db: Database, user: uuid.UUID) -> int:
    entries = db.call("get_credits", user=user, signup_credits=0, limit=500)["entries"]
    return sum(1 for e in entries if e["kind"] == "generation")


def test_fifty_parallel_requests_with_one_key_make_one_job(caller: Caller, db: Database) -> None:
    """50 parallel requests with one Idempotency-Key create exactly one job and one debit."""
    caller.grant(100)
    body = {"model_id": "local-motion", "image_url": caller.upload(), "settings": {"duration": 1}}
    responses = _post_many(caller, [(body, "same-key")] * 50, workers=50)
    assert {r.status_code for r in responses} <= {202, 409}
    job_ids = {r.json()["job_id"] for r in responses if r.status_code == 202}
    assert len(job_ids) == 1
    assert _generation_rows(db, caller.id) == 1
    assert caller.balance() == 99


def test_parallel_distinct_keys_never_overdraw(caller: Caller, db: Database) -> None:
    """40 parallel requests against a balance for 10 succeed exactly 10 times; the rest get 402; balance 0."""
    caller.grant(10)
    url = caller.upload()
    items = [
        ({"model_id": "local-motion", "image_url": url, "settings": {"duration": 1}}, f"k-{i}")
        for i in range(40)
    ]
    responses = _post_many(caller, items, workers=40)
    codes = [r.status_code for r in responses]
    assert codes.count(202) == 10 and codes.count(402) == 30
    assert caller.balance() == 0
    assert db.call_rows("ledger_mismatches") == []
