"""POST /functions/v1/enable-webhook-endpoint: send to a disabled endpoint again."""

from __future__ import annotations

from typing import Any

from shared.web import Call, Endpoint, lambda_handler


def enable_webhook_endpoint(call: Call) -> Any:
    """Send events to one of your disabled endpoints again (deleted, answered 410 Gone, or failing for
    WEBHOOK_DISABLE_AFTER_S), from the next event on; deliveries that failed meanwhile can be sent again with
    redeliver-webhook."""
    from shared.webhooks import endpoints

    return endpoints.enable_endpoint(call.user, call.data.endpoint_id)


endpoint = Endpoint(
    "POST",
    "/functions/v1/enable-webhook-endpoint",
    enable_webhook_endpoint,
    tags=("webhooks",),
    scope="webhooks",
    body="shared.team_schemas:EnableWebhookEndpointRequest",
    response="shared.team_schemas:WebhookEndpoint",
    errors=(403, 404),
)
handler = lambda_handler(endpoint)
