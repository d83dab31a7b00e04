"""POST /functions/v1/redeem-app-store-transaction: credit an App Store purchase made in the iOS app, once."""

from __future__ import annotations

from shared.web import Call, Endpoint, Reply, lambda_handler


def redeem_app_store_transaction(call: Call) -> Reply:
    """Verify the signed transaction (or look it up by id) and credit its pack to the caller once; a repeat
    answers the same (Idempotent-Replayed: true). The app finishes the transaction only after a 200."""
    from shared.billing import app_store

    outcome = app_store.redeem(call.user, call.data)
    headers = {"Idempotent-Replayed": "true"} if outcome.replayed else {}
    return Reply(outcome.redemption, headers=headers)


endpoint = Endpoint(
    "POST",
    "/functions/v1/redeem-app-store-transaction",
    redeem_app_store_transaction,
    tags=("billing",),
    body="shared.billing.app_store:RedeemRequest",
    response="shared.billing.app_store:AppStoreRedemption",
    errors=(400, 403, 404, 413, 502, 503),
)
handler = lambda_handler(endpoint)
