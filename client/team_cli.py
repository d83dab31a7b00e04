"""``i2v keys`` and ``i2v webhooks``: API keys for scripts and servers, and the endpoints that receive job events
(Standard Webhooks), through the HTTP API as the caller."""

from __future__ import annotations

from typing import Annotated, Any

import typer
from rich.table import Table

from client import render
from client.cli_common import DEFAULT_API_URL, ApiUrl, AsJson, Token, api_session, console, out

keys_app = typer.Typer(help="API keys: create (shown once), list, revoke.", no_args_is_help=True)
webhooks_app = typer.Typer(
    help="Webhook endpoints: add (secret shown once), list with health, test, disable, enable; the delivery log.",
    no_args_is_help=True,
)

SCOPES = ("generate", "read", "billing", "campaigns", "webhooks", "keys")
EVENTS = ("job.processing", "job.completed", "job.failed", "job.canceled")


def _post_one(api_url: str, token: str | None, function: str, **body: str) -> None:
    """POST one id to a team endpoint and print the record it answers as JSON."""
    with api_session(api_url, token) as api:
        render.print_json(api.team_call("POST", function, json=body))


def _key_state(key: dict[str, Any]) -> str:
    if key.get("revoked_at"):
        return "revoked"
    return "active" if not key.get("expires_at") else f"until {key['expires_at']}"


@keys_app.command("create")
def keys_create(
    name: Annotated[str, typer.Argument(help="What uses the key (to tell keys apart).")],
    scope: Annotated[
        list[str] | None,
        typer.Option(
            help=f"What it may do (repeatable): {', '.join(SCOPES)}. Default: all but billing and keys."
        ),
    ] = None,
    expires_at: Annotated[
        str | None, typer.Option(help="When it stops working (ISO 8601, e.g. 2027-01-01T00:00:00Z).")
    ] = None,
    api_url: ApiUrl = DEFAULT_API_URL,
    token: Token = None,
    as_json: AsJson = False,
) -> None:
    """Create an API key and print it: it is shown this once."""
    body: dict[str, Any] = {"name": name}
    if scope:
        body["scopes"] = scope
    if expires_at:
        body["expires_at"] = expires_at
    with api_session(api_url, token) as api:
        created = api.team_call("POST", "create-api-key", json=body)
    if as_json:
        render.print_json(created)
        return
    console.print(
        f"key {created['id']} ({', '.join(created['scopes'])}): store it now, it is not shown again",
        highlight=False,
        soft_wrap=True,
    )
    typer.echo(created["key"])


@keys_app.command("list")
def keys_list(api_url: ApiUrl = DEFAULT_API_URL, token: Token = None, as_json: AsJson = False) -> None:
    """Your API keys, newest first (never the keys themselves)."""
    with api_session(api_url, token) as api:
        keys = api.team_call("GET", "list-api-keys")
    if as_json:
        render.print_json(keys)
        return
    items = keys["keys"]
    table = Table(title="i2v API keys (newest first)")
    render.add_typed_column(table, "id", (k["id"] for k in items))
    table.add_column("name", overflow="fold", min_width=8)
    for column in ("prefix", "scopes", "last used", "state"):
        table.add_column(column, overflow="fold")
    for k in items:
        table.add_row(
            k["id"],
            k["name"],
            k["prefix"],
            ", ".join(k["scopes"]),
            k.get("last_used_at") or "never",
            _key_state(k),
        )
    out.print(table, crop=False)


@keys_app.command("revoke")
def keys_revoke(
    key_id: Annotated[str, typer.Argument(help="The key's id (i2v keys list).")],
    api_url: ApiUrl = DEFAULT_API_URL,
    token: Token = None,
) -> None:
    """Revoke an API key: requests with it are refused from now on (prints the key's record as JSON)."""
    _post_one(api_url, token, "revoke-api-key", key_id=key_id)


@webhooks_app.command("add")
def webhooks_add(
    url: Annotated[str, typer.Argument(help="https URL on a public address.")],
    event: Annotated[
        list[str] | None,
        typer.Option(help=f"Events to send (repeatable): {', '.join(EVENTS)}. Default: all."),
    ] = None,
    api_url: ApiUrl = DEFAULT_API_URL,
    token: Token = None,
) -> None:
    """Add an endpoint; prints it as JSON with its whsec_ signing secret, shown this once."""
    body = {"url": url, "events": event or list(EVENTS)}
    with api_session(api_url, token) as api:
        render.print_json(api.team_call("POST", "create-webhook-endpoint", json=body))
    console.print("store the secret now: it is not shown again", highlight=False)


