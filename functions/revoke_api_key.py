"""POST /functions/v1/revoke-api-key: revoke one of the caller's API keys."""

from __future__ import annotations

from typing import Any

from shared.web import Call, Endpoint, lambda_handler


def revoke_api_key(call: Call) -> Any:
    """Revoke one of your API keys: billed requests refuse it at once, every other request within seconds."""
    from shared.teams import keys

    return keys.revoke(call.user, call.data.key_id)


endpoint = Endpoint(
    "POST",
    "/functions/v1/revoke-api-key",
    revoke_api_key,
    tags=("keys",),
    scope="keys",
    body="shared.team_schemas:RevokeApiKeyRequest",
    response="shared.team_schemas:ApiKey",
    errors=(403, 404),
)
handler = lambda_handler(endpoint)
