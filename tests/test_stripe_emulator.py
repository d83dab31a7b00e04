"""The Stripe emulator speaks the wire protocol the unmodified stripe-python SDK expects."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import requests
import stripe
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from tests.emulators.stripe import (
    BackgroundServer,
    StripeEmulator,
    StripeEmulatorError,
    deliver,
    prepare_delivery,
    sign,
)

USER_ID = "11111111-2222-3333-4444-555555555555"
SUCCESS_URL = "https://app.example.com/billing/success?session_id={CHECKOUT_SESSION_ID}"
EVENT_KEYS = {
    "id",
    "object",
    "api_version",
    "created",
    "data",
    "livemode",
    "pending_webhooks",
    "request",
    "type",
}

# The reference test vector (checked against stripe-python's WebhookSignature.verify_header).
VECTOR_BODY = b'{"id":"evt_test_1","object":"event","type":"checkout.session.completed"}'
VECTOR_V1 = "ca796b857b81e24d595a4c37abf88d2fafb533a32ede6ce4cfc9b0e892a35b08"
VECTOR_OLD_V1 = "cd5a81daad4d7fc9a7fc9a1f1f401712aec638d1b7710be9a431782bbb148f1b"


def pack_params(**overrides: Any) -> dict[str, Any]:
    """Checkout Session params for the 100-credit pack, as the backend sends them."""
    params: dict[str, Any] = {
        "mode": "payment",
        "line_items": [
            {
                "price_data": {
                    "currency": "usd",
                    "unit_amount": 999,
                    "product_data": {"name": "100 credits"},
                },
                "quantity": 1,
            }
        ],
        "success_url": SUCCESS_URL,
        "cancel_url": "https://app.example.com/billing",
        "client_reference_id": USER_ID,
        "metadata": {"user_id": USER_ID, "pack_id": "pack_100", "credits": "100"},
        "payment_intent_data": {"metadata": {"user_id": USER_ID, "pack_id": "pack_100"}},
    }
    params.update(overrides)
    return params


@pytest.fixture(scope="module")
def server() -> Iterator[StripeEmulator]:
    with StripeEmulator() as emulator:
        yield emulator


@pytest.fixture
def emu(server: StripeEmulator) -> StripeEmulator:
    server.reset()
    server.processing_delay = 0.0
    return server


@pytest.fixture
def http_session() -> Iterator[requests.Session]:
    with requests.Session() as session:
        yield session


@pytest.fixture
def client(emu: StripeEmulator, http_session: requests.Session) -> stripe.StripeClient:
    return stripe.StripeClient(
        emu.api_key,
        base_addresses={"api": emu.base_url},
        http_client=stripe.RequestsClient(session=http_session),
    )


def create_session(client: stripe.StripeClient, key: str = "checkout:p1", **overrides: Any) -> Any:
    return client.v1.checkout.sessions.create(
        params=pack_params(**overrides), options={"idempotency_key": key}
    )


# ------------------------------------------------------------------------------------------ API over HTTP


def test_sdk_creates_and_retrieves_checkout_session(client: stripe.StripeClient, emu: StripeEmulator) -> None:
    """The SDK creates an open, unpaid cs_test_ session with the reference's fields and retrieves it."""
    session = create_session(client)
    assert session.id.startswith("cs_test_")
    assert session.object == "checkout.session"
    assert (session.status, session.payment_status, session.mode) == ("open", "unpaid", "payment")
    assert (session.amount_subtotal, session.amount_total, session.currency) == (999, 999, "usd")
    assert session.client_reference_id == USER_ID
    assert session.metadata.to_dict() == {"user_id": USER_ID, "pack_id": "pack_100", "credits": "100"}
    assert session.success_url == SUCCESS_URL and session.livemode is False
    assert session.url.startswith("https://checkout.stripe.com/c/pay/" + session.id)
    assert session.payment_intent is None
    assert session.expires_at == session.created + 24 * 3600
    assert session.last_response.headers["Request-Id"].startswith("req_")

    fetched = client.v1.checkout.sessions.retrieve(session.id)
    assert fetched.to_dict() == session.to_dict()


