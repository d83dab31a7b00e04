"""POST /functions/v1/replicate-webhook: verify Replicate's Standard Webhooks signature over the raw body, apply
the prediction's news (start, completion)."""

from __future__ import annotations

from shared.web import Call, Endpoint, Param, lambda_handler


def replicate_webhook(call: Call) -> dict[str, object]:
    """Record the prediction's news at once; a finished video is copied after the answer."""
    from shared.jobs import mirror, updates
    from shared.settings import get_settings

    outcome = updates.handle_webhook("replicate", call.headers, call.raw_body, call.args["job_id"])
    if outcome.mirror is not None and get_settings().mirror_after_webhook:
        call.after(mirror.copy_video, outcome.mirror)
    return {"received": True, "result": outcome.result}


endpoint = Endpoint(
    "POST",
    "/functions/v1/replicate-webhook",
    replicate_webhook,
    tags=("webhooks",),
    auth=False,
    params=(Param("job_id", "uuid", description="the job this prediction belongs to (set at submission)"),),
    errors=(400,),
    max_body=1024 * 1024,  # provider events: larger than API bodies, still bounded before verification
)
handler = lambda_handler(endpoint)
