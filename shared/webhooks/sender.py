"""A long-running sender of outgoing webhooks (the local server runs one): each delivery goes out as soon as the
transaction that queued it commits, and each retry when it falls due.

It LISTENs on the ``i2v_webhooks`` channel, which the procedures notify when they queue deliveries or a
redelivery, sends whatever is due (:func:`shared.webhooks.delivery.deliver_due`), then sleeps until the earliest
pending delivery is due (``webhook_due_in_s``), a notification arrives, or ``max_sleep_s`` passes. Behind a
transaction-mode pooler, which does not carry notifications, it still sends on that schedule.
"""

from __future__ import annotations

import logging
import threading
import time

import psycopg

from shared import errors
from shared.db import get_db
from shared.webhooks import delivery

log = logging.getLogger("i2v.webhooks")

CHANNEL = "i2v_webhooks"
#: The longest sleep between two looks at the queue (what a missed notification can cost).
MAX_SLEEP_S = 30.0
#: How often a sleeping sender checks that it was asked to stop.
_STOP_CHECK_S = 1.0
_MIN_SLEEP_S = 0.05
_RETRY_AFTER_ERROR_S = 5.0


class WebhookSender:
    """Send due deliveries on a daemon thread until :meth:`stop`."""

    def __init__(self, database_url: str, *, listen: bool = True, max_sleep_s: float = MAX_SLEEP_S) -> None:
        self._url = database_url
        self._listen = listen
        self._max_sleep_s = max_sleep_s
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._conn: psycopg.Connection[tuple[object, ...]] | None = None
        #: Set while the sender sleeps with nothing due (its queue looked at, the next look only when woken).
        self.idle = threading.Event()

    def start(self) -> None:
        """Start the sending thread."""
        self._thread = threading.Thread(target=self._run, name="i2v-webhooks", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        """Ask the thread to stop and wait for it (a delivery in flight finishes first)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self._connect()
                delivery.deliver_due()
                due = get_db().call("webhook_due_in_s")
                if due is None:
                    self.idle.set()
                self._sleep(self._max_sleep_s if due is None else max(_MIN_SLEEP_S, float(due)))
                self.idle.clear()
            except (psycopg.Error, errors.I2VError) as exc:
                log.warning("webhook sender: %s; trying again shortly", exc)
                self._disconnect()
                self._stop.wait(_RETRY_AFTER_ERROR_S)
            except Exception:  # a bug must not silence every webhook until the server restarts
                log.exception("webhook sender failed; trying again shortly")
                self._disconnect()
                self._stop.wait(_RETRY_AFTER_ERROR_S)
        self._disconnect()

    def _connect(self) -> None:
        if self._listen and self._conn is None:
            self._conn = psycopg.connect(self._url, autocommit=True)
            self._conn.execute(f"listen {CHANNEL}")

    def _disconnect(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def _sleep(self, seconds: float) -> None:
        """Sleep up to ``seconds`` (and ``max_sleep_s``), waking early for a notification or a stop."""
        deadline = time.monotonic() + min(seconds, self._max_sleep_s)
        while not self._stop.is_set():
            left = deadline - time.monotonic()
            if left <= 0:
                return
            step = min(left, _STOP_CHECK_S)
            if self._conn is None:
                self._stop.wait(step)
                continue
            if any(True for _ in self._conn.notifies(timeout=step, stop_after=1)):
                return
