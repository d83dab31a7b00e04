"""GET /functions/v1/list-credit-packs: the credit packs for sale and whether purchases are enabled."""

from __future__ import annotations

from typing import Any

from shared.web import Call, Endpoint, lambda_handler


def list_credit_packs(call: Call) -> Any:
    """List the credit packs (id, credits, price in cents, currency), cheapest first."""
    from shared.billing import checkout as billing

    return billing.pack_list()


endpoint = Endpoint(
    "GET",
    "/functions/v1/list-credit-packs",
    list_credit_packs,
    tags=("billing",),
    auth=False,
    response="shared.billing.checkout:CreditPackList",
)
handler = lambda_handler(endpoint)
