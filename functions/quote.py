"""POST /functions/v1/quote: the generate-video body priced and validated, with the balance after; no charge."""

from __future__ import annotations

from fastapi import APIRouter

from shared import quotes
from shared.models import GenerateVideoRequest, Quote
from shared.web import CurrentUser, lambda_handler

router = APIRouter()


@router.post("/functions/v1/quote", response_model=Quote, tags=["videos"], responses={400: {}, 404: {}})
def quote(body: GenerateVideoRequest, user: CurrentUser) -> Quote:
    """Return what generate-video would charge for this body and the balance after it; nothing is charged."""
    return quotes.quote(user, body)


handler = lambda_handler(router)
