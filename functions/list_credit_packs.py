"""GET /functions/v1/list-credit-packs: the credit packs for sale and whether purchases are enabled."""

from __future__ import annotations

from fastapi import APIRouter

from shared import billing
from shared.billing import CreditPackList
from shared.web import lambda_handler

router = APIRouter()


@router.get("/functions/v1/list-credit-packs", response_model=CreditPackList, tags=["billing"])
def list_credit_packs() -> CreditPackList:
    """List the credit packs (id, credits, price in cents, currency), cheapest first."""
    return billing.pack_list()


handler = lambda_handler(router)
