"""list-videos (keyset pagination), status (job counts) and quote (price without a charge)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from shared.db import Database
from shared.providers.catalog import find_model
from tests.conftest import Caller


def _insert_jobs(db: Database, user: uuid.UUID, rows: list[tuple[datetime, str]]) -> list[str]:
    """Set-up only: jobs with chosen created_at and status, written straight into the table."""
    model = find_model("local-motion")
    db.call("ensure_account", user=user, signup_credits=0)
    ids: list[str] = []
    with db.transaction() as tx:
        for created_at, status in rows:
            job = tx.query(
                "insert into video_jobs (user_id, model_id, model_slug, provider, status, prompt, credits_used,"
                " created_at) values (%s, %s, %s, 'local', %s, %s, 1, %s) returning id",
                (user, model.id, model.slug, status, f"prompt {len(ids)}", created_at),
            )
            ids.append(str(job[0][0]))
    return ids


def _expected_order(ids: list[str], rows: list[tuple[datetime, str]]) -> list[str]:
    return [i for i, _ in sorted(zip(ids, rows, strict=True), key=lambda p: (p[1][0], p[0]), reverse=True)]


def _all_pages(caller: Caller, **params: Any) -> tuple[list[str], int]:
    seen: list[str] = []
    pages = 0
    cursor: str | None = None
    while True:
        query = {**params, **({"cursor": cursor} if cursor else {})}
        resp = caller.http.get("/functions/v1/list-videos", params=query)
        assert resp.status_code == 200, resp.text
        body = resp.json()
        seen += [v["job_id"] for v in body["videos"]]
        pages += 1
        cursor = body["next_cursor"]
        if cursor is None:
            return seen, pages


def test_pages_cover_every_job_once_with_ties(caller: Caller, db: Database) -> None:
    """Paging by 3 through jobs that share created_at returns each job once, newest first, ties by id."""
    t0 = datetime(2025, 1, 1, tzinfo=UTC)
    rows = [(t0, "completed")] * 7 + [(t0 + timedelta(seconds=i), "pending") for i in range(1, 5)]
    ids = _insert_jobs(db, caller.id, rows)
    seen, pages = _all_pages(caller, limit=3)
    assert seen == _expected_order(ids, rows)
    assert pages == 4


def test_last_page_has_no_cursor(caller: Caller, db: Database) -> None:
    """A page that reaches the end (even exactly at the limit) has next_cursor null."""
    _insert_jobs(db, caller.id, [(datetime(2025, 1, 1, tzinfo=UTC), "pending")] * 2)
    body = caller.http.get("/functions/v1/list-videos", params={"limit": 2}).json()
    assert len(body["videos"]) == 2 and body["next_cursor"] is None


def test_default_page_is_fifty(caller: Caller, db: Database) -> None:
    """Without limit a page holds 50 jobs."""
    t0 = datetime(2025, 1, 1, tzinfo=UTC)
    _insert_jobs(db, caller.id, [(t0 + timedelta(milliseconds=i), "pending") for i in range(51)])
    body = caller.http.get("/functions/v1/list-videos").json()
    assert len(body["videos"]) == 50 and body["next_cursor"]


def test_status_filter(caller: Caller, db: Database) -> None:
    """?status= lists only jobs in that status, paging correctly."""
    t0 = datetime(2025, 1, 1, tzinfo=UTC)
    rows = [(t0 + timedelta(seconds=i % 3), ("failed", "completed")[i % 2]) for i in range(9)]
    ids = _insert_jobs(db, caller.id, rows)
    seen, _ = _all_pages(caller, status="failed", limit=2)
    failed = [(i, r) for i, r in zip(ids, rows, strict=True) if r[1] == "failed"]
    assert seen == _expected_order([i for i, _ in failed], [r for _, r in failed])


def test_items_carry_prompt_and_status(caller: Caller, db: Database) -> None:
    """Each listed job has its status, model, prompt and credits."""
    _insert_jobs(db, caller.id, [(datetime(2025, 1, 1, tzinfo=UTC), "processing")])
    video = caller.http.get("/functions/v1/list-videos").json()["videos"][0]
    assert (video["status"], video["model"], video["prompt"], video["credits_used"]) == (
        "processing",
        "local-motion",
        "prompt 0",
        1,
    )


def test_other_users_jobs_are_never_listed(caller: Caller, other: Caller, db: Database) -> None:
    """Jobs of another user appear in no page, whatever the cursor."""
    t0 = datetime(2025, 1, 1, tzinfo=UTC)
    mine = _insert_jobs(db, caller.id, [(t0, "pending")] * 3)
    _insert_jobs(db, other.id, [(t0, "pending")] * 3 + [(t0 + timedelta(seconds=1), "completed")])
    seen, _ = _all_pages(caller, limit=1)
    assert sorted(seen) == sorted(mine)


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"status": "done"}, "status"),
        ({"limit": 0}, "limit"),
        ({"limit": 201}, "limit"),
        ({"limit": "ten"}, "limit"),
        ({"cursor": "not-a-cursor"}, "cursor"),
        ({"cursor": "MTIzLm5vdC1hLXV1aWQ"}, "cursor"),
    ],
)
def test_bad_parameters_are_400_naming_the_field(caller: Caller, params: dict[str, Any], field: str) -> None:
    """A bad status, limit or cursor answers 400 with details.field naming it."""
    resp = caller.http.get("/functions/v1/list-videos", params=params)
    assert resp.status_code == 400, resp.text
    assert resp.json()["error"]["details"]["field"] == field


def test_bad_status_lists_allowed_values(caller: Caller) -> None:
    """The 400 for an unknown status lists the statuses there are."""
    details = caller.http.get("/functions/v1/list-videos", params={"status": "x"}).json()["error"]["details"]
    assert details["allowed"] == ["pending", "processing", "completed", "failed", "canceled"]


def test_status_counts_jobs_by_status(caller: Caller, other: Caller, db: Database) -> None:
    """GET status counts only the caller's jobs, with every status present."""
    t0 = datetime(2025, 1, 1, tzinfo=UTC)
    _insert_jobs(db, caller.id, [(t0, "completed")] * 3 + [(t0, "failed")])
    _insert_jobs(db, other.id, [(t0, "pending")] * 2)
    body = caller.http.get("/functions/v1/status").json()
    assert body == {
        "counts": {"pending": 0, "processing": 0, "completed": 3, "failed": 1, "canceled": 0},
        "total": 4,
    }


