"""POST /functions/v1/update-campaign: rename, re-budget, archive or restore a campaign."""

from __future__ import annotations

from typing import Any

from shared.web import Call, Endpoint, lambda_handler


def update_campaign(call: Call) -> Any:
    """Rename, re-budget (budget_credits null removes the budget), archive or restore one of your campaigns."""
    from shared.teams import campaigns

    return campaigns.update_campaign(call.user, call.data)


endpoint = Endpoint(
    "POST",
    "/functions/v1/update-campaign",
    update_campaign,
    tags=("campaigns",),
    scope="campaigns",
    body="shared.team_schemas:UpdateCampaignRequest",
    response="shared.team_schemas:Campaign",
    errors=(403, 404),
)
handler = lambda_handler(endpoint)
