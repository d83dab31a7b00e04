"""Outgoing webhooks: job changes queue signed deliveries (Standard Webhooks), retried until a 2xx, logged."""

from __future__ import annotations

import random
import threading
import time
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from standardwebhooks import Webhook

from shared import metrics
from shared.db import Database
from shared.webhooks import delivery, signing
from shared.webhooks.sender import WebhookSender
from tests.conftest import Caller, configured, debit_job, make_caller, wait_for
from tests.teams_support import end_pending_deliveries, generate, video_body
from tests.webhook_support import Receiver, receiving


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    """A webhook receiver on a free local port (webhook URLs may be private for the test's duration)."""
    with receiving() as state:
        yield state


def _endpoint(caller: Caller, url: str, events: list[str]) -> dict[str, Any]:
    resp = caller.http.post("/functions/v1/create-webhook-endpoint", json={"url": url, "events": events})
    assert resp.status_code == 201, resp.text
    created: dict[str, Any] = resp.json()
    return created


def _deliveries(caller: Caller, job_id: uuid.UUID | str) -> list[dict[str, Any]]:
    page = caller.http.get("/functions/v1/list-webhook-deliveries", params={"job_id": str(job_id)}).json()
    found: list[dict[str, Any]] = page["deliveries"]
    return found


def test_signatures_match_the_standard_webhooks_test_vector() -> None:
    """Our v1 signature of the specification's example equals the published one."""
    body = b'{"test": 2432232314}'
    sig = signing.signature(
        "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, body
    )
    assert sig == "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="


def test_a_failing_receiver_gets_the_event_again_until_it_accepts(
    caller: Caller, db: Database, receiver: Receiver
) -> None:
    """A job that fails queues a job.failed event; the receiver answers 500, then 204 on the retry; both attempts
    carry the same webhook-id, fresh signatures standardwebhooks verifies, and the log lists both."""
    caller.grant(5)
    endpoint = _endpoint(caller, receiver.url, ["job.failed", "job.completed"])
    receiver.answers.append((500, {}))
    job = debit_job(db, caller.id)
    db.call("fail_job", job=job, error="provider said no", kind="provider")
    assert delivery.deliver_due()["retrying"] >= 1
    pending = _deliveries(caller, job)[0]
    assert pending["state"] == "pending" and pending["last_status"] == 500 and pending["attempts"] == 1
    wait_for(lambda: delivery.deliver_due()["delivered"], "the retry after ~5 s", timeout=30)
    delivered = _deliveries(caller, job)[0]
    assert delivered["state"] == "delivered" and [a["status"] for a in delivered["log"]] == [500, 204]
    assert len(receiver.received) == 2
    hook = Webhook(endpoint["secret"])
    for headers, body in receiver.received:
        assert headers["webhook-id"] == delivered["webhook_id"]
        event = hook.verify(body, headers)
        assert event["type"] == "job.failed" and event["data"]["job_id"] == str(job)
        assert event["data"]["status"] == "failed" and event["data"]["error_message"] == "provider said no"


def test_redelivery_sends_a_delivered_event_again(caller: Caller, db: Database, receiver: Receiver) -> None:
    """redeliver-webhook sends a delivered event once more, with its webhook-id and a new timestamp."""
    caller.grant(5)
    _endpoint(caller, receiver.url, ["job.canceled"])
    job = debit_job(db, caller.id)
    db.call("cancel_job", user=caller.id, job=job)
    delivery.deliver_due()
    first = _deliveries(caller, job)[0]
    assert first["state"] == "delivered"
    again = caller.http.post("/functions/v1/redeliver-webhook", json={"delivery_id": first["id"]})
    assert again.status_code == 200 and again.json()["state"] == "pending"
    delivery.deliver_due()
    assert [h["webhook-id"] for h, _ in receiver.received] == [first["webhook_id"]] * 2
    assert _deliveries(caller, job)[0]["attempts"] == 2


def test_a_request_webhook_url_gets_every_status_signed_with_the_account_secret(
    caller: Caller, receiver: Receiver
) -> None:
    """generate-video with webhook_url: the local engine's job sends job.processing and job.completed there,
    verified with the secret get-webhook-secret returns."""
    caller.grant(5)
    job_id = generate(caller.http, video_body(caller, webhook_url=receiver.url)).json()["job_id"]
    wait_for(lambda: caller.status(job_id).json()["status"] == "completed", "the job to complete")
    delivery.deliver_due()
    secret = caller.http.get("/functions/v1/get-webhook-secret").json()["secret"]
    types = [Webhook(secret).verify(body, headers)["type"] for headers, body in receiver.received]
    assert types == ["job.processing", "job.completed"]


