"""GET /functions/v1/get-webhook-secret: the secret of per-request webhook URLs."""

from __future__ import annotations

from typing import Any

from shared.web import Call, Endpoint, lambda_handler


def get_webhook_secret(call: Call) -> Any:
    """The whsec_ secret that signs events sent to the webhook_url of your generate requests."""
    from shared.webhooks import endpoints

    return endpoints.request_secret(call.user)


endpoint = Endpoint(
    "GET",
    "/functions/v1/get-webhook-secret",
    get_webhook_secret,
    tags=("webhooks",),
    scope="webhooks",
    response="shared.team_schemas:WebhookSecret",
    errors=(403,),
)
handler = lambda_handler(endpoint)
