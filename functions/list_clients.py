"""GET /functions/v1/list-clients: the caller's clients."""

from __future__ import annotations

from typing import Any

from shared.web import Call, Endpoint, Param, lambda_handler


def list_clients(call: Call) -> Any:
    """List your clients, newest first (archived=true|false to filter)."""
    from shared.teams import campaigns

    return campaigns.list_clients(call.user, call.args["archived"])


endpoint = Endpoint(
    "GET",
    "/functions/v1/list-clients",
    list_clients,
    tags=("campaigns",),
    scope="read",
    params=(Param("archived", "bool", description="only archived (true) or active (false) clients"),),
    response="shared.team_schemas:ClientList",
    errors=(403,),
)
handler = lambda_handler(endpoint)