def test_redirects_are_not_followed_and_410_disables_the_endpoint(
    caller: Caller, db: Database, receiver: Receiver
) -> None:
    """A 302 is a failed attempt (its Location is never requested); a 410 Gone fails the delivery for good and
    disables the endpoint."""
    caller.grant(10)
    endpoint = _endpoint(caller, receiver.url, ["job.failed"])
    receiver.answers.extend([(302, {"location": "http://169.254.169.254/latest"}), (410, {})])
    job = debit_job(db, caller.id)
    db.call("fail_job", job=job, error="x", kind="provider")
    delivery.deliver_due()
    assert _deliveries(caller, job)[0]["last_status"] == 302 and len(receiver.received) == 1
    caller.http.post(
        "/functions/v1/redeliver-webhook", json={"delivery_id": _deliveries(caller, job)[0]["id"]}
    )
    delivery.deliver_due()
    assert _deliveries(caller, job)[0]["state"] == "failed"
    listed = caller.http.get("/functions/v1/list-webhook-endpoints").json()["endpoints"]
    assert listed[0]["id"] == endpoint["id"] and listed[0]["disabled_at"] is not None
    assert listed[0]["disabled_reason"] == "gone"


def _listed(caller: Caller) -> dict[str, Any]:
    endpoints: list[dict[str, Any]] = caller.http.get("/functions/v1/list-webhook-endpoints").json()[
        "endpoints"
    ]
    assert len(endpoints) == 1
    return endpoints[0]


def test_an_endpoint_failing_for_days_is_disabled_and_can_be_enabled_again(
    caller: Caller, db: Database, receiver: Receiver
) -> None:
    """An endpoint with no 2xx for WEBHOOK_DISABLE_AFTER_S is disabled at its next failed attempt (reason
    failing, counted in the metric): the rest of its batch is not sent, its pending deliveries end failed and new
    events queue nothing for it; enable-webhook-endpoint sends the next event to it again."""
    caller.grant(10)
    endpoint = _endpoint(caller, receiver.url, ["job.failed", "job.canceled"])
    receiver.answers.extend([(500, {})] * 2)
    first = debit_job(db, caller.id)
    db.call("fail_job", job=first, error="x", kind="provider")
    delivery.deliver_due()
    failing = _listed(caller)
    assert failing["failing_since"] is not None and failing["disabled_at"] is None
    # Its failures began six days ago (past the five allowed); two more events are sent in one batch.
    with db.transaction() as tx:
        tx.query(
            "update webhook_endpoints set failing_since = now() - interval '6 days' where id = %s",
            (endpoint["id"],),
        )
    jobs = [debit_job(db, caller.id) for _ in range(2)]
    for job in jobs:
        db.call("cancel_job", user=caller.id, job=job)
    before = sum(
        s.value for s in metrics.snapshot()["webhook_endpoints_disabled"] if s.labels == ("failing",)
    )
    assert delivery.deliver_due() == {"delivered": 0, "retrying": 0, "failed": 2}
    assert len(receiver.received) == 2  # the first event's attempt, then one of the batch: the other not sent
    after = sum(s.value for s in metrics.snapshot()["webhook_endpoints_disabled"] if s.labels == ("failing",))
    assert after == before + 1
    disabled = _listed(caller)
    assert disabled["disabled_reason"] == "failing" and disabled["disabled_at"] is not None
    assert [d["state"] for job in [first, *jobs] for d in _deliveries(caller, job)] == ["failed"] * 3
    quiet = debit_job(db, caller.id)
    db.call("cancel_job", user=caller.id, job=quiet)
    assert _deliveries(caller, quiet) == []

    enabled = caller.http.post("/functions/v1/enable-webhook-endpoint", json={"endpoint_id": endpoint["id"]})
    assert enabled.status_code == 200, enabled.text
    back = enabled.json()
    assert back["disabled_at"] is None and back["disabled_reason"] is None and back["failing_since"] is None
    again = debit_job(db, caller.id)
    db.call("cancel_job", user=caller.id, job=again)
    assert delivery.deliver_due()["delivered"] == 1
    assert [d["state"] for d in _deliveries(caller, again)] == ["delivered"]


