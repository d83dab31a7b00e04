"""Quotes: what a generate-video or generate-image request would cost and the balance after it, charging
nothing."""

from __future__ import annotations

from shared.auth import User
from shared.billing import ledger as credits
from shared.jobs import service as jobs
from shared.schemas import GenerateImageRequest, GenerateVideoRequest, Quote


def quote(user: User, req: GenerateVideoRequest) -> Quote:
    """Validate and price a request exactly as generate-video does, then read the balance (one call)."""
    return _quote(user, jobs.prepare(user, req))


def quote_image(user: User, req: GenerateImageRequest) -> Quote:
    """Validate and price an image request exactly as generate-image does, then read the balance."""
    return _quote(user, jobs.prepare_image(user, req))


def _quote(user: User, prepared: jobs.Prepared) -> Quote:
    """A prepared request's price beside the balance; a prompt-only video names its video's provider and both
    parts."""
    balance = credits.summary(user, limit=1).balance
    stage = prepared.stage
    return Quote(
        model=prepared.spec.slug,
        provider=stage.video_route.provider if stage else prepared.route.provider,
        parts={"image": stage.cost, "video": stage.video_cost} if stage else None,
        credits=prepared.cost,
        balance=balance,
        balance_after=balance - prepared.cost,
        settings=prepared.settings,
    )
