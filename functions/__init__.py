"""One module per cloud function; each exposes ``endpoint`` (its HTTP contract) and ``handler`` (AWS Lambda).

A function module imports only shared.web at the top; the service modules it calls (and the libraries behind
them: pydantic, psycopg, PyJWT, stripe) are imported inside the function, so a Lambda's init phase stays short
and each library loads only in the functions whose requests use it.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from shared.web import Endpoint

#: Every HTTP cloud function, in the order the OpenAPI document lists them (the one list: the local server,
#: the OpenAPI writer and the route tests read it; serverless.yml is held equal to it by a test).
HTTP_FUNCTIONS: tuple[str, ...] = (
    "generate_video",
    "generate_image",
    "get_video_status",
    "list_models",
    "get_credits",
    "create_upload_url",
    "cancel_video",
    "fal_webhook",
    "replicate_webhook",
    "list_videos",
    "list_jobs",
    "status",
    "quote",
    "quote_image",
    "list_credit_packs",
    "create_checkout_session",
    "stripe_webhook",
    "redeem_app_store_transaction",
    "app_store_notification",
    "operator_overview",
    "health",
    "create_api_key",
    "list_api_keys",
    "revoke_api_key",
    "create_client",
    "list_clients",
    "get_client",
    "update_client",
    "create_campaign",
    "list_campaigns",
    "get_campaign",
    "update_campaign",
    "create_webhook_endpoint",
    "list_webhook_endpoints",
    "delete_webhook_endpoint",
    "enable_webhook_endpoint",
    "send_test_webhook",
    "get_webhook_secret",
    "list_webhook_deliveries",
    "redeliver_webhook",
)


def endpoints() -> list[Endpoint]:
    """The endpoint of every HTTP cloud function (imports each module: for servers and tools, not a Lambda)."""
    return [importlib.import_module(f"functions.{name}").endpoint for name in HTTP_FUNCTIONS]
