"""GET /functions/v1/health and /api/health: ok only when the database answers."""

from __future__ import annotations

from fastapi import APIRouter

from shared import errors
from shared.db import get_db
from shared.models import Health
from shared.web import lambda_handler

router = APIRouter()


@router.get("/functions/v1/health", response_model=Health, tags=["ops"])
@router.get("/api/health", response_model=Health, tags=["ops"], include_in_schema=False)
def health() -> Health:
    """Report ok when the database answers, 503 otherwise."""
    if not get_db().ping():
        raise errors.ServiceUnavailable("The database does not answer.")
    return Health(status="ok")


handler = lambda_handler(router)
