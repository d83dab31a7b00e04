"""GET /functions/v1/list-jobs?kind=&status=&limit=&cursor=: the caller's jobs (videos and images), newest first."""

from __future__ import annotations

from typing import Any

from shared.limits import LIST_PAGE_LIMIT
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
        Param("status", description="pending|processing|completed|failed|canceled"),
        Param(
            "limit",
            "int",
            default=50,
            minimum=1,
            maximum=LIST_PAGE_LIMIT,
            description=f"jobs per page, 1-{LIST_PAGE_LIMIT}",
        ),
        Param("cursor", description="next_cursor of the previous page"),
        Param("campaign_id", "uuid", description="only the jobs of this campaign of yours"),
        Param("client_id", "uuid", description="only the jobs of this client of yours (all its campaigns)"),
    ),
    response="shared.schemas:JobList",
)
handler = lambda_handler(endpoint)