def test_requests_arrive_form_encoded_with_bearer_auth(
    client: stripe.StripeClient, emu: StripeEmulator
) -> None:
    """The emulator records the SDK's bracket-notation form body, Bearer key and Stripe-Version."""
    create_session(client, key="checkout:wire")
    (recorded,) = emu.requests_to("POST", "/v1/checkout/sessions")
    assert recorded.headers["authorization"] == f"Bearer {emu.api_key}"
    assert recorded.headers["content-type"] == "application/x-www-form-urlencoded"
    assert recorded.headers["stripe-version"] == stripe.api_version
    assert recorded.idempotency_key == "checkout:wire"
    assert b"line_items[0][price_data][currency]=usd" in recorded.raw_body
    assert b"metadata[pack_id]=pack_100" in recorded.raw_body
    assert recorded.params["line_items"]["0"]["price_data"]["unit_amount"] == "999"
    assert recorded.params["payment_intent_data"]["metadata"]["user_id"] == USER_ID


def test_idempotent_replay_returns_the_same_session(client: stripe.StripeClient, emu: StripeEmulator) -> None:
    """Same Idempotency-Key and params replays the first response instead of creating a second session."""
    first = create_session(client, key="checkout:same")
    second = create_session(client, key="checkout:same")
    assert second.to_dict() == first.to_dict()
    assert second.last_response.headers["Idempotent-Replayed"] == "true"
    assert len(emu.sessions) == 1
    assert [r.replayed for r in emu.requests] == [False, True]
    assert create_session(client, key="checkout:other").id != first.id


def test_key_reuse_with_different_params_raises_idempotency_error(
    client: stripe.StripeClient, emu: StripeEmulator
) -> None:
    """Reusing a key with different params fails with Stripe's 400 idempotency_error."""
    create_session(client, key="checkout:reused")
    with pytest.raises(stripe.IdempotencyError) as info:
        create_session(client, key="checkout:reused", metadata={"user_id": USER_ID, "credits": "500"})
    assert info.value.http_status == 400
    assert info.value.json_body["error"]["type"] == "idempotency_error"
    assert len(emu.sessions) == 1


def test_concurrent_request_with_same_key_gets_409(client: stripe.StripeClient, emu: StripeEmulator) -> None:
    """A request arriving while another with the same key executes is refused with 409 and not saved."""
    emu.processing_delay = 0.3
    outcomes: list[Any] = []

    def attempt() -> None:
        with requests.Session() as session:
            own = stripe.StripeClient(
                emu.api_key,
                base_addresses={"api": emu.base_url},
                http_client=stripe.RequestsClient(session=session),
            )
            try:
                outcomes.append(create_session(own, key="checkout:race").id)
            except stripe.APIError as exc:
                outcomes.append(exc.http_status)

    threads = [threading.Thread(target=attempt) for _ in range(2)]
    for thread in threads:
        thread.start()
        time.sleep(0.05)
    for thread in threads:
        thread.join()
    assert sorted(outcomes, key=lambda o: isinstance(o, str)) == [409, next(iter(emu.sessions))]
    assert len(emu.sessions) == 1


def test_saved_server_error_is_replayed_for_the_same_key(
    client: stripe.StripeClient, emu: StripeEmulator
) -> None:
    """A 500 after execution began is stored under the key and replayed; a new key succeeds."""
    emu.fail_next()
    for _ in range(2):
        with pytest.raises(stripe.APIError) as info:
            create_session(client, key="checkout:boom")
        assert info.value.http_status == 500
    assert [r.replayed for r in emu.requests] == [False, True]
    assert create_session(client, key="checkout:fresh").status == "open"


