"""``i2v keys`` and ``i2v webhooks`` against the stack: API keys and webhook endpoints from the command line."""

from __future__ import annotations

import json

import httpx
from standardwebhooks import Webhook
from typer.testing import CliRunner, Result

from client.cli import app
from shared.db import Database
from shared.webhooks import delivery
from tests.conftest import Caller, debit_job
from tests.teams_support import campaign, generate, video_body
from tests.test_cli import _json, i2v
from tests.webhook_support import receiving


def wide(caller: Caller, stack: str, *args: str) -> Result:
    """An ``i2v`` command printing its table on a 200-column terminal (each cell on one line)."""
    env = {"I2V_API_URL": stack, "I2V_TOKEN": caller.token, "COLUMNS": "200"}
    return CliRunner().invoke(app, list(args), env=env)


def test_a_key_is_printed_once_works_within_its_scopes_and_is_revoked(caller: Caller, stack: str) -> None:
    """``i2v keys create --scope read`` prints the key alone on stdout (the note on stderr); the API takes it to
    read and refuses it to generate; ``keys list`` shows it without the key; ``keys revoke`` ends it."""
    made = i2v(caller, stack, "keys", "create", "nightly export", "--scope", "read")
    assert made.exit_code == 0, made.output
    key = made.stdout.strip()
    assert key.startswith("i2v_sk_") and "store it now" in made.stderr
    auth = {"Authorization": f"Bearer {key}"}
    assert httpx.get(f"{stack}/functions/v1/list-jobs", headers=auth).status_code == 200
    refused = httpx.post(
        f"{stack}/functions/v1/generate-video", json={"model_id": "local-motion"}, headers=auth
    )
    assert refused.status_code == 403
    (listed,) = _json(i2v(caller, stack, "keys", "list", "--json"))["keys"]
    assert (
        listed["name"] == "nightly export" and listed["scopes"] == ["read"] and key not in json.dumps(listed)
    )
    table = wide(caller, stack, "keys", "list")
    assert table.exit_code == 0 and "nightly export" in table.output and key not in table.output
    revoked = _json(i2v(caller, stack, "keys", "revoke", listed["id"]))
    assert revoked["revoked_at"] is not None
    assert httpx.get(f"{stack}/functions/v1/list-jobs", headers=auth).status_code == 401


def test_an_unknown_scope_is_refused_with_the_allowed_ones(caller: Caller, stack: str) -> None:
    """A scope the API does not know exits 1 naming the field; no key is made."""
    refused = i2v(caller, stack, "keys", "create", "x", "--scope", "everything")
    assert refused.exit_code == 1 and "scopes" in refused.output, refused.output
    assert _json(i2v(caller, stack, "keys", "list", "--json"))["keys"] == []


def test_webhook_endpoints_from_the_command_line(caller: Caller, stack: str, db: Database) -> None:
    """``i2v webhooks add`` prints the secret that verifies deliveries; ``test`` queues a webhook.test event;
    ``deliveries`` shows one delivered,
    ``redeliver`` queues it again; ``disable`` and ``enable`` change the state ``list`` shows."""
    caller.grant(10)
    with receiving() as receiver:
        added = _json(i2v(caller, stack, "webhooks", "add", receiver.url, "--event", "job.canceled"))
        assert added["events"] == ["job.canceled"] and added["secret"].startswith("whsec_")
        job = debit_job(db, caller.id)
        db.call("cancel_job", user=caller.id, job=job)
        delivery.deliver_due()
        ((headers, body),) = receiver.received
        assert Webhook(added["secret"]).verify(body, headers)["data"]["job_id"] == str(job)
        tested = _json(i2v(caller, stack, "webhooks", "test", added["id"]))
        assert tested["event_type"] == "webhook.test" and tested["state"] == "pending"
        (sent,) = _json(i2v(caller, stack, "webhooks", "deliveries", "--job", str(job)))["deliveries"]
        assert sent["state"] == "delivered"
        assert _json(i2v(caller, stack, "webhooks", "redeliver", sent["id"]))["state"] == "pending"
        disabled = _json(i2v(caller, stack, "webhooks", "disable", added["id"]))
        assert disabled["disabled_reason"] == "deleted"
        assert "disabled (deleted)" in wide(caller, stack, "webhooks", "list").output
        assert _json(i2v(caller, stack, "webhooks", "enable", added["id"]))["disabled_at"] is None
        (listed,) = _json(i2v(caller, stack, "webhooks", "list", "--json"))["endpoints"]
        assert listed["id"] == added["id"] and listed["health"]["last_delivered_at"] is not None
        assert "active" in wide(caller, stack, "webhooks", "list").output


def test_jobs_of_one_campaign_or_client(caller: Caller, stack: str) -> None:
    """``i2v jobs --campaign ID`` and ``--client ID`` (with or without --all) list only that campaign's or client's
    jobs."""
    caller.grant(5)
    camp = campaign(caller)
    inside = generate(caller.http, video_body(caller, campaign_id=camp["id"])).json()["job_id"]
    generate(caller.http, video_body(caller))  # outside any campaign
    for args in (
        ("--campaign", camp["id"]),
        ("--client", camp["client_id"]),
        ("--campaign", camp["id"], "--all"),
    ):
        listed = _json(i2v(caller, stack, "jobs", *args, "--json"))["jobs"]
        assert [j["job_id"] for j in listed] == [inside], args
