"""GET /functions/v1/list-webhook-deliveries: the delivery log."""

from __future__ import annotations

from typing import Any

from shared.limits import LIST_PAGE_LIMIT
from shared.web import Call, Endpoint, Param, lambda_handler


def list_webhook_deliveries(call: Call) -> Any:
    """Your webhook deliveries with every attempt, newest first; follow next_cursor until it is null."""
    from shared.webhooks import endpoints

    return endpoints.list_deliveries(
        call.user, call.args["job_id"], call.args["state"], call.args["limit"], call.args["cursor"]
    )


endpoint = Endpoint(
    "GET",
    "/functions/v1/list-webhook-deliveries",
    list_webhook_deliveries,
    tags=("webhooks",),
    scope="webhooks",
    params=(
        Param("job_id", "uuid", description="only this job's deliveries"),
        Param("state", description="pending|delivered|failed"),
        Param(
            "limit",
            "int",
            default=50,
            minimum=1,
            maximum=LIST_PAGE_LIMIT,
            description=f"deliveries per page, 1-{LIST_PAGE_LIMIT}",
        ),
        Param("cursor", description="next_cursor of the previous page"),
    ),
    response="shared.team_schemas:WebhookDeliveryList",
    errors=(403,),
)
handler = lambda_handler(endpoint)