def test_delete_stops_an_endpoint_and_only_its_owner_may_enable_it(
    caller: Caller, other: Caller, db: Database, receiver: Receiver
) -> None:
    """delete-webhook-endpoint disables an endpoint (reason deleted; its pending delivery ends failed); another
    user's enable or delete of it is a 404 that changes nothing; its owner's enable brings it back."""
    caller.grant(10)
    endpoint = _endpoint(caller, receiver.url, ["job.canceled"])
    receiver.answers.append((500, {}))
    job = debit_job(db, caller.id)
    db.call("cancel_job", user=caller.id, job=job)
    delivery.deliver_due()
    assert _deliveries(caller, job)[0]["state"] == "pending"
    ref = {"endpoint_id": endpoint["id"]}
    deleted = caller.http.post("/functions/v1/delete-webhook-endpoint", json=ref)
    assert deleted.status_code == 200 and deleted.json()["disabled_reason"] == "deleted", deleted.text
    assert _deliveries(caller, job)[0]["state"] == "failed"
    for action in ("enable", "delete"):
        refused = other.http.post(f"/functions/v1/{action}-webhook-endpoint", json=ref)
        assert refused.status_code == 404 and refused.json()["error"]["details"]["field"] == "endpoint_id"
    assert _listed(caller)["disabled_reason"] == "deleted"
    unknown = caller.http.post(
        "/functions/v1/enable-webhook-endpoint", json={"endpoint_id": str(uuid.uuid4())}
    )
    assert unknown.status_code == 404
    assert caller.http.post("/functions/v1/enable-webhook-endpoint", json=ref).json()["disabled_at"] is None


@pytest.mark.parametrize(
    "url",
    [
        "http://example.com/hook",
        "https://127.0.0.1/hook",
        "https://10.1.2.3/hook",
        "https://169.254.169.254/x",
    ],
)
def test_private_or_plain_http_endpoints_are_refused(caller: Caller, url: str) -> None:
    """create-webhook-endpoint refuses http:// and private, loopback and link-local addresses (400), in words
    about the webhook URL (not an image's)."""
    resp = caller.http.post(
        "/functions/v1/create-webhook-endpoint", json={"url": url, "events": ["job.failed"]}
    )
    assert resp.status_code == 400 and resp.json()["error"]["details"]["field"] == "url"
    assert resp.json()["error"]["message"].startswith("The webhook URL ")


def test_the_retry_schedule_backs_off_for_about_a_day() -> None:
    """Retries wait longer each time, honour a longer Retry-After, and stop after about 24 hours."""
    delays = [delivery.retry_delay(n) for n in range(1, len(delivery.RETRY_SCHEDULE_S) + 1)]
    assert all(d is not None for d in delays) and delivery.retry_delay(len(delays) + 1) is None
    total = sum(delivery.RETRY_SCHEDULE_S)
    assert 20 * 3600 < total < 26 * 3600
    assert delivery.retry_delay(1, retry_after=120) == 120


@pytest.fixture
def sender(db: Database) -> Iterator[WebhookSender]:
    """A listening sender whose own schedule would wait an hour: anything it sends sooner came from a wake-up or
    a retry falling due. Set-up: earlier tests' pending deliveries are ended so that none of them wakes it."""
    end_pending_deliveries(db)
    running = WebhookSender(db.url, max_sleep_s=3600)
    running.start()
    yield running
    running.stop()


def test_the_listening_sender_sends_as_the_change_commits_and_retries_when_due(
    caller: Caller, db: Database, receiver: Receiver, sender: WebhookSender
) -> None:
    """With a sender listening (its fallback sleep an hour), a job's failure reaches the receiver without anyone
    calling deliver_due: woken by the change's notification; the 500 it answers is retried when the retry falls
    due (~5 s), and a redelivery asked through the API is sent again the same way."""
    caller.grant(5)
    _endpoint(caller, receiver.url, ["job.failed"])
    receiver.answers.append((500, {}))
    job = debit_job(db, caller.id)
    assert sender.idle.wait(10), "the sender never went to sleep"
    db.call("fail_job", job=job, error="provider said no", kind="provider")
    wait_for(lambda: len(receiver.received) == 1, "the first attempt, woken by the notification", timeout=20)
    wait_for(lambda: len(receiver.received) == 2, "the retry, when it fell due", timeout=30)
    [sent] = _deliveries(caller, job)
    wait_for(lambda: _deliveries(caller, job)[0]["state"] == "delivered", "the delivery recorded delivered")
    assert sender.idle.wait(10), "the sender never went back to sleep"
    again = caller.http.post("/functions/v1/redeliver-webhook", json={"delivery_id": sent["id"]})
    assert again.status_code == 200, again.text
    wait_for(lambda: len(receiver.received) == 3, "the redelivery, woken by its notification", timeout=20)
    ids = {headers["webhook-id"] for headers, _ in receiver.received}
    assert ids == {sent["webhook_id"]}


