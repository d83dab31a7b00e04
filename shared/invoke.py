"""Asynchronous Lambda invocations (``InvocationType=Event``): how one deployed function hands work to another
(fal-webhook's video copies to mirrorVideo, a job's change to deliverWebhooks). boto3 is imported on first use."""

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
