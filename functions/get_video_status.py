"""GET /functions/v1/get-video-status?job_id=UUID: one of the caller's jobs."""

from __future__ import annotations

from uuid import UUID

from fastapi import APIRouter

from shared import jobs
from shared.models import VideoStatus
from shared.web import CurrentUser, lambda_handler

router = APIRouter()


@router.get("/functions/v1/get-video-status", response_model=VideoStatus, tags=["videos"])
def get_video_status(job_id: UUID, user: CurrentUser) -> VideoStatus:
    """Return the status of one of the caller's jobs (404 for anyone else's)."""
    return jobs.status(user, job_id)


handler = lambda_handler(router)
