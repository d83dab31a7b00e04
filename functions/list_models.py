"""GET /functions/v1/list-models: every model, whether it can be used now, its settings and price."""

from __future__ import annotations

from fastapi import APIRouter

from shared import catalog_view
from shared.models import ModelList
from shared.web import lambda_handler

router = APIRouter()


@router.get("/functions/v1/list-models", response_model=ModelList, tags=["models"])
def list_models() -> ModelList:
    """List the model catalog with availability and allowed settings."""
    return catalog_view.model_list()


handler = lambda_handler(router)
