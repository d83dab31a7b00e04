"""Quotes: what a generate-video or generate-image request would cost and the balance after it, charging
nothing."""

from __future__ import annotations

from shared.auth import User
from shared.billing import ledger as credits
from shared.jobs import service as jobs
from shared.schemas import GenerateImageRequest, GenerateVideoRequest, Quote


def quote(user: User, req: GenerateVideoRequest) -> Quote:
    """Validate and price a request exactly as generate-video does, then read the balance (one call)."""
    prepared = jobs.prepare(user, req)
    balance = credits.summary(user, limit=1).balance
    return Quote(
        model=prepared.spec.slug,
        provider=prepared.stage.video_route.provider if prepared.stage else prepared.route.provider,
        parts={"image": prepared.stage.cost, "video": prepared.stage.video_cost} if prepared.stage else None,
        credits=prepared.cost,
        balance=balance,
        balance_after=balance - prepared.cost,
        settings=prepared.settings,
    )


def quote_image(user: User, req: GenerateImageRequest) -> Quote:
    """Validate and price an image request exactly as generate-image does, then read the balance."""
    prepared = jobs.prepare_image(user, req)
    balance = credits.summary(user, limit=1).balance
    return Quote(
        model=prepared.spec.slug,
        provider=prepared.route.provider,
        credits=prepared.cost,
        balance=balance,
        balance_after=balance - prepared.cost,
        settings=prepared.settings,
    )
