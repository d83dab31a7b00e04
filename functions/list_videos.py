"""GET /functions/v1/list-videos?status=&limit=&cursor=: the caller's jobs, newest first, one page at a time."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from shared import listing
from shared.models import VideoList
from shared.web import CurrentUser, lambda_handler

router = APIRouter()


@router.get("/functions/v1/list-videos", response_model=VideoList, tags=["videos"], responses={400: {}})
def list_videos(
    user: CurrentUser,
    status: Annotated[str | None, Query(description="pending|processing|completed|failed|canceled")] = None,
    limit: Annotated[int, Query(description="1-200")] = 50,
    cursor: Annotated[str | None, Query(description="next_cursor of the previous page")] = None,
) -> VideoList:
    """List the caller's jobs newest first; follow ``next_cursor`` until it is null."""
    return listing.list_videos(user, status or None, limit, cursor or None)


handler = lambda_handler(router)
