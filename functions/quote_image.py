"""POST /functions/v1/quote-image: the generate-image body priced and validated, with the balance after; no
charge."""

from __future__ import annotations

from typing import Any

from shared.web import Call, Endpoint, lambda_handler


def quote_image(call: Call) -> Any:
    """Return what generate-image would charge for this body and the balance after it; nothing is charged."""
    from shared.jobs import quotes

    return quotes.quote_image(call.user, call.data)


endpoint = Endpoint(
    "POST",
    "/functions/v1/quote-image",
    quote_image,
    tags=("images",),
    body="shared.schemas:GenerateImageRequest",
    response="shared.schemas:Quote",
    errors=(403, 404),
)
handler = lambda_handler(endpoint)
