"""POST /functions/v1/generate-video: validate, one procedure call (debit + job + idempotency record), submit."""

from __future__ import annotations

from shared.web import Call, Endpoint, Reply, billed_start_headers, lambda_handler


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
    response_headers=billed_start_headers("generate-video", 5),
)
handler = lambda_handler(endpoint)
