"""GET /functions/v1/status: the caller's job counts by status."""

from __future__ import annotations

from typing import Any

from shared.web import Call, Endpoint, lambda_handler


def status(call: Call) -> Any:
    """Count the caller's jobs by status."""
    from shared.jobs import listing

    return listing.job_counts(call.user)


endpoint = Endpoint(
    "GET", "/functions/v1/status", status, tags=("videos",), response="shared.schemas:JobCounts"
)
handler = lambda_handler(endpoint)
