"""Clients and campaigns: jobs record them, budgets are checked in the debit's own call, spend equals the ledger."""

from __future__ import annotations

import contextlib
import uuid

from shared import errors
from shared.db import Database
from tests.conftest import Caller
from tests.teams_support import campaign, generate, post_many, video_body


def _ledger_net(db: Database, column: str, value: str) -> tuple[int, int]:
    with db.transaction() as tx:
        rows = tx.query(
            f"select coalesce(sum(-l.delta) filter (where l.kind = 'generation'), 0),"  # noqa: S608 (column fixed)
            f" coalesce(sum(l.delta) filter (where l.kind = 'refund'), 0)"
            f" from credit_ledger l join video_jobs j on j.id = l.job_id where j.{column} = %s",
            (value,),
        )
    return int(rows[0][0]), int(rows[0][1])


def test_a_job_records_its_campaign_and_client_and_lists_by_them(caller: Caller) -> None:
    """A job started with campaign_id shows its campaign and client, and list-videos filters by either."""
    caller.grant(5)
    camp = campaign(caller)
    body = video_body(caller)
    in_campaign = generate(caller.http, {**body, "campaign_id": camp["id"]}).json()["job_id"]
    generate(caller.http, body)  # outside any campaign
    status = caller.status(in_campaign).json()
    assert status["campaign_id"] == camp["id"] and status["client_id"] == camp["client_id"]
    for name in ("campaign_id", "client_id"):
        value = camp["id"] if name == "campaign_id" else camp["client_id"]
        page = caller.http.get("/functions/v1/list-videos", params={name: value}).json()
        assert [v["job_id"] for v in page["videos"]] == [in_campaign]


def test_campaign_lists_page_newest_first(caller: Caller) -> None:
    """list-videos?campaign_id= pages the campaign's jobs newest first with a keyset cursor."""
    caller.grant(5)
    camp = campaign(caller)
    body = {**video_body(caller), "campaign_id": camp["id"]}
    made = [generate(caller.http, body).json()["job_id"] for _ in range(3)]
    first = caller.http.get(
        "/functions/v1/list-videos", params={"campaign_id": camp["id"], "limit": 2}
    ).json()
    rest = caller.http.get(
        "/functions/v1/list-videos", params={"campaign_id": camp["id"], "cursor": first["next_cursor"]}
    ).json()
    assert [v["job_id"] for v in first["videos"] + rest["videos"]] == made[::-1]
    assert rest["next_cursor"] is None


def test_another_users_campaign_is_not_found(caller: Caller, other: Caller) -> None:
    """Naming someone else's campaign (or none at all) answers 404 and charges nothing."""
    caller.grant(5)
    theirs = campaign(other)
    for campaign_id in (theirs["id"], str(uuid.uuid4())):
        resp = generate(caller.http, video_body(caller, campaign_id=campaign_id))
        assert resp.status_code == 404 and resp.json()["error"]["code"] == "campaign_not_found"
    assert (
        other.http.get("/functions/v1/get-campaign", params={"campaign_id": theirs["id"]}).status_code == 200
    )
    assert (
        caller.http.get("/functions/v1/get-campaign", params={"campaign_id": theirs["id"]}).status_code == 404
    )
    assert caller.balance() == 5


def test_an_archived_campaign_refuses_new_jobs(caller: Caller) -> None:
    """After update-campaign archived=true, generate-video answers 409; restored, it takes jobs again."""
    caller.grant(5)
    camp = campaign(caller)
    body = video_body(caller, campaign_id=camp["id"])
    update = {"campaign_id": camp["id"], "archived": True}
    assert caller.http.post("/functions/v1/update-campaign", json=update).json()["archived"] is True
    refused = generate(caller.http, body)
    assert refused.status_code == 409 and refused.json()["error"]["code"] == "archived"
    caller.http.post("/functions/v1/update-campaign", json={**update, "archived": False})
    assert generate(caller.http, body).status_code == 202
    assert caller.balance() == 4