@pytest.fixture
def hostile() -> Iterator[tuple[str, str, threading.Event]]:
    """Two hostile endpoints on one local server: /endless answers 200 with a body that never ends, /stalled
    waits (before answering 200) until the returned event is set. Yields their URLs and the event."""
    release = threading.Event()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("content-length", 0)))
            if self.path == "/stalled":
                release.wait(60)
                self.send_response(200)
                self.send_header("content-length", "0")
                self.end_headers()
                return
            self.send_response(200)
            self.send_header("transfer-encoding", "chunked")
            self.end_headers()
            chunk = b"x" * 65536
            try:
                for _ in range(100_000):  # 6.5 GB if anyone read it all
                    self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
            except OSError:
                pass  # the sender hung up: what it should do

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    base = f"http://127.0.0.1:{server.server_address[1]}"
    threading.Thread(target=server.serve_forever, daemon=True).start()
    with configured(ALLOW_PRIVATE_WEBHOOK_URLS="true"):
        yield f"{base}/endless", f"{base}/stalled", release
    release.set()
    server.shutdown()
    server.server_close()


def test_a_hostile_endpoint_neither_floods_the_sender_nor_holds_up_other_customers(
    caller: Caller, db: Database, receiver: Receiver, hostile: tuple[str, str, threading.Event]
) -> None:
    """In one batch: an endpoint answering an endless body is recorded delivered without its body being read,
    and while another endpoint stalls, a third customer's endpoint still gets its event (the stalled one is
    released only once that event has arrived, so a one-at-a-time sender could never pass)."""
    endless, stalled, release = hostile
    end_pending_deliveries(db)
    jobs = []
    for url in (stalled, endless, receiver.url):  # queued (and claimed) in this order
        customer = make_caller(str(caller.http.base_url).rstrip("/"))
        customer.grant(5)
        _endpoint(customer, url, ["job.canceled"])
        job = debit_job(db, customer.id)
        db.call("cancel_job", user=customer.id, job=job)
        jobs.append((customer, job))

    arrived_while_stalled: list[bool] = []

    def release_after_the_fast_one() -> None:
        try:
            wait_for(lambda: receiver.received, "the third customer's event while the first one stalls", 20)
            arrived_while_stalled.append(True)
        finally:
            release.set()

    watcher = threading.Thread(target=release_after_the_fast_one)
    watcher.start()
    counts = delivery.deliver_due()
    watcher.join()
    try:
        assert arrived_while_stalled == [True]
        assert counts == {"delivered": 3, "retrying": 0, "failed": 0}
        for customer, job in jobs:
            assert _deliveries(customer, job)[0]["state"] == "delivered"
    finally:
        for customer, _ in jobs:
            customer.http.close()


def test_an_endpoints_health_shows_what_is_pending_failing_and_delivered(
    caller: Caller, db: Database, receiver: Receiver
) -> None:
    """list-webhook-endpoints shows an endpoint's pending delivery and the error standing (a 500) while it fails;
    once the retry goes through, the last delivery time and no error; a delivery failed for good (410) counts in
    failed_last_24h and stands as the last error."""
    caller.grant(10)
    _endpoint(caller, receiver.url, ["job.failed", "job.canceled"])

    def health() -> dict[str, Any]:
        found: dict[str, Any] = caller.http.get("/functions/v1/list-webhook-endpoints").json()["endpoints"][0]
        return found["health"]

    fresh = health()
    assert fresh == {"pending": 0, "failed_last_24h": 0, "last_delivered_at": None, "last_error": None}
    receiver.answers.append((500, {}))
    job = debit_job(db, caller.id)
    db.call("fail_job", job=job, error="x", kind="provider")
    delivery.deliver_due()
    failing = health()
    assert failing["pending"] == 1 and failing["last_delivered_at"] is None
    assert _listed(caller)["failing_since"] is not None
    assert failing["last_error"]["status"] == 500 and failing["last_error"]["state"] == "pending"
    [sent] = _deliveries(caller, job)
    assert failing["last_error"]["delivery_id"] == sent["id"] and failing["last_error"]["at"] is not None
    caller.http.post("/functions/v1/redeliver-webhook", json={"delivery_id": sent["id"]})
    delivery.deliver_due()
    recovered = health()
    assert recovered["pending"] == 0 and recovered["last_error"] is None
    assert _listed(caller)["failing_since"] is None  # a 2xx ends the run of failures
    assert recovered["last_delivered_at"] is not None
    receiver.answers.append((410, {}))
    other = debit_job(db, caller.id)
    db.call("cancel_job", user=caller.id, job=other)
    delivery.deliver_due()
    gone = health()
    assert gone["failed_last_24h"] == 1 and gone["last_error"]["status"] == 410
    assert gone["last_error"]["state"] == "failed"


