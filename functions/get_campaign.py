"""GET /functions/v1/get-campaign: one campaign with its budget and spend."""

from __future__ import annotations

from typing import Any

from shared.web import Call, Endpoint, Param, lambda_handler


def get_campaign(call: Call) -> Any:
    """One of your campaigns with its budget and spend: credits spent and refunded, jobs by status, per model."""
    from shared.teams import campaigns

    return campaigns.get_campaign(call.user, call.args["campaign_id"])


endpoint = Endpoint(
    "GET",
    "/functions/v1/get-campaign",
    get_campaign,
    tags=("campaigns",),
    scope="read",
    params=(Param("campaign_id", "uuid", required=True),),
    response="shared.team_schemas:CampaignDetail",
    errors=(403, 404),
)
handler = lambda_handler(endpoint)
