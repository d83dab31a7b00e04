"""POST /functions/v1/app-store-notification: App Store Server Notifications V2, verified, applied once."""

from __future__ import annotations

from typing import Any

from shared.web import Call, Endpoint, lambda_handler


def app_store_notification(call: Call) -> Any:
    """Answer 200 once the notification is applied (or is a duplicate, or a type that moves no credits); 400
    when Apple's signature does not verify; 5xx makes the App Store retry."""
    from shared.billing import app_store

    return app_store.handle_notification(call.data)


endpoint = Endpoint(
    "POST",
    "/functions/v1/app-store-notification",
    app_store_notification,
    tags=("webhooks",),
    auth=False,
    body="shared.billing.app_store:AppStoreNotification",
    response="shared.billing.app_store:NotificationAck",
    errors=(400, 413, 503),
    max_body=256
    * 1024,  # a signed payload nests a signed transaction: a few KiB; bounded before verification
)
handler = lambda_handler(endpoint)
