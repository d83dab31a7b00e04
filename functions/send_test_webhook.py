"""POST /functions/v1/send-test-webhook: send an endpoint a test event."""

from __future__ import annotations

from typing import Any

from shared.web import Call, Endpoint, lambda_handler


def send_test_webhook(call: Call) -> Any:
    """Send one of your endpoints a signed ``webhook.test`` event now, whatever events it takes (to check your
    receiver and its secret); the delivery is logged and retried like any other."""
    from shared.webhooks import endpoints

    return endpoints.send_test(call.user, call.data.endpoint_id)


endpoint = Endpoint(
    "POST",
    "/functions/v1/send-test-webhook",
    send_test_webhook,
    tags=("webhooks",),
    scope="webhooks",
    body="shared.team_schemas:SendTestWebhookRequest",
    response="shared.team_schemas:WebhookDelivery",
    status=202,
    errors=(403, 404, 409),
)
handler = lambda_handler(endpoint)
