"""GET /functions/v1/get-credits: the caller's balance and recent ledger entries."""

from __future__ import annotations

from typing import Any

from shared.limits import LIST_PAGE_LIMIT
from shared.web import Call, Endpoint, Param, lambda_handler


def get_credits(call: Call) -> Any:
    """Return the balance and the newest ledger entries."""
    from shared.billing import ledger as credits

    return credits.summary(call.user, call.args["limit"])


endpoint = Endpoint(
    "GET",
    "/functions/v1/get-credits",
    get_credits,
    tags=("credits",),
    params=(
        Param(
            "limit",
            "int",
            default=50,
            minimum=1,
            maximum=LIST_PAGE_LIMIT,
            description=f"ledger entries, 1-{LIST_PAGE_LIMIT}",
        ),
    ),
    response="shared.schemas:Credits",
)
handler = lambda_handler(endpoint)
