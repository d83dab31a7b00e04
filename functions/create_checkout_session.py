"""POST /functions/v1/create-checkout-session {"pack_id"}: a Stripe Checkout page for one credit pack."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Header
from fastapi.responses import JSONResponse

from shared import billing
from shared.billing import CheckoutRequest, CheckoutSession
from shared.web import CurrentUser, idempotency_key, lambda_handler

router = APIRouter()


@router.post(
    "/functions/v1/create-checkout-session",
    response_model=CheckoutSession,
    tags=["billing"],
    responses={404: {}, 409: {}, 422: {}, 502: {}, 503: {}},
)
def create_checkout_session(
    body: CheckoutRequest,
    user: CurrentUser,
    key: Annotated[str | None, Header(alias="Idempotency-Key")] = None,
) -> JSONResponse:
    """Start a purchase; the same Idempotency-Key and body return the same session (no second purchase)."""
    outcome = billing.create_checkout(user, body.pack_id, idempotency_key(key) if key is not None else None)
    headers = {"Idempotent-Replayed": "true"} if outcome.replayed else {}
    return JSONResponse(outcome.session.model_dump(), headers=headers)


handler = lambda_handler(router)
