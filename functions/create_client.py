"""POST /functions/v1/create-client: a new client."""

from __future__ import annotations

from typing import Any

from shared.web import Call, Endpoint, lambda_handler


def create_client(call: Call) -> Any:
    """Create a client (a customer whose campaigns you run)."""
    from shared.teams import campaigns

    return campaigns.create_client(call.user, call.data.name)


endpoint = Endpoint(
    "POST",
    "/functions/v1/create-client",
    create_client,
    tags=("campaigns",),
    scope="campaigns",
    body="shared.team_schemas:CreateClientRequest",
    response="shared.team_schemas:Client",
    status=201,
    errors=(403,),
)
handler = lambda_handler(endpoint)
