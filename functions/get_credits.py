"""GET /functions/v1/get-credits: the caller's balance and recent ledger entries."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from shared import credits
from shared.models import Credits
from shared.web import CurrentUser, lambda_handler

router = APIRouter()


@router.get("/functions/v1/get-credits", response_model=Credits, tags=["credits"])
def get_credits(user: CurrentUser, limit: Annotated[int, Query(ge=1, le=200)] = 50) -> Credits:
    """Return the balance and the newest ledger entries."""
    return credits.summary(user, limit)


handler = lambda_handler(router)
