"""API keys of a user: create (the key is shown once), list, revoke."""

from __future__ import annotations

from datetime import UTC, datetime
from uuid import UUID

from shared import api_keys, errors
from shared.auth import DEFAULT_SCOPES, User
from shared.db import get_db
from shared.settings import get_settings
from shared.team_schemas import ApiKey, ApiKeyList, CreateApiKeyRequest, CreatedApiKey


def create(user: User, req: CreateApiKeyRequest) -> CreatedApiKey:
    """A new key acting as ``user`` within its scopes; a key may not hand out scopes it does not have."""
    scopes = sorted(set(req.scopes or DEFAULT_SCOPES))
    beyond = [s for s in scopes if not user.allows(s)]
    if beyond:
        raise errors.InsufficientScope(
            f"An API key cannot create a key with scopes it does not have: {', '.join(beyond)}.",
            scope=beyond[0],
        )
    expires_at = req.expires_at
    if expires_at is not None:
        expires_at = expires_at if expires_at.tzinfo else expires_at.replace(tzinfo=UTC)  # no zone: UTC
        if expires_at <= datetime.now(UTC):
            raise errors.InvalidField("expires_at", "expires_at must be in the future.")
    key = api_keys.new_key()
    record = get_db().call(
        "create_api_key",
        user=user.id,
        name=req.name,
        prefix=key[: api_keys.VISIBLE],
        digest=api_keys.digest(key),
        scopes=scopes,
        expires_at=expires_at,
        signup_credits=get_settings().signup_credits,
    )
    return CreatedApiKey.model_validate({**record, "key": key})


def list_keys(user: User) -> ApiKeyList:
    """The user's keys, newest first, revoked ones included."""
    return ApiKeyList(keys=[ApiKey.model_validate(r) for r in get_db().call("list_api_keys", user=user.id)])


def revoke(user: User, key_id: UUID) -> ApiKey:
    """Revoke one of the user's keys: refused at once by billed requests, everywhere within seconds."""
    record = get_db().call("revoke_api_key", user=user.id, key=key_id)
    if record is None:
        raise errors.ApiKeyNotFound(f"No API key {key_id} for this user.", field="key_id")
    api_keys.forget(key_id=key_id)
    return ApiKey.model_validate(record)