def _body(caller: Caller, **settings: Any) -> dict[str, Any]:
    return {
        "model_id": "local-motion",
        "prompt": "zoom in",
        "image_url": caller.upload(),
        "settings": {"resolution": "480p", "aspect_ratio": "16:9", "duration": 2, **settings},
    }


def test_quote_charges_nothing_and_matches_the_charge(caller: Caller) -> None:
    """A quote reports the price and balance after without charging; generate-video then charges that price."""
    caller.grant(10)
    body = _body(caller)
    quote = caller.http.post("/functions/v1/quote", json=body)
    assert quote.status_code == 200, quote.text
    q = quote.json()
    assert q["model"] == "local-motion" and q["balance"] == 10
    assert q["balance_after"] == 10 - q["credits"] and q["credits"] > 0
    assert q["settings"] == {"resolution": "480p", "aspect_ratio": "16:9", "duration": 2}
    assert caller.balance() == 10
    created = caller.generate(**body)
    assert created.status_code == 202, created.text
    assert created.json()["credits_used"] == q["credits"]
    assert caller.balance() == q["balance_after"]


def test_quote_shows_a_shortfall_without_refusing(caller: Caller) -> None:
    """With too few credits the quote still answers, with a negative balance_after."""
    q = caller.http.post("/functions/v1/quote", json=_body(caller, duration=3)).json()
    assert (q["credits"], q["balance"], q["balance_after"]) == (3, 0, -3)


def test_quote_rejects_invalid_settings_with_allowed_values(caller: Caller) -> None:
    """An unsupported setting answers 400 naming the field and listing the allowed values."""
    resp = caller.http.post("/functions/v1/quote", json=_body(caller, resolution="4k"))
    assert resp.status_code == 400
    details = resp.json()["error"]["details"]
    assert details["field"] == "settings.resolution" and "480p" in details["allowed"]


def test_quote_needs_no_idempotency_key_and_refuses_unknown_fields(caller: Caller) -> None:
    """The quote body is generate-video's: unknown fields are refused with 400."""
    resp = caller.http.post("/functions/v1/quote", json={**_body(caller), "colour": "red"})
    assert resp.status_code == 400 and resp.json()["error"]["details"]["field"] == "colour"
