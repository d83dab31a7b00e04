"""POST /functions/v1/delete-webhook-endpoint: stop sending to an endpoint."""

from __future__ import annotations

from typing import Any

from shared.web import Call, Endpoint, lambda_handler


def delete_webhook_endpoint(call: Call) -> Any:
    """Stop sending events to one of your endpoints (its pending deliveries end as failed)."""
    from shared.webhooks import endpoints

    return endpoints.delete_endpoint(call.user, call.data.endpoint_id)


endpoint = Endpoint(
    "POST",
    "/functions/v1/delete-webhook-endpoint",
    delete_webhook_endpoint,
    tags=("webhooks",),
    scope="webhooks",
    body="shared.team_schemas:DeleteWebhookEndpointRequest",
    response="shared.team_schemas:WebhookEndpoint",
    errors=(403, 404),
)
handler = lambda_handler(endpoint)
