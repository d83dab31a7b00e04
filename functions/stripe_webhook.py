"""POST /functions/v1/stripe-webhook: verify Stripe's signature over the raw body, apply the event once."""

from __future__ import annotations

from fastapi import APIRouter, Request
from starlette.concurrency import run_in_threadpool

from shared import billing
from shared.billing import WebhookAck
from shared.web import lambda_handler

router = APIRouter()


@router.post(
    "/functions/v1/stripe-webhook", response_model=WebhookAck, tags=["webhooks"], responses={400: {}, 503: {}}
)
async def stripe_webhook(request: Request) -> WebhookAck:
    """Answer 2xx once the event is applied (or is a duplicate, or a type we ignore); 400 on a bad signature."""
    body = await request.body()
    signature = request.headers.get("stripe-signature")
    return await run_in_threadpool(billing.handle_webhook, body, signature)


handler = lambda_handler(router)
