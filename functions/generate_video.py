"""POST /functions/v1/generate-video: validate, one procedure call (debit + job + idempotency record), submit."""

from __future__ import annotations

from shared.web import Call, Endpoint, Reply, lambda_handler


def generate_video(call: Call) -> Reply:
    """Start a video job, charged once per Idempotency-Key; a replay returns the first response.

    The answer's `Location` header names the job's get-video-status URL, on the first answer and on a replay.
    """
    from shared.jobs import service as jobs

    assert call.idempotency_key is not None
    body = call.data
    outcome = jobs.start_generation(
        call.user, call.idempotency_key, body.model_dump(mode="json", exclude_unset=True), body
    )
    return Reply(outcome.body, status=outcome.status, headers=outcome.reply_headers())


endpoint = Endpoint(
    "POST",
    "/functions/v1/generate-video",
    generate_video,
    tags=("videos",),
    scope="generate",
    checks_key_in_call=True,
    idempotency_key="required",
    body="shared.schemas:GenerateVideoRequest",
    response="shared.schemas:GenerateVideoResponse",
    status=202,
    errors=(402, 403, 404, 409, 422, 429),
    response_headers=(
        ("Location", "get-video-status of the job (relative URL), on the first answer and on a replay"),
        ("Idempotent-Replayed", "`true` when this is the stored answer to an earlier request with this key"),
        (
            "RateLimit-Policy",
            'the caller\'s limit, e.g. `"generate-video";q=5;w=60` (absent when not limited)',
        ),
        (
            "RateLimit",
            'what is left of it, e.g. `"generate-video";r=4;t=60` (a 429 carries it and Retry-After)',
        ),
    ),
)
handler = lambda_handler(endpoint)