def test_bad_api_key_raises_authentication_error(emu: StripeEmulator, http_session: requests.Session) -> None:
    """A wrong secret key gets a 401 in Stripe's error envelope; the SDK raises AuthenticationError."""
    bad = stripe.StripeClient(
        "sk_test_wrong_key_0000",
        base_addresses={"api": emu.base_url},
        http_client=stripe.RequestsClient(session=http_session),
    )
    with pytest.raises(stripe.AuthenticationError) as info:
        create_session(bad)
    assert info.value.http_status == 401
    assert info.value.json_body["error"]["type"] == "invalid_request_error"
    assert emu.sessions == {}

    response = httpx.post(f"{emu.base_url}/v1/checkout/sessions", data={"mode": "payment"})
    assert response.status_code == 401
    assert "error" in response.json() and response.headers["request-id"].startswith("req_")


def test_unknown_session_is_a_404_invalid_request_error(client: stripe.StripeClient) -> None:
    """Retrieving an unknown id raises InvalidRequestError(404, resource_missing)."""
    with pytest.raises(stripe.InvalidRequestError) as info:
        client.v1.checkout.sessions.retrieve("cs_test_does_not_exist")
    assert info.value.http_status == 404
    assert info.value.code == "resource_missing"


def test_invalid_params_are_rejected_like_stripe(client: stripe.StripeClient, emu: StripeEmulator) -> None:
    """Unknown params, missing quantity and unknown prices are 400s, and a failed validation saves no key."""
    with pytest.raises(stripe.InvalidRequestError) as info:
        create_session(client, key="checkout:v", bogus="1")
    assert (info.value.code, info.value.param) == ("parameter_unknown", "bogus")
    with pytest.raises(stripe.InvalidRequestError) as info:
        create_session(client, key="checkout:v", line_items=[{"price": "price_missing", "quantity": 1}])
    assert info.value.param == "line_items[0][price]"
    price = emu.add_price(1999, product_name="250 credits")
    session = create_session(client, key="checkout:v", line_items=[{"price": price["id"], "quantity": 2}])
    assert session.amount_total == 3998


# --------------------------------------------------------------------------------- simulations and events


def test_card_payment_completes_session_and_emits_completed_event(
    client: stripe.StripeClient, emu: StripeEmulator
) -> None:
    """complete_session yields a checkout.session.completed snapshot with paid status, PI and charge."""
    session = create_session(client)
    event = emu.complete_session(session.id)
    assert set(event) == EVENT_KEYS
    assert event["id"].startswith("evt_") and event["object"] == "event"
    assert event["type"] == "checkout.session.completed" and event["livemode"] is False
    assert event["api_version"] == stripe.api_version and event["pending_webhooks"] == 1
    assert event["request"] == {"id": None, "idempotency_key": None}
    obj = event["data"]["object"]
    assert (obj["status"], obj["payment_status"], obj["url"]) == ("complete", "paid", None)
    assert obj["payment_intent"].startswith("pi_") and obj["metadata"]["credits"] == "100"
    charge = emu.charge_for_session(session.id)
    assert charge["id"].startswith("ch_") and charge["payment_intent"] == obj["payment_intent"]
    assert charge["metadata"] == {"user_id": USER_ID, "pack_id": "pack_100"}
    assert client.v1.checkout.sessions.retrieve(session.id).payment_status == "paid"
    with pytest.raises(StripeEmulatorError):
        emu.expire_session(session.id)


def test_delayed_payment_settles_or_fails_with_async_events(
    client: stripe.StripeClient, emu: StripeEmulator
) -> None:
    """Delayed methods complete unpaid, then emit async_payment_succeeded or async_payment_failed."""
    ok, ko = create_session(client, key="k-ok"), create_session(client, key="k-ko")
    pending = emu.complete_session_delayed(ok.id)
    assert pending["data"]["object"]["payment_status"] == "unpaid"
    assert pending["data"]["object"]["status"] == "complete"
    settled = emu.succeed_async_payment(ok.id)
    assert settled["type"] == "checkout.session.async_payment_succeeded"
    assert settled["data"]["object"]["payment_status"] == "paid"
    assert pending["data"]["object"]["payment_status"] == "unpaid"  # events are snapshots

    emu.complete_session_delayed(ko.id)
    failed = emu.fail_async_payment(ko.id)
    assert failed["type"] == "checkout.session.async_payment_failed"
    assert failed["data"]["object"]["payment_status"] == "unpaid"
    assert emu.charge_for_session(ko.id)["status"] == "failed"


