"""GET /functions/v1/operator-overview: the operator's figures (operators only; read-only)."""

from __future__ import annotations

from typing import Any

from shared.web import Call, Endpoint, Param, lambda_handler


def operator_overview(call: Call) -> Any:
    """Jobs by model and provider, refunds, copies, ledger checks and the jobs waiting longest (403 for anyone
    but an operator)."""
    from shared import operations

    return operations.overview(call.user, call.args["hours"], call.args["stuck"])


endpoint = Endpoint(
    "GET",
    "/functions/v1/operator-overview",
    operator_overview,
    tags=("operations",),
    params=(
        Param("hours", "int", default=24, minimum=1, maximum=168, description="the window, in hours (1-168)"),
        Param(
            "stuck", "int", default=20, minimum=1, maximum=100, description="unfinished jobs listed, 1-100"
        ),
    ),
    response="shared.operations:OperatorOverview",
    errors=(403,),
)
handler = lambda_handler(endpoint)