def test_fifty_concurrent_requests_against_a_budget_for_three_make_three_jobs(
    caller: Caller, db: Database
) -> None:
    """50 parallel requests in a campaign whose budget fits 3 create exactly 3 jobs; the others get 402
    campaign_budget_exceeded naming the remaining budget, and only 3 credits leave the balance."""
    caller.grant(100)
    camp = campaign(caller, budget=3)
    responses = post_many(caller.http, video_body(caller, campaign_id=camp["id"]), 50)
    codes = [r.status_code for r in responses]
    assert codes.count(202) == 3 and codes.count(402) == 47, codes
    refusal = next(r.json()["error"] for r in responses if r.status_code == 402)
    assert refusal["code"] == "campaign_budget_exceeded" and refusal["details"]["remaining"] == 0
    assert caller.balance() == 97
    got = caller.http.get("/functions/v1/get-campaign", params={"campaign_id": camp["id"]}).json()
    assert got["credits_spent"] == 3 and got["budget_remaining"] == 0
    assert db.call_rows("campaign_spend_mismatches") == []


def test_a_refund_returns_budget(caller: Caller) -> None:
    """Canceling a job of a campaign at its budget gives the credits back to the budget: the next job fits."""
    caller.grant(10)
    camp = campaign(caller, budget=1)
    body = video_body(caller, campaign_id=camp["id"])
    job = generate(caller.http, body).json()["job_id"]
    assert generate(caller.http, body).status_code == 402
    canceled = caller.http.post("/functions/v1/cancel-video", json={"job_id": job})
    if canceled.status_code == 200 and canceled.json()["status"] == "canceled":
        assert generate(caller.http, body).status_code == 202
    else:  # the engine finished it first: the budget stays spent
        assert generate(caller.http, body).status_code == 402


def test_spend_equals_the_ledger(caller: Caller, db: Database) -> None:
    """get-campaign and get-client report the credits spent and refunded that the ledger holds, by status and
    by model, and the raised budget lets more jobs in."""
    caller.grant(10)
    camp = campaign(caller, budget=2)
    body = video_body(caller, campaign_id=camp["id"])
    jobs = [generate(caller.http, body).json()["job_id"] for _ in range(2)]
    with contextlib.suppress(errors.InvalidTransition):  # the local engine may have finished it: no refund
        db.call("fail_job", job=uuid.UUID(jobs[0]), error="test failure", kind="provider")
    raised = caller.http.post(
        "/functions/v1/update-campaign", json={"campaign_id": camp["id"], "budget_credits": 9}
    )
    assert raised.json()["budget_credits"] == 9
    assert generate(caller.http, body).status_code == 202
    spend = caller.http.get("/functions/v1/get-campaign", params={"campaign_id": camp["id"]}).json()["spend"]
    spent, refunded = _ledger_net(db, "campaign_id", camp["id"])
    assert (spend["credits_spent"], spend["credits_refunded"]) == (spent, refunded) and spent == 3
    assert spend["credits_net"] == spent - refunded and sum(spend["jobs"].values()) == 3
    assert spend["models"]["local-motion"]["credits_net"] == spent - refunded
    client = caller.http.get("/functions/v1/get-client", params={"client_id": camp["client_id"]}).json()
    assert client["spend"] == spend and [c["id"] for c in client["campaigns"]] == [camp["id"]]
    assert db.call_rows("campaign_spend_mismatches") == []


def test_clients_and_campaigns_are_listed_renamed_and_archived(caller: Caller) -> None:
    """list-clients and list-campaigns show the caller's own, newest first, filtered by client and archived."""
    first = campaign(caller, name="spring")
    second = caller.http.post(
        "/functions/v1/create-campaign", json={"client_id": first["client_id"], "name": "summer"}
    ).json()
    listed = caller.http.get("/functions/v1/list-campaigns", params={"client_id": first["client_id"]}).json()
    assert [c["name"] for c in listed["campaigns"]] == ["summer", "spring"]
    renamed = caller.http.post(
        "/functions/v1/update-client",
        json={"client_id": first["client_id"], "name": "Acme Inc", "archived": True},
    ).json()
    assert renamed["name"] == "Acme Inc" and renamed["archived"] is True
    archived = caller.http.get("/functions/v1/list-clients", params={"archived": "true"}).json()["clients"]
    assert [c["id"] for c in archived] == [first["client_id"]]
    late = caller.http.post(
        "/functions/v1/create-campaign", json={"client_id": first["client_id"], "name": "x"}
    )
    assert late.status_code == 409
    assert second["budget_credits"] is None