def test_expiry_by_helper_and_by_api(client: stripe.StripeClient, emu: StripeEmulator) -> None:
    """Expiring sets status expired and url null; the API route's event carries its request id and key."""
    first, second = create_session(client, key="k-a"), create_session(client, key="k-b")
    event = emu.expire_session(first.id)
    assert event["type"] == "checkout.session.expired"
    assert (event["data"]["object"]["status"], event["data"]["object"]["url"]) == ("expired", None)

    expired = client.v1.checkout.sessions.expire(second.id, options={"idempotency_key": "expire:b"})
    assert expired.status == "expired"
    api_event = emu.events[-1]
    assert api_event["request"]["idempotency_key"] == "expire:b"
    assert api_event["request"]["id"] == expired.last_response.headers["Request-Id"]
    with pytest.raises(stripe.InvalidRequestError):
        client.v1.checkout.sessions.expire(second.id)


def test_partial_then_full_refund_is_cumulative(client: stripe.StripeClient, emu: StripeEmulator) -> None:
    """charge.refunded carries cumulative amount_refunded, refunded only when full, and re_ refunds."""
    session = create_session(client)
    emu.complete_session(session.id)
    charge_id = emu.charge_for_session(session.id)["id"]

    partial = emu.refund_charge(charge_id, 300)["data"]["object"]
    assert (partial["object"], partial["amount_refunded"], partial["refunded"]) == ("charge", 300, False)
    rest = emu.refund_charge(charge_id)
    assert rest["type"] == "charge.refunded"
    charge = rest["data"]["object"]
    assert (charge["amount_refunded"], charge["refunded"]) == (999, True)
    assert [r["amount"] for r in charge["refunds"]["data"]] == [699, 300]
    assert all(r["id"].startswith("re_") for r in charge["refunds"]["data"])
    assert client.v1.charges.retrieve(charge_id).amount_refunded == 999
    with pytest.raises(StripeEmulatorError):
        emu.refund_charge(charge_id, 1)


def test_events_are_listed_and_retrievable(client: stripe.StripeClient, emu: StripeEmulator) -> None:
    """GET /v1/events filters by types[] newest first; GET /v1/events/{id} returns the same snapshot."""
    session = create_session(client)
    completed = emu.complete_session(session.id)
    refunded = emu.refund_charge(emu.charge_for_session(session.id)["id"], 100)
    listed = client.v1.events.list(params={"types": ["charge.refunded", "checkout.session.completed"]})
    assert [e.id for e in listed.data] == [refunded["id"], completed["id"]]
    assert client.v1.events.retrieve(completed["id"]).to_dict() == completed


# ---------------------------------------------------------------------------------------------- signatures


def test_reference_signature_vector_reproduces() -> None:
    """sign() reproduces the reference vector, including the two-secret rotation header."""
    assert sign(VECTOR_BODY, "whsec_test_secret", 1700000000) == f"t=1700000000,v1={VECTOR_V1}"
    rotated = sign(VECTOR_BODY, ["whsec_old_secret", "whsec_test_secret"], 1700000000)
    assert rotated == f"t=1700000000,v1={VECTOR_OLD_V1},v1={VECTOR_V1}"
    assert stripe.WebhookSignature.verify_header(VECTOR_BODY, rotated, "whsec_test_secret", tolerance=None)
    event = stripe.Webhook.construct_event(VECTOR_BODY, rotated, "whsec_test_secret", tolerance=0)
    assert event.id == "evt_test_1"


def test_sdk_accepts_events_signed_by_the_emulator(client: stripe.StripeClient, emu: StripeEmulator) -> None:
    """Webhook.construct_event and StripeClient.construct_event accept the emulator's deliveries."""
    session = create_session(client)
    event = emu.complete_session(session.id)
    delivery = prepare_delivery(event, emu.webhook_secret)
    assert delivery.signature.startswith(f"t={delivery.timestamp},v1=")
    parsed = stripe.Webhook.construct_event(delivery.body, delivery.signature, emu.webhook_secret)
    assert (parsed.id, parsed.type) == (event["id"], "checkout.session.completed")
    assert parsed.data.object.id == session.id and parsed.data.object.payment_status == "paid"
    via_client = client.construct_event(delivery.body, delivery.signature, emu.webhook_secret)
    assert via_client.id == event["id"]


