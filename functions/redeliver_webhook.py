"""POST /functions/v1/redeliver-webhook: send a delivery again."""

from __future__ import annotations

from typing import Any

from shared.web import Call, Endpoint, lambda_handler


def redeliver_webhook(call: Call) -> Any:
    """Send one of your deliveries again (delivered or failed ones too), at the sender's next run."""
    from shared.webhooks import endpoints

    return endpoints.redeliver(call.user, call.data.delivery_id)


endpoint = Endpoint(
    "POST",
    "/functions/v1/redeliver-webhook",
    redeliver_webhook,
    tags=("webhooks",),
    scope="webhooks",
    body="shared.team_schemas:RedeliverWebhookRequest",
    response="shared.team_schemas:WebhookDelivery",
    errors=(403, 404),
)
handler = lambda_handler(endpoint)