def test_a_quote_shows_what_the_campaign_budget_leaves(caller: Caller, other: Caller) -> None:
    """quote with campaign_id shows the budget left and after the request (negative when it does not fit, as
    generating would then refuse); another user's campaign is 404 and an archived one 409, as generating answers."""
    caller.grant(10)
    camp = campaign(caller, budget=2)
    body = {**video_body(caller, campaign_id=camp["id"]), "settings": {"duration": 3}}
    quoted = caller.http.post("/functions/v1/quote", json=body).json()
    assert quoted["credits"] == 3 and quoted["campaign_budget_remaining"] == 2
    assert quoted["campaign_budget_after"] == -1
    assert generate(caller.http, body).json()["error"]["code"] == "campaign_budget_exceeded"
    fits = caller.http.post("/functions/v1/quote", json={**body, "settings": {"duration": 2}}).json()
    assert fits["campaign_budget_after"] == 0
    unlimited = campaign(caller)
    free = caller.http.post("/functions/v1/quote", json={**body, "campaign_id": unlimited["id"]}).json()
    assert free["campaign_budget_remaining"] is None and free["campaign_budget_after"] is None
    assert (
        caller.http.post("/functions/v1/quote", json={**body, "campaign_id": None}).json()[
            "campaign_budget_after"
        ]
        is None
    )
    theirs = other.http.post("/functions/v1/quote", json={**body, "image_url": other.upload()})
    assert theirs.status_code == 404 and theirs.json()["error"]["details"]["field"] == "campaign_id"
    caller.http.post("/functions/v1/update-campaign", json={"campaign_id": camp["id"], "archived": True})
    assert caller.http.post("/functions/v1/quote", json=body).status_code == 409
    assert caller.balance() == 10


def test_a_budget_beyond_a_trillion_credits_is_refused_in_words(caller: Caller) -> None:
    """A budget larger than the database can hold (or than anyone needs) is a 400 naming budget_credits on create
    and on update, never a database error."""
    camp = campaign(caller)
    huge = 10**20
    created = caller.http.post(
        "/functions/v1/create-campaign",
        json={"client_id": camp["client_id"], "name": "x", "budget_credits": huge},
    )
    updated = caller.http.post(
        "/functions/v1/update-campaign", json={"campaign_id": camp["id"], "budget_credits": huge}
    )
    for resp in (created, updated):
        assert resp.status_code == 400 and resp.json()["error"]["details"]["field"] == "budget_credits", (
            resp.text
        )
    top = caller.http.post(
        "/functions/v1/update-campaign", json={"campaign_id": camp["id"], "budget_credits": 10**12}
    )
    assert top.status_code == 200 and top.json()["budget_remaining"] == 10**12


def test_names_are_trimmed_and_a_blank_one_is_refused(caller: Caller) -> None:
    """Client, campaign and API key names lose surrounding spaces; one of spaces only is a 400 naming the field;
    an unknown key to revoke is a 404 naming key_id."""
    blank = caller.http.post("/functions/v1/create-client", json={"name": "   "})
    assert blank.status_code == 400 and blank.json()["error"]["details"]["field"] == "name"
    client = caller.http.post("/functions/v1/create-client", json={"name": "  Acme  "}).json()
    assert client["name"] == "Acme"
    camp = caller.http.post(
        "/functions/v1/create-campaign", json={"client_id": client["id"], "name": "\tSpring\n"}
    ).json()
    assert camp["name"] == "Spring"
    renamed = caller.http.post("/functions/v1/update-campaign", json={"campaign_id": camp["id"], "name": " "})
    assert renamed.status_code == 400 and renamed.json()["error"]["details"]["field"] == "name"
    key = caller.http.post("/functions/v1/create-api-key", json={"name": " "})
    assert key.status_code == 400 and key.json()["error"]["details"]["field"] == "name"
    unknown = caller.http.post("/functions/v1/revoke-api-key", json={"key_id": str(uuid.uuid4())})
    assert unknown.status_code == 404 and unknown.json()["error"]["details"]["field"] == "key_id"
