"""POST /functions/v1/fal-webhook: verify fal's Ed25519 signature over the raw body, apply the completion."""

from __future__ import annotations

from shared.web import Call, Endpoint, Param, lambda_handler


def fal_webhook(call: Call) -> dict[str, object]:
    """Record fal's verdict at once (well inside fal's 15 s); the video is copied after the answer."""
    from shared.jobs import mirror, updates
    from shared.settings import get_settings

    outcome = updates.handle_webhook("fal", call.headers, call.raw_body, call.args["job_id"])
    if outcome.mirror is not None and get_settings().mirror_after_webhook:
        call.after(mirror.copy_video, outcome.mirror)
    return {"received": True, "result": outcome.result}


endpoint = Endpoint(
    "POST",
    "/functions/v1/fal-webhook",
    fal_webhook,
    tags=("webhooks",),
    auth=False,
    params=(Param("job_id", "uuid", description="the job this completion belongs to (set at submission)"),),
    errors=(400,),
    max_body=1024 * 1024,  # provider events: larger than API bodies, still bounded before verification
)
handler = lambda_handler(endpoint)
