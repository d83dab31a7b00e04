"""GET /functions/v1/list-campaigns: the caller's campaigns."""

from __future__ import annotations

from typing import Any

from shared.web import Call, Endpoint, Param, lambda_handler


def list_campaigns(call: Call) -> Any:
    """List your campaigns (of one client with client_id), newest first."""
    from shared.teams import campaigns

    return campaigns.list_campaigns(call.user, call.args["client_id"], call.args["archived"])


endpoint = Endpoint(
    "GET",
    "/functions/v1/list-campaigns",
    list_campaigns,
    tags=("campaigns",),
    scope="read",
    params=(
        Param("client_id", "uuid", description="only this client's campaigns"),
        Param("archived", "bool", description="only archived (true) or active (false) campaigns"),
    ),
    response="shared.team_schemas:CampaignList",
    errors=(403,),
)
handler = lambda_handler(endpoint)
