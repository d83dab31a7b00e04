"""POST /functions/v1/create-api-key: a new API key, shown once."""

from __future__ import annotations

from typing import Any

from shared.web import Call, Endpoint, lambda_handler


def create_api_key(call: Call) -> Any:
    """Create an API key acting as you within its scopes; the key is in this answer only."""
    from shared.teams import keys

    return keys.create(call.user, call.data)


endpoint = Endpoint(
    "POST",
    "/functions/v1/create-api-key",
    create_api_key,
    tags=("keys",),
    scope="keys",
    body="shared.team_schemas:CreateApiKeyRequest",
    response="shared.team_schemas:CreatedApiKey",
    status=201,
    errors=(403,),
)
handler = lambda_handler(endpoint)
