"""POST /functions/v1/cancel-video {"job_id"}: stop one of the caller's unfinished jobs and refund it."""

from __future__ import annotations

from uuid import UUID

from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict

from shared import jobs
from shared.models import VideoStatus
from shared.web import CurrentUser, lambda_handler

router = APIRouter()


class CancelVideoRequest(BaseModel):
    """Body of POST cancel-video."""

    model_config = ConfigDict(extra="forbid")
    job_id: UUID


@router.post("/functions/v1/cancel-video", response_model=VideoStatus, tags=["videos"])
def cancel_video(body: CancelVideoRequest, user: CurrentUser) -> VideoStatus:
    """Cancel a pending or processing job (refunded); a finished job answers 409."""
    return jobs.cancel(user, body.job_id)


handler = lambda_handler(router)
