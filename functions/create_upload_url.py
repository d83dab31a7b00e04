"""POST /functions/v1/create-upload-url: where to PUT an image, or the stored copy of the same content."""

from __future__ import annotations

from typing import Any

from shared.web import Call, Endpoint, lambda_handler


def create_upload_url(call: Call) -> Any:
    """Return a signed PUT target for the image, or its URL when this user already stored that content."""
    from shared.media import uploads

    return uploads.create_upload(call.user, call.data)


endpoint = Endpoint(
    "POST",
    "/functions/v1/create-upload-url",
    create_upload_url,
    tags=("uploads",),
    scope="generate",
    body="shared.schemas:CreateUploadRequest",
    response="shared.schemas:CreateUploadResponse",
    exclude_none=True,
)
handler = lambda_handler(endpoint)