def test_sdk_rejects_tampered_stale_forged_and_unsigned_deliveries(emu: StripeEmulator) -> None:
    """A one-byte change, a timestamp past 300 s, a wrong secret or a missing header all fail verification."""
    event = {"id": "evt_1", "object": "event", "type": "charge.refunded", "data": {"object": {"amount": 999}}}
    secret = emu.webhook_secret
    good = prepare_delivery(event, secret)
    stripe.Webhook.construct_event(good.body, good.signature, secret)

    index = good.body.index(b"999")
    tampered = good.body[:index] + b"8" + good.body[index + 1 :]
    assert len(tampered) == len(good.body)
    stale = prepare_delivery(event, secret, timestamp=int(time.time()) - 301)
    recent = prepare_delivery(event, secret, timestamp=int(time.time()) - 250)
    forged = prepare_delivery(event, "whsec_attacker")
    downgraded = sign(good.body, secret, scheme="v0")

    stripe.Webhook.construct_event(recent.body, recent.signature, secret)
    for body, header in [
        (tampered, good.signature),
        (stale.body, stale.signature),
        (forged.body, forged.signature),
        (good.body, None),
        (good.body, ""),
        (good.body, downgraded),
    ]:
        with pytest.raises(stripe.SignatureVerificationError):
            stripe.Webhook.construct_event(body, header, secret)


# ------------------------------------------------------------------------------------------------ delivery


class Receiver:
    """A webhook endpoint that verifies with stripe-python and records what it saw."""

    def __init__(self, secret: str) -> None:
        self.secret = secret
        self.seen: list[tuple[bytes, str]] = []
        self.lock = threading.Lock()
        self.app = Starlette(routes=[Route("/webhooks/stripe", self.handle, methods=["POST"])])

    async def handle(self, request: Request) -> JSONResponse:
        body = await request.body()
        header = request.headers.get("stripe-signature", "")
        with self.lock:
            self.seen.append((body, header))
        try:
            event = stripe.Webhook.construct_event(body, header, self.secret)
        except stripe.SignatureVerificationError:
            return JSONResponse({"error": "bad signature"}, status_code=400)
        return JSONResponse({"received": event.id})


@pytest.fixture
def receiver(emu: StripeEmulator) -> Iterator[tuple[Receiver, str]]:
    endpoint = Receiver(emu.webhook_secret)
    with BackgroundServer(endpoint.app, name="webhook-receiver") as srv:
        yield endpoint, f"{srv.base_url}/webhooks/stripe"


def test_deliver_posts_signed_json_repeatedly(
    client: stripe.StripeClient, emu: StripeEmulator, receiver: tuple[Receiver, str]
) -> None:
    """deliver() POSTs the same body with a valid Stripe-Signature on every redelivery."""
    endpoint, url = receiver
    event = emu.complete_session(create_session(client).id)
    responses = deliver(event, url, emu.webhook_secret, times=3)
    assert [r.status_code for r in responses] == [200, 200, 200]
    assert {r.json()["received"] for r in responses} == {event["id"]}
    assert len({body for body, _ in endpoint.seen}) == 1
    assert json.loads(endpoint.seen[0][0]) == event

    stale = deliver(event, url, emu.webhook_secret, timestamp=int(time.time()) - 3600)
    assert stale[0].status_code == 400


def test_deliver_concurrently(
    client: stripe.StripeClient, emu: StripeEmulator, receiver: tuple[Receiver, str]
) -> None:
    """deliver(concurrent=True) sends every copy at once and returns all responses."""
    endpoint, url = receiver
    event = emu.complete_session(create_session(client).id)
    responses = deliver(event, url, emu.webhook_secret, times=5, concurrent=True)
    assert [r.status_code for r in responses] == [200] * 5
    assert len(endpoint.seen) == 5
