"""POST /functions/v1/update-client: rename, archive or restore a client."""

from __future__ import annotations

from typing import Any

from shared.web import Call, Endpoint, lambda_handler


def update_client(call: Call) -> Any:
    """Rename, archive or restore one of your clients."""
    from shared.teams import campaigns

    return campaigns.update_client(call.user, call.data)


endpoint = Endpoint(
    "POST",
    "/functions/v1/update-client",
    update_client,
    tags=("campaigns",),
    scope="campaigns",
    body="shared.team_schemas:UpdateClientRequest",
    response="shared.team_schemas:Client",
    errors=(403, 404),
)
handler = lambda_handler(endpoint)
