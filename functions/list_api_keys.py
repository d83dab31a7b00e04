"""GET /functions/v1/list-api-keys: the caller's API keys."""

from __future__ import annotations

from typing import Any

from shared.web import Call, Endpoint, lambda_handler


def list_api_keys(call: Call) -> Any:
    """List your API keys (prefix, name, scopes, created, last used, expires, revoked), newest first."""
    from shared.teams import keys

    return keys.list_keys(call.user)


endpoint = Endpoint(
    "GET",
    "/functions/v1/list-api-keys",
    list_api_keys,
    tags=("keys",),
    scope="keys",
    response="shared.team_schemas:ApiKeyList",
    errors=(403,),
)
handler = lambda_handler(endpoint)
