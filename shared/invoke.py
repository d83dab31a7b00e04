"""Asynchronous Lambda invocations (``InvocationType=Event``): how one deployed function hands work to another
(fal-webhook's video copies to mirrorVideo) or wakes it (deliverWebhooks, after a job changed). boto3 is imported
on first use."""

from __future__ import annotations

import json
import logging
from functools import lru_cache
from typing import Any

log = logging.getLogger("i2v.invoke")


def invoke_async(function: str, payload: dict[str, Any]) -> bool:
    """Queue one invocation of ``function`` with ``payload``; True when Lambda accepted it (202).

    A failure (unreachable API, missing permission, unknown function) is logged and answered False: the caller's
    fallback (the reconciler, the minute's schedule) picks the work up.
    """
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        answer = lambda_client().invoke(
            FunctionName=function, InvocationType="Event", Payload=json.dumps(payload).encode()
        )
    except (BotoCoreError, ClientError) as exc:
        log.warning("invocation failed", extra={"function": function, "error": type(exc).__name__})
        return False
    return int(answer.get("StatusCode", 0)) == 202


@lru_cache(maxsize=1)
def lambda_client() -> Any:
    """The process's Lambda API client."""
    import boto3

    return boto3.client("lambda")


def wake_webhook_sender() -> bool:
    """As a Lambda invocation ends: when it changed a job (``shared.db.take_job_change``), WEBHOOK_FUNCTION names
    the deliver-webhooks function and a delivery is due now, invoke that function so that the events go out
    within seconds instead of at the next minute's schedule (which stays the fallback). True when it was invoked.
    Never raises; without WEBHOOK_FUNCTION (the local server, whose own sender listens to Postgres) nothing is
    asked of the database."""
    import sys

    db = sys.modules.get("shared.db")  # a handler that never loaded the database layer changed no job
    if db is None or not db.take_job_change():
        return False
    from shared import errors
    from shared.settings import get_settings

    function = get_settings().webhook_function
    if not function:
        return False
    try:
        due = db.get_db().call("webhook_due_in_s")
    except errors.I2VError as exc:
        log.warning("could not look for due webhooks: %s", exc.message)
        return False
    if due is None or float(due) > 0:
        return False
    woken = invoke_async(function, {"source": "i2v.job-change"})
    log.info("webhook sender woken" if woken else "webhook sender not woken", extra={"function": function})
    return woken
