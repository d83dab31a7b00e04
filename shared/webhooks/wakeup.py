"""Deployed, a request or copy that changed a job wakes the deliver-webhooks function, so that the events it
queued go out within seconds instead of at the next minute's schedule.

``shared.db`` notes every job-transition call (:func:`note_job_change`); as a Lambda invocation ends,
:func:`wake_sender` asks once whether a delivery is due and, when one is and ``WEBHOOK_FUNCTION`` names the
sender, invokes it asynchronously. The schedule stays the fallback for a lost wake-up. Without
``WEBHOOK_FUNCTION`` (the local server, whose own sender listens to Postgres) nothing is asked or invoked.
"""

from __future__ import annotations

import logging

log = logging.getLogger("i2v.webhooks")

_changed = False  # a Lambda container serves one invocation at a time


def note_job_change() -> None:
    """Remember that this invocation called a job-transition procedure."""
    global _changed
    _changed = True


def wake_sender() -> bool:
    """As an invocation ends: invoke WEBHOOK_FUNCTION when the invocation changed a job and a delivery is due
    now; True when it was invoked. Never raises: a failure leaves the deliveries to the schedule."""
    global _changed
    changed, _changed = _changed, False
    if not changed:
        return False
    from shared import errors
    from shared.db import get_db
    from shared.invoke import invoke_async
    from shared.settings import get_settings

    function = get_settings().webhook_function
    if not function:
        return False

    try:
        due = get_db().call("webhook_due_in_s")
    except errors.I2VError as exc:
        log.warning("could not look for due webhooks: %s", exc.message)
        return False
    if due is None or float(due) > 0:
        return False
    woken = invoke_async(function, {"source": "i2v.job-change"})
    log.info("webhook sender woken" if woken else "webhook sender not woken", extra={"function": function})
    return woken
