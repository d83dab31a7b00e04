"""POST /functions/v1/stripe-webhook: verify Stripe's signature over the raw body, apply the event once."""

from __future__ import annotations

from typing import Any

from shared.web import Call, Endpoint, lambda_handler


def stripe_webhook(call: Call) -> Any:
    """Answer 2xx once the event is applied (or is a duplicate, or a type we ignore); 400 on a bad signature."""
    from shared.billing import checkout as billing

    return billing.handle_webhook(call.raw_body, call.headers.get("stripe-signature"))


endpoint = Endpoint(
    "POST",
    "/functions/v1/stripe-webhook",
    stripe_webhook,
    tags=("webhooks",),
    auth=False,
    response="shared.billing.checkout:WebhookAck",
    errors=(400, 503),
    max_body=1024 * 1024,  # provider events: larger than API bodies, still bounded before verification
)
handler = lambda_handler(endpoint)
