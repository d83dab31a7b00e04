"""POST /functions/v1/cancel-video {"job_id"}: stop one of the caller's unfinished jobs and refund it."""

from __future__ import annotations

from typing import Any

from shared.web import Call, Endpoint, lambda_handler


def cancel_video(call: Call) -> Any:
    """Cancel a pending or processing job (refunded); a finished job answers 409."""
    from shared.jobs import service as jobs

    return jobs.cancel(call.user, call.data.job_id)


endpoint = Endpoint(
    "POST",
    "/functions/v1/cancel-video",
    cancel_video,
    tags=("videos",),
    scope="generate",
    body="shared.schemas:CancelVideoRequest",
    response="shared.schemas:VideoStatus",
    errors=(404, 409),
)
handler = lambda_handler(endpoint)