def _endpoint_state(e: dict[str, Any]) -> str:
    if e.get("disabled_at"):
        return f"disabled ({e.get('disabled_reason') or 'deleted'})"
    return f"failing since {e['failing_since']}" if e.get("failing_since") else "active"


@webhooks_app.command("list")
def webhooks_list(api_url: ApiUrl = DEFAULT_API_URL, token: Token = None, as_json: AsJson = False) -> None:
    """Your endpoints with their health: pending, failed in 24 h, the error standing, why one was disabled."""
    with api_session(api_url, token) as api:
        endpoints = api.team_call("GET", "list-webhook-endpoints")
    if as_json:
        render.print_json(endpoints)
        return
    items = endpoints["endpoints"]
    table = Table(title="i2v webhook endpoints (newest first)")
    render.add_typed_column(table, "id", (e["id"] for e in items))
    for column in ("url", "events", "state", "pending", "failed 24 h", "last error"):
        table.add_column(column, overflow="fold")
    for e in items:
        health, error = e["health"], e["health"].get("last_error") or {}
        table.add_row(
            e["id"],
            e["url"],
            ", ".join(e["events"]),
            _endpoint_state(e),
            str(health["pending"]),
            str(health["failed_last_24h"]),
            (f"HTTP {error['status']}" if error.get("status") else error.get("error") or "") if error else "",
        )
    out.print(table, crop=False)


@webhooks_app.command("disable")
def webhooks_disable(
    endpoint_id: Annotated[str, typer.Argument(help="The endpoint's id (i2v webhooks list).")],
    api_url: ApiUrl = DEFAULT_API_URL,
    token: Token = None,
) -> None:
    """Stop sending to an endpoint (its pending deliveries end failed); prints it as JSON."""
    _post_one(api_url, token, "delete-webhook-endpoint", endpoint_id=endpoint_id)


@webhooks_app.command("enable")
def webhooks_enable(
    endpoint_id: Annotated[str, typer.Argument(help="The endpoint's id (i2v webhooks list).")],
    api_url: ApiUrl = DEFAULT_API_URL,
    token: Token = None,
) -> None:
    """Send to a disabled endpoint again, from the next event on; prints it as JSON."""
    _post_one(api_url, token, "enable-webhook-endpoint", endpoint_id=endpoint_id)


@webhooks_app.command("test")
def webhooks_test(
    endpoint_id: Annotated[str, typer.Argument(help="The endpoint's id (i2v webhooks list).")],
    api_url: ApiUrl = DEFAULT_API_URL,
    token: Token = None,
) -> None:
    """Send an endpoint a signed webhook.test event now (to check the receiver and its secret); prints the
    delivery as JSON (i2v webhooks deliveries shows how it went)."""
    _post_one(api_url, token, "send-test-webhook", endpoint_id=endpoint_id)


@webhooks_app.command("deliveries")
def webhooks_deliveries(
    job: Annotated[str | None, typer.Option(help="Only this job's deliveries.")] = None,
    state: Annotated[str | None, typer.Option(help="pending, delivered or failed.")] = None,
    limit: Annotated[int, typer.Option(help="How many, newest first.", min=1, max=200)] = 20,
    api_url: ApiUrl = DEFAULT_API_URL,
    token: Token = None,
) -> None:
    """The delivery log with every attempt (JSON), newest first."""
    params = {k: v for k, v in {"job_id": job, "state": state, "limit": limit}.items() if v is not None}
    with api_session(api_url, token) as api:
        render.print_json(api.team_call("GET", "list-webhook-deliveries", params=params))


@webhooks_app.command("redeliver")
def webhooks_redeliver(
    delivery_id: Annotated[str, typer.Argument(help="The delivery's id (i2v webhooks deliveries).")],
    api_url: ApiUrl = DEFAULT_API_URL,
    token: Token = None,
) -> None:
    """Send a delivery again (delivered or failed ones too); prints it as JSON."""
    _post_one(api_url, token, "redeliver-webhook", delivery_id=delivery_id)
