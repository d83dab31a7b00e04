"""Quotes: what a generate-video or generate-image request would cost and the balance after it, charging
nothing."""

from __future__ import annotations

from uuid import UUID

from shared.auth import User
from shared.billing import ledger as credits
from shared.jobs import refusals
from shared.jobs import service as jobs
from shared.schemas import GenerateImageRequest, GenerateVideoRequest, Quote


def quote(user: User, req: GenerateVideoRequest) -> Quote:
    """Validate and price a request exactly as generate-video does, then read the balance (one call)."""
    return _quote(user, jobs.prepare(user, req), req.campaign_id)


def quote_image(user: User, req: GenerateImageRequest) -> Quote:
    """Validate and price an image request exactly as generate-image does, then read the balance."""
    return _quote(user, jobs.prepare_image(user, req), req.campaign_id)


def _quote(user: User, prepared: jobs.Prepared, campaign_id: UUID | None) -> Quote:
    """A prepared request's price beside the balance (and, with a campaign, beside what is left of its budget); a
    prompt-only video names its video's provider and both parts. A campaign that is not the caller's is a 404 and
    an archived one a 409, as generating would answer."""
    balance = credits.summary(user, limit=1).balance
    budget_left = _budget_left(user, campaign_id) if campaign_id else None
    stage = prepared.stage
    return Quote(
        model=prepared.spec.slug,
        provider=stage.video_route.provider if stage else prepared.route.provider,
        parts={"image": stage.cost, "video": stage.video_cost} if stage else None,
        credits=prepared.cost,
        balance=balance,
        balance_after=balance - prepared.cost,
        campaign_budget_remaining=budget_left,
        campaign_budget_after=None if budget_left is None else budget_left - prepared.cost,
        settings=prepared.settings,
    )


def _budget_left(user: User, campaign_id: UUID) -> int | None:
    """What is left of a campaign's budget (None: it has no budget)."""
    from shared.teams import campaigns

    campaign = campaigns.find_campaign(user, campaign_id)
    if campaign.archived:
        raise refusals.campaign_archived()
    return campaign.budget_remaining
