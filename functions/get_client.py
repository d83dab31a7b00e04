"""GET /functions/v1/get-client: one client with its spend and campaigns."""

from __future__ import annotations

from typing import Any

from shared.web import Call, Endpoint, Param, lambda_handler


def get_client(call: Call) -> Any:
    """One of your clients with its spend over all its campaigns (from the ledger) and its campaigns."""
    from shared.teams import campaigns

    return campaigns.get_client(call.user, call.args["client_id"])


endpoint = Endpoint(
    "GET",
    "/functions/v1/get-client",
    get_client,
    tags=("campaigns",),
    scope="read",
    params=(Param("client_id", "uuid", required=True),),
    response="shared.team_schemas:ClientDetail",
    errors=(403, 404),
)
handler = lambda_handler(endpoint)
