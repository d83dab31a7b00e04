"""GET /functions/v1/list-webhook-endpoints: the caller's webhook endpoints."""

from __future__ import annotations

from typing import Any

from shared.web import Call, Endpoint, lambda_handler


def list_webhook_endpoints(call: Call) -> Any:
    """List your webhook endpoints, newest first (secrets are shown by their prefix only)."""
    from shared.webhooks import endpoints

    return endpoints.list_endpoints(call.user)


endpoint = Endpoint(
    "GET",
    "/functions/v1/list-webhook-endpoints",
    list_webhook_endpoints,
    tags=("webhooks",),
    scope="webhooks",
    response="shared.team_schemas:WebhookEndpointList",
    errors=(403,),
)
handler = lambda_handler(endpoint)
