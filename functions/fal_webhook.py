"""POST /functions/v1/fal-webhook: verify fal's Ed25519 signature over the raw body, apply the completion."""

from __future__ import annotations

from typing import Annotated
from uuid import UUID

from fastapi import APIRouter, BackgroundTasks, Query, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from shared import hosted, mirror
from shared.settings import get_settings
from shared.web import lambda_handler

router = APIRouter()


@router.post("/functions/v1/fal-webhook", tags=["webhooks"], responses={401: {}})
async def fal_webhook(
    request: Request, background: BackgroundTasks, job_id: Annotated[UUID | None, Query()] = None
) -> JSONResponse:
    """Record fal's verdict at once (well inside fal's 15 s), then copy the video after answering."""
    body = await request.body()
    outcome = await run_in_threadpool(hosted.handle_fal_webhook, dict(request.headers), body, job_id)
    if outcome.mirror is not None and get_settings().mirror_after_webhook:
        background.add_task(mirror.mirror_job, outcome.mirror)
    return JSONResponse({"received": True, "result": outcome.result})


handler = lambda_handler(router)
