"""GET /functions/v1/get-video-status?job_id=UUID: one of the caller's jobs."""

from __future__ import annotations

from typing import Any

from shared.web import Call, Endpoint, Param, lambda_handler


def get_video_status(call: Call) -> Any:
    """Return the status of one of the caller's jobs (404 for anyone else's)."""
    from shared.jobs import service as jobs

    return jobs.status(call.user, call.args["job_id"])


endpoint = Endpoint(
    "GET",
    "/functions/v1/get-video-status",
    get_video_status,
    tags=("videos",),
    params=(Param("job_id", "uuid", required=True),),
    response="shared.schemas:VideoStatus",
    errors=(404,),
)
handler = lambda_handler(endpoint)
