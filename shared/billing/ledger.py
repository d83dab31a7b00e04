"""Credit balances and grants: reads and writes go through the ledger procedures."""

from __future__ import annotations

from uuid import UUID

from shared.auth import User
from shared.db import get_db
from shared.schemas import Credits
from shared.settings import get_settings


def summary(user: User, limit: int = 50) -> Credits:
    """The balance and the newest ledger entries (creates the account on first use)."""
    data = get_db().call(
        "get_credits", user=user.id, signup_credits=get_settings().signup_credits, limit=limit
    )
    return Credits.model_validate(data)


def grant(user_id: UUID, amount: int, reason: str | None = None, ref: str | None = None) -> int:
    """Append a grant (or, negative, a correction) to the ledger; return the new balance."""
    balance: int = get_db().call("grant_credits", user=user_id, amount=amount, reason=reason, ref=ref)
    return balance


def how_to_add(user_id: UUID, needed: int) -> str:
    """What a caller short of ``needed`` credits can do about it on this deployment (for a 402's message)."""
    from shared.billing import apple

    in_app = " (or buy a credit pack in the iOS app)" if apple.enabled() else ""
    if get_settings().stripe_secret_key:
        return (
            "Buy credits: GET list-credit-packs, then POST create-checkout-session with a pack_id "
            f"and pay at its checkout_url{in_app}."
        )
    if in_app:
        return "Buy a credit pack in the iOS app (in-app purchase; GET list-credit-packs lists the products)."
    return (
        "This server sells no credits (Stripe is not configured); the operator adds them with "
        f"`i2v credits grant {user_id} {max(needed, 1)}`."
    )
