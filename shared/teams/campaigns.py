"""Clients and campaigns: create, update (rename, budget, archive), list, and read with their spend."""

from __future__ import annotations

from uuid import UUID

from shared import errors
from shared.auth import User
from shared.db import get_db
from shared.settings import get_settings
from shared.team_schemas import (
    Campaign,
    CampaignDetail,
    CampaignList,
    Client,
    ClientDetail,
    ClientList,
    CreateCampaignRequest,
    UpdateCampaignRequest,
    UpdateClientRequest,
)


def create_client(user: User, name: str) -> Client:
    """A new client of the user's."""
    record = get_db().call(
        "create_client", user=user.id, name=name, signup_credits=get_settings().signup_credits
    )
    return Client.model_validate(record)


def update_client(user: User, req: UpdateClientRequest) -> Client:
    """Rename, archive or restore one of the user's clients."""
    record = get_db().call(
        "update_client", user=user.id, client=req.client_id, name=req.name, archived=req.archived
    )
    if record is None:
        raise _no_client(req.client_id)
    return Client.model_validate(record)


def list_clients(user: User, archived: bool | None) -> ClientList:
    """The user's clients, newest first (all, or only archived or only active ones)."""
    records = get_db().call("list_clients", user=user.id, archived=archived)
    return ClientList(clients=[Client.model_validate(r) for r in records])


def get_client(user: User, client_id: UUID) -> ClientDetail:
    """One of the user's clients, with its spend and campaigns."""
    record = get_db().call("get_client", user=user.id, client=client_id)
    if record is None:
        raise _no_client(client_id)
    return ClientDetail.model_validate(record)


def create_campaign(user: User, req: CreateCampaignRequest) -> Campaign:
    """A new campaign of one of the user's clients (not an archived one)."""
    result = get_db().call(
        "create_campaign", user=user.id, client=req.client_id, name=req.name, budget=req.budget_credits
    )
    if result.get("error") == "client_missing":
        raise _no_client(req.client_id)
    if result.get("error") == "client_archived":
        raise errors.Archived(
            "The client is archived; restore it with update-client first.", field="client_id"
        )
    return Campaign.model_validate(result["campaign"])


def update_campaign(user: User, req: UpdateCampaignRequest) -> Campaign:
    """Rename, re-budget (``budget_credits: null`` removes the budget), archive or restore a campaign."""
    clear = "budget_credits" in req.model_fields_set and req.budget_credits is None
    record = get_db().call(
        "update_campaign",
        user=user.id,
        campaign=req.campaign_id,
        name=req.name,
        budget=req.budget_credits,
        clear_budget=clear,
        archived=req.archived,
    )
    if record is None:
        raise _no_campaign(req.campaign_id)
    return Campaign.model_validate(record)


def list_campaigns(user: User, client_id: UUID | None, archived: bool | None) -> CampaignList:
    """The user's campaigns (of one client, when given), newest first."""
    records = get_db().call("list_campaigns", user=user.id, client=client_id, archived=archived)
    return CampaignList(campaigns=[Campaign.model_validate(r) for r in records])


def find_campaign(user: User, campaign_id: UUID) -> Campaign:
    """One of the user's campaigns with its budget and what it has spent (no ledger read: a quote's check)."""
    record = get_db().call("find_campaign", user=user.id, campaign=campaign_id)
    if record is None:
        raise _no_campaign(campaign_id)
    return Campaign.model_validate(record)


def get_campaign(user: User, campaign_id: UUID) -> CampaignDetail:
    """One of the user's campaigns with its spend (from the ledger)."""
    record = get_db().call("get_campaign", user=user.id, campaign=campaign_id)
    if record is None:
        raise _no_campaign(campaign_id)
    return CampaignDetail.model_validate(record)


def _no_client(client_id: UUID) -> errors.ClientNotFound:
    return errors.ClientNotFound(f"No client {client_id} for this user.", field="client_id")


def _no_campaign(campaign_id: UUID) -> errors.CampaignNotFound:
    return errors.CampaignNotFound(f"No campaign {campaign_id} for this user.", field="campaign_id")
