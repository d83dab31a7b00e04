"""POST /functions/v1/generate-video: validate, one procedure call (debit + job + idempotency record), submit."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from shared import jobs
from shared.models import GenerateVideoRequest, GenerateVideoResponse
from shared.web import CurrentUser, IdempotencyKey, lambda_handler

router = APIRouter()


@router.post(
    "/functions/v1/generate-video",
    status_code=202,
    response_model=GenerateVideoResponse,
    tags=["videos"],
    responses={402: {}, 404: {}, 409: {}, 422: {}},
)
def generate_video(body: GenerateVideoRequest, user: CurrentUser, key: IdempotencyKey) -> JSONResponse:
    """Start a video job, charged once per Idempotency-Key; a replay returns the first response."""
    outcome = jobs.start_generation(user, key, body.model_dump(mode="json", exclude_unset=True), body)
    headers = {"Idempotent-Replayed": "true"} if outcome.replayed else {}
    return JSONResponse(outcome.body, status_code=outcome.status, headers=headers)


handler = lambda_handler(router)
