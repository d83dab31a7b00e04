"""A user's webhook endpoints, the secret of per-request webhook URLs, the delivery log and redelivery."""

from __future__ import annotations

from datetime import datetime
from uuid import UUID

from shared import errors
from shared.auth import User
from shared.db import get_db
from shared.jobs.listing import decode_cursor, encode_cursor
from shared.limits import LIST_PAGE_LIMIT
from shared.settings import get_settings
from shared.team_schemas import (
    CreatedWebhookEndpoint,
    CreateWebhookEndpointRequest,
    WebhookDelivery,
    WebhookDeliveryList,
    WebhookEndpoint,
    WebhookEndpointList,
    WebhookSecret,
)
from shared.webhooks import signing
from shared.webhooks.destinations import check_destination

STATES = ["pending", "delivered", "failed"]


def create_endpoint(user: User, req: CreateWebhookEndpointRequest) -> CreatedWebhookEndpoint:
    """Register an endpoint for some job events; its ``whsec_`` secret is shown this once."""
    check_destination(req.url, "url")
    secret = signing.new_secret()
    record = get_db().call(
        "create_webhook_endpoint",
        user=user.id,
        url=req.url,
        events=sorted(set(req.events)),
        secret=secret,
        signup_credits=get_settings().signup_credits,
    )
    return CreatedWebhookEndpoint.model_validate({**record, "secret": secret})


def list_endpoints(user: User) -> WebhookEndpointList:
    """The user's endpoints, newest first (disabled ones marked)."""
    records = get_db().call("list_webhook_endpoints", user=user.id)
    return WebhookEndpointList(endpoints=[WebhookEndpoint.model_validate(r) for r in records])


def delete_endpoint(user: User, endpoint_id: UUID) -> WebhookEndpoint:
    """Stop sending to an endpoint (its pending deliveries end as failed)."""
    record = get_db().call("disable_webhook_endpoint", user=user.id, endpoint=endpoint_id, reason="deleted")
    return _endpoint_or_404(record, endpoint_id)


def enable_endpoint(user: User, endpoint_id: UUID) -> WebhookEndpoint:
    """Send to a disabled endpoint again from the next event on (deleted, gone or failing alike)."""
    record = get_db().call("enable_webhook_endpoint", user=user.id, endpoint=endpoint_id)
    return _endpoint_or_404(record, endpoint_id)


def _endpoint_or_404(record: dict[str, object] | None, endpoint_id: UUID) -> WebhookEndpoint:
    if record is None:
        raise _no_endpoint(endpoint_id)
    return WebhookEndpoint.model_validate(record)


def _no_endpoint(endpoint_id: UUID) -> errors.WebhookNotFound:
    return errors.WebhookNotFound(f"No webhook endpoint {endpoint_id} for this user.", field="endpoint_id")


def request_secret(user: User) -> WebhookSecret:
    """The secret signing deliveries to the ``webhook_url`` of the user's generate requests (made on first use)."""
    secret: str = get_db().call(
        "ensure_webhook_secret",
        user=user.id,
        secret=signing.new_secret(),
        signup_credits=get_settings().signup_credits,
    )
    return WebhookSecret(secret=secret)


def list_deliveries(
    user: User, job_id: UUID | None, state: str | None, limit: int, cursor: str | None
) -> WebhookDeliveryList:
    """One page of the user's deliveries with their attempts, newest first."""
    if state is not None and state not in STATES:
        raise errors.InvalidField("state", f"Unknown state {state!r}.", allowed=STATES)
    if not 1 <= limit <= LIST_PAGE_LIMIT:
        raise errors.InvalidField("limit", f"limit must be between 1 and {LIST_PAGE_LIMIT}.")
    after: tuple[datetime | None, UUID | None] = decode_cursor(cursor) if cursor else (None, None)
    page = get_db().call(
        "list_webhook_deliveries",
        user=user.id,
        job=job_id,
        state=state,
        limit=limit,
        cursor_created=after[0],
        cursor_id=after[1],
    )
    nxt = page.get("next")
    return WebhookDeliveryList(
        deliveries=[WebhookDelivery.model_validate(r) for r in page["deliveries"]],
        next_cursor=encode_cursor(datetime.fromisoformat(nxt["created_at"]), UUID(nxt["id"]))
        if nxt
        else None,
    )


def redeliver(user: User, delivery_id: UUID) -> WebhookDelivery:
    """Send a delivery again at the next run of the sender (delivered and failed ones too)."""
    record = get_db().call("redeliver_webhook", user=user.id, delivery=delivery_id)
    if record is None:
        raise errors.WebhookNotFound(f"No webhook delivery {delivery_id} for this user.", field="delivery_id")
    return WebhookDelivery.model_validate(record)


def send_test(user: User, endpoint_id: UUID) -> WebhookDelivery:
    """Queue a ``webhook.test`` event for one of the user's enabled endpoints (to check its receiver and secret)."""
    queued = get_db().call("queue_test_webhook", user=user.id, endpoint=endpoint_id)
    if queued is None:
        raise _no_endpoint(endpoint_id)
    if queued.get("refused"):
        raise errors.EndpointDisabled(
            "The endpoint is disabled: enable it (enable-webhook-endpoint) to send it a test event.",
            field="endpoint_id",
        )
    return WebhookDelivery.model_validate(queued["delivery"])
