"""GET /functions/v1/status: the caller's job counts by status."""

from __future__ import annotations

from fastapi import APIRouter

from shared import listing
from shared.models import JobCounts
from shared.web import CurrentUser, lambda_handler

router = APIRouter()


@router.get("/functions/v1/status", response_model=JobCounts, tags=["videos"])
def status(user: CurrentUser) -> JobCounts:
    """Count the caller's jobs by status."""
    return listing.job_counts(user)


handler = lambda_handler(router)
