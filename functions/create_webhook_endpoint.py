"""POST /functions/v1/create-webhook-endpoint: register an endpoint for job events."""

from __future__ import annotations

from typing import Any

from shared.web import Call, Endpoint, lambda_handler


def create_webhook_endpoint(call: Call) -> Any:
    """Register an https endpoint for job events, signed per Standard Webhooks; its whsec_ secret is in this answer only."""
    from shared.webhooks import endpoints

    return endpoints.create_endpoint(call.user, call.data)


endpoint = Endpoint(
    "POST",
    "/functions/v1/create-webhook-endpoint",
    create_webhook_endpoint,
    tags=("webhooks",),
    scope="webhooks",
    body="shared.team_schemas:CreateWebhookEndpointRequest",
    response="shared.team_schemas:CreatedWebhookEndpoint",
    status=201,
    errors=(403,),
)
handler = lambda_handler(endpoint)
