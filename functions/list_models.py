"""GET /functions/v1/list-models: every model, whether it can be used now, its settings and price."""

from __future__ import annotations

from typing import Any

from shared.web import Call, Endpoint, lambda_handler


def list_models(call: Call) -> Any:
    """List the model catalog with availability and allowed settings."""
    from shared.jobs import catalog_view

    return catalog_view.model_list()


endpoint = Endpoint(
    "GET",
    "/functions/v1/list-models",
    list_models,
    tags=("models",),
    auth=False,
    response="shared.schemas:ModelList",
)
handler = lambda_handler(endpoint)
