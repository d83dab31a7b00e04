"""GET /functions/v1/list-jobs?kind=&status=&limit=&cursor=: the caller's jobs (videos and images), newest first."""

from __future__ import annotations

from typing import Any

from functions.list_videos import endpoint as list_videos
from shared.web import Call, Endpoint, Param, lambda_handler


def list_jobs(call: Call) -> Any:
    """List the caller's jobs newest first, of one kind or both; follow ``next_cursor`` until it is null."""
    from shared.jobs import listing

    args = call.args
    return listing.list_jobs(
        call.user,
        args["kind"],
        args["status"],
        args["limit"],
        args["cursor"],
        campaign_id=args["campaign_id"],
        client_id=args["client_id"],
    )


endpoint = Endpoint(
    "GET",
    "/functions/v1/list-jobs",
    list_jobs,
    tags=("jobs",),
    params=(
        Param("kind", description="video|image (both when absent)"),
        *list_videos.params,  # status, limit, cursor, campaign_id, client_id: as list-videos
    ),
    response="shared.schemas:JobList",
)
handler = lambda_handler(endpoint)
