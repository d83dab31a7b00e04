"""What start_generation's refusals of a team's request become: a revoked key, a rate limit, a campaign that is
not the caller's, archived, or out of budget. Each is decided in the same procedure call that would have debited,
and none changes anything (no debit, no Idempotency-Key record, no use of the rate limit)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from shared import errors

Refusal = Callable[[dict[str, Any], dict[str, str]], errors.I2VError]


def _key_revoked(result: dict[str, Any], headers: dict[str, str]) -> errors.I2VError:
    return errors.Unauthorized("The API key is not valid: unknown, revoked or expired.", reason="api_key")


def _rate_limited(result: dict[str, Any], headers: dict[str, str]) -> errors.I2VError:
    rate = result["rate"]
    err = errors.RateLimited(
        f"At most {rate['limit']} requests in {rate['window_s']} s; retry in {rate['reset_s']} s. "
        "Nothing was charged and the Idempotency-Key is still unused.",
        retry_after=rate["reset_s"],
        limit=rate["limit"],
        window_s=rate["window_s"],
    )
    err.headers.update(headers)
    return err


def _campaign_missing(result: dict[str, Any], headers: dict[str, str]) -> errors.I2VError:
    return errors.CampaignNotFound("You have no campaign with that campaign_id.", field="campaign_id")


def campaign_archived() -> errors.Archived:
    """The refusal of a job for an archived campaign (generating, or quoting)."""
    return errors.Archived(
        "The campaign is archived and takes no new jobs; restore it with update-campaign.",
        field="campaign_id",
    )


def _campaign_archived(result: dict[str, Any], headers: dict[str, str]) -> errors.I2VError:
    return campaign_archived()


def _budget_exceeded(result: dict[str, Any], headers: dict[str, str]) -> errors.I2VError:
    cost, remaining = result["cost"], result["remaining"]
    return errors.CampaignBudgetExceeded(
        f"This request costs {cost} credits; the campaign has {remaining} of its budget left. "
        "Raise its budget_credits with update-campaign.",
        cost=cost,
        remaining=remaining,
        budget=result["budget"],
    )


REFUSALS: dict[str, Refusal] = {
    "key_revoked": _key_revoked,
    "rate_limited": _rate_limited,
    "campaign_missing": _campaign_missing,
    "campaign_archived": _campaign_archived,
    "budget_exceeded": _budget_exceeded,
}
