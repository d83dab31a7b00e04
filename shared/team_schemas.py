"""Request and response bodies of the team endpoints: API keys, clients, campaigns and outgoing webhooks."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

Scope = Literal["generate", "read", "billing", "campaigns", "webhooks", "keys"]
EventType = Literal["job.processing", "job.completed", "job.failed", "job.canceled"]
#: A name people give (a key, a client, a campaign): surrounding spaces dropped, then 1-200 characters.
Name = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]
#: The largest campaign budget (a trillion credits): a larger number is refused, not passed to the database.
MAX_BUDGET_CREDITS = 10**12


class CreateApiKeyRequest(BaseModel):
    """Body of POST create-api-key."""

    model_config = ConfigDict(extra="forbid")
    name: Name
    scopes: list[Scope] | None = Field(
        default=None,
        min_length=1,
        description="what the key may do; default generate, read, campaigns, webhooks (not billing, not keys)",
    )
    expires_at: datetime | None = Field(default=None, description="when the key stops working (none: never)")


class ApiKey(BaseModel):
    """One API key as listed (the key itself is never shown again after creation)."""

    id: UUID
    name: str
    prefix: str = Field(description="the key's first characters, to tell keys apart")
    scopes: list[str]
    created_at: datetime
    expires_at: datetime | None = None
    last_used_at: datetime | None = None
    revoked_at: datetime | None = None


class CreatedApiKey(ApiKey):
    """A new API key: ``key`` is shown this once; store it now."""

    key: str


class ApiKeyList(BaseModel):
    """Body of GET list-api-keys, newest first."""

    keys: list[ApiKey]


class RevokeApiKeyRequest(BaseModel):
    """Body of POST revoke-api-key."""

    model_config = ConfigDict(extra="forbid")
    key_id: UUID


class CreateClientRequest(BaseModel):
    """Body of POST create-client."""

    model_config = ConfigDict(extra="forbid")
    name: Name


class UpdateClientRequest(BaseModel):
    """Body of POST update-client: the fields to change."""

    model_config = ConfigDict(extra="forbid")
    client_id: UUID
    name: Name | None = None
    archived: bool | None = None


class Client(BaseModel):
    """One client (a customer of the agency)."""

    id: UUID
    name: str
    archived: bool
    created_at: datetime
    updated_at: datetime


class ClientList(BaseModel):
    """Body of GET list-clients, newest first."""

    clients: list[Client]


class CreateCampaignRequest(BaseModel):
    """Body of POST create-campaign."""

    model_config = ConfigDict(extra="forbid")
    client_id: UUID
    name: Name
    budget_credits: int | None = Field(
        default=None, ge=0, le=MAX_BUDGET_CREDITS, description="credits it may spend (none: no limit)"
    )


class UpdateCampaignRequest(BaseModel):
    """Body of POST update-campaign: the fields to change (``budget_credits: null`` removes the budget)."""

    model_config = ConfigDict(extra="forbid")
    campaign_id: UUID
    name: Name | None = None
    budget_credits: int | None = Field(default=None, ge=0, le=MAX_BUDGET_CREDITS)
    archived: bool | None = None


class Campaign(BaseModel):
    """One campaign of a client, with its budget and what it has used of it (debits minus refunds)."""

    id: UUID
    client_id: UUID
    name: str
    budget_credits: int | None = None
    credits_spent: int
    budget_remaining: int | None = None
    archived: bool
    created_at: datetime
    updated_at: datetime


class CampaignList(BaseModel):
    """Body of GET list-campaigns, newest first."""

    campaigns: list[Campaign]


class ModelSpend(BaseModel):
    """What the jobs of one model cost."""

    jobs: int
    credits_spent: int
    credits_refunded: int
    credits_net: int


class Spend(BaseModel):
    """What a set of jobs cost, read from the credit ledger."""

    credits_spent: int = Field(description="credits debited for its jobs")
    credits_refunded: int = Field(description="credits given back (failed or canceled jobs)")
    credits_net: int
    jobs: dict[str, int] = Field(description="jobs by status")
    models: dict[str, ModelSpend] = Field(description="by model slug")


class CampaignDetail(Campaign):
    """Body of GET get-campaign: the campaign and its spend."""

    spend: Spend


class ClientDetail(Client):
    """Body of GET get-client: the client, its spend over all its campaigns, and the campaigns."""

    spend: Spend
    campaigns: list[Campaign]


class CreateWebhookEndpointRequest(BaseModel):
    """Body of POST create-webhook-endpoint."""

    model_config = ConfigDict(extra="forbid")
    url: str = Field(min_length=1, max_length=2048, description="https URL on a public address")
    events: list[EventType] = Field(min_length=1)


class WebhookError(BaseModel):
    """The newest delivery to an endpoint whose last attempt failed: its state, the answer and when."""

    delivery_id: UUID
    state: str
    status: int | None = None
    error: str | None = None
    at: datetime | None = None


class WebhookEndpointHealth(BaseModel):
    """How an endpoint's deliveries are going."""

    pending: int = 0
    failed_last_24h: int = 0
    last_delivered_at: datetime | None = None
    last_error: WebhookError | None = None


