"""POST /functions/v1/create-campaign: a new campaign of a client, with an optional budget."""

from __future__ import annotations

from typing import Any

from shared.web import Call, Endpoint, lambda_handler


def create_campaign(call: Call) -> Any:
    """Create a campaign of one of your clients, optionally with a credit budget."""
    from shared.teams import campaigns

    return campaigns.create_campaign(call.user, call.data)


endpoint = Endpoint(
    "POST",
    "/functions/v1/create-campaign",
    create_campaign,
    tags=("campaigns",),
    scope="campaigns",
    body="shared.team_schemas:CreateCampaignRequest",
    response="shared.team_schemas:Campaign",
    status=201,
    errors=(403, 404, 409),
)
handler = lambda_handler(endpoint)
