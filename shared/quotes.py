"""Quotes: what a generate-video request would cost and the balance after it, charging nothing."""

from __future__ import annotations

from shared import credits, jobs
from shared.auth import User
from shared.models import GenerateVideoRequest, Quote


def quote(user: User, req: GenerateVideoRequest) -> Quote:
    """Validate and price a request exactly as generate-video does, then read the balance (one call)."""
    prepared = jobs.prepare(user, req)
    balance = credits.summary(user, limit=1).balance
    return Quote(
        model=prepared.spec.slug,
        credits=prepared.cost,
        balance=balance,
        balance_after=balance - prepared.cost,
        settings=prepared.settings,
    )