class WebhookEndpoint(BaseModel):
    """One endpoint that receives job events, with its health."""

    id: UUID
    url: str
    events: list[str]
    secret_prefix: str
    created_at: datetime
    disabled_at: datetime | None = None
    # Why it was disabled: deleted (delete-webhook-endpoint), gone (it answered 410), failing (no 2xx for
    # WEBHOOK_DISABLE_AFTER_S); enable-webhook-endpoint clears it.
    disabled_reason: Literal["deleted", "gone", "failing"] | None = None
    failing_since: datetime | None = None  # the first failed attempt since its last 2xx
    health: WebhookEndpointHealth = WebhookEndpointHealth()


class CreatedWebhookEndpoint(WebhookEndpoint):
    """A new endpoint: ``secret`` (``whsec_...``) verifies its deliveries; it is shown this once."""

    secret: str


class WebhookEndpointList(BaseModel):
    """Body of GET list-webhook-endpoints."""

    endpoints: list[WebhookEndpoint]


class WebhookEndpointRef(BaseModel):
    """A body naming one of the caller's webhook endpoints."""

    model_config = ConfigDict(extra="forbid")
    endpoint_id: UUID


class DeleteWebhookEndpointRequest(WebhookEndpointRef):
    """Body of POST delete-webhook-endpoint."""


class EnableWebhookEndpointRequest(WebhookEndpointRef):
    """Body of POST enable-webhook-endpoint."""


class SendTestWebhookRequest(WebhookEndpointRef):
    """Body of POST send-test-webhook."""


class WebhookSecret(BaseModel):
    """The secret that signs deliveries to generate requests' own ``webhook_url``."""

    secret: str


class WebhookAttempt(BaseModel):
    """One attempt at a delivery."""

    at: datetime
    status: int | None = None
    error: str | None = None
    duration_ms: int


class WebhookDelivery(BaseModel):
    """One event for one destination, and every attempt at it."""

    id: UUID
    webhook_id: str = Field(description="the webhook-id header: the same on every attempt")
    endpoint_id: UUID | None = None
    url: str
    event_type: str
    job_id: UUID | None = None
    state: Literal["pending", "delivered", "failed"]
    attempts: int
    next_attempt_at: datetime | None = None
    last_status: int | None = None
    last_error: str | None = None
    created_at: datetime
    delivered_at: datetime | None = None
    log: list[WebhookAttempt]


class WebhookDeliveryList(BaseModel):
    """Body of GET list-webhook-deliveries: one page, newest first."""

    deliveries: list[WebhookDelivery]
    next_cursor: str | None = None


class RedeliverWebhookRequest(BaseModel):
    """Body of POST redeliver-webhook."""

    model_config = ConfigDict(extra="forbid")
    delivery_id: UUID
