"""POST /functions/v1/create-checkout-session {"pack_id"}: a Stripe Checkout page for one credit pack."""

from __future__ import annotations

from shared.web import Call, Endpoint, Reply, lambda_handler


def create_checkout_session(call: Call) -> Reply:
    """Start a purchase; the same Idempotency-Key and body return the same session (no second purchase)."""
    from shared.billing import checkout as billing

    outcome = billing.create_checkout(call.user, call.data.pack_id, call.idempotency_key)
    headers = {"Idempotent-Replayed": "true"} if outcome.replayed else {}
    return Reply(outcome.session, headers=headers)


endpoint = Endpoint(
    "POST",
    "/functions/v1/create-checkout-session",
    create_checkout_session,
    tags=("billing",),
    scope="billing",
    idempotency_key="optional",
    body="shared.billing.checkout:CheckoutRequest",
    response="shared.billing.checkout:CheckoutSession",
    errors=(404, 409, 422, 502, 503),
)
handler = lambda_handler(endpoint)
