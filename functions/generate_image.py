"""POST /functions/v1/generate-image: validate, one procedure call (debit + job + idempotency record), submit."""

from __future__ import annotations

from shared.web import Call, Endpoint, Reply, billed_start_headers, lambda_handler


def generate_image(call: Call) -> Reply:
    """Start an image job (text to image, or an edit of reference images), charged once per Idempotency-Key; a
    replay returns the first response. Follow it with get-video-status (its `images` carry each `image_id`)."""
    from shared.jobs import service as jobs

    assert call.idempotency_key is not None
    body = call.data
    outcome = jobs.start_image_generation(
        call.user, call.idempotency_key, body.model_dump(mode="json", exclude_unset=True), body
    )
    return Reply(outcome.body, status=outcome.status, headers=outcome.reply_headers())


endpoint = Endpoint(
    "POST",
    "/functions/v1/generate-image",
    generate_image,
    tags=("images",),
    scope="generate",
    checks_key_in_call=True,
    idempotency_key="required",
    body="shared.schemas:GenerateImageRequest",
    response="shared.schemas:GenerateVideoResponse",
    status=202,
    errors=(402, 403, 404, 409, 422, 429),
    response_headers=billed_start_headers("generate-image", 10),
)
handler = lambda_handler(endpoint)
