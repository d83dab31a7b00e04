"""Helpers of the team tests: API keys as HTTP clients, parallel generate requests, campaigns, webhooks."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx

from shared.db import Database
from tests.conftest import Caller

GENERATE = "/functions/v1/generate-video"


def new_key(caller: Caller, **body: Any) -> str:
    """Create an API key for ``caller`` through create-api-key; return the key."""
    resp = caller.http.post("/functions/v1/create-api-key", json={"name": "test key", **body})
    assert resp.status_code == 201, resp.text
    key: str = resp.json()["key"]
    return key


def key_client(caller: Caller, key: str, header: str = "bearer") -> httpx.Client:
    """An HTTP client to the stack authenticated only by ``key`` (Bearer or X-API-Key)."""
    headers = {"Authorization": f"Bearer {key}"} if header == "bearer" else {"X-API-Key": key}
    return httpx.Client(base_url=str(caller.http.base_url), headers=headers, timeout=60)


def generate(http: httpx.Client, body: Mapping[str, Any], key: str | None = None) -> httpx.Response:
    """POST generate-video with an Idempotency-Key (a fresh one unless given)."""
    return http.post(GENERATE, json=dict(body), headers={"Idempotency-Key": key or uuid.uuid4().hex})


def post_many(
    http: httpx.Client, body: Mapping[str, Any], count: int, keys: list[str] | None = None
) -> list[httpx.Response]:
    """``count`` generate-video requests at once, each from its own thread and connection."""
    keys = keys or [uuid.uuid4().hex for _ in range(count)]

    def post(key: str) -> httpx.Response:
        with httpx.Client(base_url=str(http.base_url), headers=dict(http.headers), timeout=60) as c:
            return generate(c, body, key)

    with ThreadPoolExecutor(max_workers=count) as pool:
        return list(pool.map(post, keys))


def campaign(caller: Caller, budget: int | None = None, name: str = "launch") -> dict[str, Any]:
    """A new client and a campaign of it (with ``budget`` credits, when given)."""
    client = caller.http.post("/functions/v1/create-client", json={"name": "Acme"}).json()
    body: dict[str, Any] = {"client_id": client["id"], "name": name}
    if budget is not None:
        body["budget_credits"] = budget
    resp = caller.http.post("/functions/v1/create-campaign", json=body)
    assert resp.status_code == 201, resp.text
    created: dict[str, Any] = resp.json()
    return created


def video_body(caller: Caller, **extra: Any) -> dict[str, Any]:
    """A 1-credit local-motion request on an uploaded image."""
    return {"model_id": "local-motion", "image_url": caller.upload(), "settings": {"duration": 1}, **extra}


def end_pending_deliveries(db: Database) -> None:
    """Set-up only: end every pending webhook delivery (earlier tests' included), so that none is due."""
    with db.transaction() as tx:
        tx.query("update webhook_deliveries set state = 'failed' where state = 'pending' returning id")
