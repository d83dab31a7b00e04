"""POST /functions/v1/quote: the generate-video body priced and validated, with the balance after; no charge."""

from __future__ import annotations

from typing import Any

from shared.web import Call, Endpoint, lambda_handler


def quote(call: Call) -> Any:
    """Return what generate-video would charge for this body and the balance after it; nothing is charged."""
    from shared.jobs import quotes

    return quotes.quote(call.user, call.data)


endpoint = Endpoint(
    "POST",
    "/functions/v1/quote",
    quote,
    tags=("videos",),
    body="shared.schemas:GenerateVideoRequest",
    response="shared.schemas:Quote",
    errors=(403, 404),
)
handler = lambda_handler(endpoint)
