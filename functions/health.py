"""GET /functions/v1/health and /api/health: ok only when the database answers."""

from __future__ import annotations

from shared import errors
from shared.web import Call, Endpoint, lambda_handler


def health(call: Call) -> dict[str, str]:
    """Report ok when the database answers, 503 otherwise."""
    from shared.db import get_db

    if not get_db().ping():
        raise errors.ServiceUnavailable("The database does not answer.")
    return {"status": "ok"}


endpoint = Endpoint(
    "GET",
    "/functions/v1/health",
    health,
    tags=("ops",),
    auth=False,
    response="shared.schemas:Health",
    errors=(503,),
    aliases=("/api/health",),
)
handler = lambda_handler(endpoint)