def test_an_attempt_recorded_as_its_endpoint_is_deleted_never_requeues_it(
    caller: Caller, db: Database, receiver: Receiver
) -> None:
    """A failed attempt recorded at the same moment as the endpoint's deletion (each order, 20 races): the
    delivery always ends failed and the endpoint deleted; nothing is left pending for a disabled endpoint."""
    caller.grant(30)
    end_pending_deliveries(db)
    for _ in range(20):
        endpoint = _endpoint(caller, receiver.url, ["job.canceled"])
        job = debit_job(db, caller.id, cost=1)
        db.call("cancel_job", user=caller.id, job=job)
        (claimed,) = db.call("claim_webhook_deliveries", limit=10, lease_s=120)
        _record_while_deleting(caller, db, claimed["id"], endpoint["id"])
        assert [d["state"] for d in _deliveries(caller, job)] == ["failed"]
    with db.transaction() as tx:
        pending = tx.query(
            "select count(*) from webhook_deliveries d join webhook_endpoints e on e.id = d.endpoint_id"
            " where d.state = 'pending' and e.disabled_at is not null"
        )
    assert pending == [(0,)]


def _record_while_deleting(caller: Caller, db: Database, delivery_id: str, endpoint_id: str) -> None:
    """A failed attempt of ``delivery_id`` recorded while the owner deletes ``endpoint_id``, both let go at once
    (the attempt a random 0-20 ms later, so that each commits first in some of the races)."""
    start = threading.Barrier(2)

    def record() -> None:
        start.wait()
        time.sleep(random.uniform(0, 0.02))  # the HTTP call takes a few ms: either may commit first
        db.call(
            "record_webhook_attempt",
            delivery=delivery_id,
            status=500,
            error="HTTP 500",
            duration_ms=1,
            retry_in_s=5,
            gone=False,
            disable_after_s=432_000,
        )

    def delete() -> None:
        start.wait()
        resp = caller.http.post("/functions/v1/delete-webhook-endpoint", json={"endpoint_id": endpoint_id})
        assert resp.status_code == 200

    threads = [threading.Thread(target=record), threading.Thread(target=delete)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


def test_a_test_event_checks_the_receiver_and_its_secret(
    caller: Caller, other: Caller, db: Database, receiver: Receiver
) -> None:
    """send-test-webhook queues a signed webhook.test event naming the endpoint, whatever events it takes (202;
    logged like any delivery); another user's endpoint is 404 and a disabled one 409, nothing queued."""
    endpoint = _endpoint(caller, receiver.url, ["job.failed"])
    ref = {"endpoint_id": endpoint["id"]}
    end_pending_deliveries(db)
    queued = caller.http.post("/functions/v1/send-test-webhook", json=ref)
    assert queued.status_code == 202 and queued.json()["event_type"] == "webhook.test", queued.text
    assert queued.json()["job_id"] is None and queued.json()["state"] == "pending"
    delivery.deliver_due()
    ((headers, body),) = receiver.received
    event = Webhook(endpoint["secret"]).verify(body, headers)
    assert event["type"] == "webhook.test" and event["data"] == {"endpoint_id": endpoint["id"]}
    assert other.http.post("/functions/v1/send-test-webhook", json=ref).status_code == 404
    caller.http.post("/functions/v1/delete-webhook-endpoint", json=ref)
    refused = caller.http.post("/functions/v1/send-test-webhook", json=ref)
    assert refused.status_code == 409 and refused.json()["error"]["code"] == "endpoint_disabled"
    assert delivery.deliver_due()["delivered"] == 0 and len(receiver.received) == 1
