"""The operator overview: 403 for everyone but operators, the deployment's figures for them; the ledger check."""

from __future__ import annotations

import uuid

import httpx
from typer.testing import CliRunner

from client.cli import app
from functions import operator_overview
from shared import metrics, operations
from shared.auth import mint_dev_token
from shared.db import Database
from tests.conftest import Caller, configured, debit_job
from tests.lambda_support import LambdaContext, http_event, json_body


def test_a_normal_user_is_refused(caller: Caller) -> None:
    """A signed-in user who is no operator gets 403 forbidden, saying who may read it."""
    answer = caller.http.get("/functions/v1/operator-overview")
    assert answer.status_code == 403
    error = answer.json()["error"]
    assert error["code"] == "forbidden" and "OPERATOR_USER_IDS" in error["message"]


def test_an_operator_gets_the_figures(caller: Caller, other: Caller, db: Database) -> None:
    """A user named in OPERATOR_USER_IDS reads the jobs by model and provider, the unfinished jobs oldest first,
    both ledger checks at 0 and this server's own metrics."""
    other.grant(6)
    first = debit_job(db, other.id, cost=3)
    second = debit_job(db, other.id, cost=3)
    with configured(OPERATOR_USER_IDS=f"{uuid.uuid4()}, {caller.id}"):
        answer = caller.http.get("/functions/v1/operator-overview", params={"hours": 1, "stuck": 100})
    assert answer.status_code == 200, answer.text
    data = answer.json()
    assert data["window_hours"] == 1
    assert data["ledger_mismatches"] == 0 and data["purchase_mismatches"] == 0
    row = next(r for r in data["jobs"] if r["model"] == "local-motion" and r["provider"] == "test")
    assert row["started"] >= 2 and row["active"] >= 2
    stuck = [j["job_id"] for j in data["stuck"]]
    assert stuck.index(str(first)) < stuck.index(str(second))  # oldest first
    job = next(j for j in data["stuck"] if j["job_id"] == str(first))
    assert job["user_id"] == str(other.id) and job["status"] == "pending" and job["age_s"] >= 0
    names = {m["metric"] for m in data["instance_metrics"]}
    assert {"jobs_started", "ledger_mismatches"} <= names
    hooks = data["outgoing_webhooks"]
    assert set(hooks) == {"delivered", "failed", "pending", "endpoints_failing", "endpoints_disabled"}


def test_the_operator_sees_customers_webhooks(caller: Caller, other: Caller, db: Database) -> None:
    """The overview counts the window's deliveries by outcome, those waiting, and endpoints failing now or
    disabled in the window by reason."""
    with configured(OPERATOR_USER_IDS=str(caller.id)):
        before = caller.http.get("/functions/v1/operator-overview", params={"hours": 1}).json()[
            "outgoing_webhooks"
        ]
    with configured(ALLOW_PRIVATE_WEBHOOK_URLS="true"):  # never sent here: nothing delivers in this test
        endpoint = other.http.post(
            "/functions/v1/create-webhook-endpoint",
            json={"url": "http://127.0.0.1:9/hooks", "events": ["job.canceled"]},
        ).json()
    other.grant(3)
    job = debit_job(db, other.id, cost=1)
    db.call("cancel_job", user=other.id, job=job)  # one delivery queued, waiting
    with db.transaction() as tx:  # its endpoint failing for a while (as the sender records it)
        tx.query("update webhook_endpoints set failing_since = now() where id = %s", (endpoint["id"],))
    with configured(OPERATOR_USER_IDS=str(caller.id)):
        failing = caller.http.get("/functions/v1/operator-overview", params={"hours": 1}).json()[
            "outgoing_webhooks"
        ]
    assert failing["pending"] == before["pending"] + 1
    assert failing["endpoints_failing"] == before["endpoints_failing"] + 1
    other.http.post("/functions/v1/delete-webhook-endpoint", json={"endpoint_id": endpoint["id"]})
    with configured(OPERATOR_USER_IDS=str(caller.id)):
        after = caller.http.get("/functions/v1/operator-overview", params={"hours": 1}).json()[
            "outgoing_webhooks"
        ]
    assert after["failed"] == before["failed"] + 1 and after["pending"] == before["pending"]
    assert after["endpoints_failing"] == before["endpoints_failing"]
    assert after["endpoints_disabled"].get("deleted", 0) == before["endpoints_disabled"].get("deleted", 0) + 1


def test_the_operator_role_in_app_metadata_is_an_operator(stack: str) -> None:
    """A token whose app_metadata.roles holds "operator" reads the overview without being listed."""
    token = mint_dev_token(uuid.uuid4(), roles=("operator",))
    answer = httpx.get(
        f"{stack}/functions/v1/operator-overview", headers={"Authorization": f"Bearer {token}"}, timeout=30
    )
    assert answer.status_code == 200 and answer.json()["ledger_mismatches"] == 0


def test_dev_token_mints_an_operator_on_request(stack: str) -> None:
    """`i2v dev-token --operator` prints a token that reads the overview; without the flag it is refused."""
    answers = []
    for flags in (["--operator"], []):
        result = CliRunner().invoke(app, ["dev-token", "--user", str(uuid.uuid4()), *flags])
        assert result.exit_code == 0, result.output
        token = result.stdout.strip().splitlines()[-1]
        answer = httpx.get(
            f"{stack}/functions/v1/operator-overview",
            headers={"Authorization": f"Bearer {token}"},
            timeout=30,
        )
        answers.append(answer.status_code)
    assert answers == [200, 403]


def test_the_lambda_handler_answers_operators_only(caller: Caller) -> None:
    """The operator-overview Lambda handler answers 403 to a user, 200 with the figures to an operator."""
    event = http_event(
        "GET",
        "/functions/v1/operator-overview",
        query={"hours": "24"},
        headers={"authorization": f"Bearer {caller.token}"},
    )
    assert operator_overview.handler(event, LambdaContext())["statusCode"] == 403
    with configured(OPERATOR_USER_IDS=str(caller.id)):
        response = operator_overview.handler(event, LambdaContext())
    assert response["statusCode"] == 200 and json_body(response)["window_hours"] == 24


def test_the_ledger_check_sets_its_gauge(db: Database) -> None:
    """The scheduled ledger check finds no account in disagreement and sets ledger_mismatches to 0 for both
    checks; a second check within LEDGER_CHECK_INTERVAL_S is skipped."""
    assert operations.check_ledger(force=True) == 0
    gauges = {s.labels: s.value for s in metrics.snapshot()["ledger_mismatches"]}
    assert gauges == {("ledger",): 0.0, ("purchases",): 0.0}
    assert operations.check_ledger() is None
