"""Buying credits: packs, Checkout Sessions through stripe-python, and purchases credited by webhooks.

Real Postgres and the real app over HTTP; Stripe is the protocol emulator, reached by the unmodified SDK through
STRIPE_API_BASE.
"""

from __future__ import annotations

import threading
import uuid
from concurrent.futures import ThreadPoolExecutor

import httpx

from tests.billing_support import (
    CANCEL_URL,
    CHECKOUT_PATH,
    SUCCESS_URL,
    WEBHOOK_PATH,
    Shop,
    emu_fixture,  # noqa: F401  (fixture)
    shop_fixture,  # noqa: F401  (fixture)
    stripe_server_fixture,  # noqa: F401  (fixture)
    stripe_settings,
)
from tests.conftest import Caller
from tests.emulators.stripe import StripeEmulator


def test_packs_are_listed_cheapest_first(anon: httpx.Client, emu: StripeEmulator) -> None:
    """list-credit-packs needs no token and lists id, name, credits, price and currency, cheapest first."""
    resp = anon.get("/functions/v1/list-credit-packs")
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["purchases_enabled"] is True
    packs = body["packs"]
    assert [p["id"] for p in packs] == ["pack_500", "pack_1200", "pack_6500"]
    assert packs[0] == {
        "id": "pack_500",
        "name": "500 credits",
        "credits": 500,
        "price_cents": 499,
        "currency": "usd",
    }
    assert [p["price_cents"] for p in packs] == sorted(p["price_cents"] for p in packs)


def test_checkout_creates_a_session_and_a_pending_purchase(shop: Shop) -> None:
    """create-checkout-session makes a payment-mode session for the caller and records a pending purchase."""
    resp = shop.checkout("pack_1200", key="buy-1")
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert set(body) == {"checkout_url", "session_id"}
    assert body["checkout_url"].startswith("https://checkout.stripe.com/")
    shop.sessions.append(body["session_id"])
    session = shop.emu.session(body["session_id"])
    uid = str(shop.caller.id)
    assert session["mode"] == "payment" and session["amount_total"] == 999 and session["currency"] == "usd"
    assert session["client_reference_id"] == uid
    assert session["metadata"] == {"user_id": uid, "pack_id": "pack_1200", "credits": "1200"}
    assert (session["success_url"], session["cancel_url"]) == (SUCCESS_URL, CANCEL_URL)
    (request,) = shop.emu.requests_to("POST", "/v1/checkout/sessions")
    assert request.idempotency_key is not None and request.idempotency_key.startswith("i2v-checkout-")
    assert request.params["payment_intent_data"]["metadata"] == {"user_id": uid, "pack_id": "pack_1200"}
    purchase = shop.purchase(body["session_id"])
    assert purchase["status"] == "pending" and purchase["user_id"] == uid
    assert (purchase["credits"], purchase["amount_cents"], purchase["credits_granted"]) == (1200, 999, 0)
    assert shop.credits()["balance"] == 0


def test_same_key_and_body_return_the_same_session(shop: Shop) -> None:
    """A repeated Idempotency-Key with the same body replays the session: one Stripe call, one purchase."""
    first = shop.checkout("pack_500", key="same-key")
    second = shop.checkout("pack_500", key="same-key")
    assert first.status_code == second.status_code == 200
    assert second.json() == first.json()
    assert second.headers.get("idempotent-replayed") == "true"
    assert len(shop.emu.requests_to("POST", "/v1/checkout/sessions")) == 1
    assert len(shop.emu.sessions) == 1
    shop.sessions.append(first.json()["session_id"])


def test_same_key_with_another_pack_is_refused(shop: Shop) -> None:
    """The same Idempotency-Key with a different pack answers 422 and creates nothing at Stripe."""
    assert shop.checkout("pack_500", key="k-1").status_code == 200
    resp = shop.checkout("pack_1200", key="k-1")
    assert resp.status_code == 422, resp.text
    assert resp.json()["error"]["code"] == "idempotency_key_reused"
    assert len(shop.emu.sessions) == 1


def test_concurrent_requests_with_one_key_make_one_session(shop: Shop) -> None:
    """Parallel requests sharing a key make one Stripe session: each answers it or 409 in flight."""
    shop.emu.processing_delay = 0.3
    barrier = threading.Barrier(4)

    def attempt(_: int) -> httpx.Response:
        barrier.wait(timeout=10)
        return shop.checkout("pack_500", key="race")

    try:
        with ThreadPoolExecutor(max_workers=4) as pool:
            answers = list(pool.map(attempt, range(4)))
    finally:
        shop.emu.processing_delay = 0.0
    ok = [a for a in answers if a.status_code == 200]
    assert ok and all(a.status_code == 409 for a in answers if a.status_code != 200)
    assert len({a.json()["session_id"] for a in ok}) == 1
    assert len(shop.emu.sessions) == 1


def test_unknown_pack_is_404_naming_the_packs(shop: Shop) -> None:
    """An unknown pack_id answers 404 unknown_credit_pack listing the allowed ids, before calling Stripe."""
    resp = shop.checkout("pack_999", key="k")
    assert resp.status_code == 404, resp.text
    error = resp.json()["error"]
    assert error["code"] == "unknown_credit_pack"
    assert error["details"] == {"field": "pack_id", "allowed": ["pack_1200", "pack_500", "pack_6500"]}
    assert shop.emu.requests == []


def test_without_stripe_settings_purchases_answer_503(caller: Caller, anon: httpx.Client) -> None:
    """With no Stripe key or webhook secret both purchase endpoints answer 503; the rest keeps working."""
    with stripe_settings():
        checkout = caller.http.post(CHECKOUT_PATH, json={"pack_id": "pack_500"})
        assert checkout.status_code == 503, checkout.text
        assert checkout.json()["error"]["code"] == "service_unavailable"
        assert "STRIPE_SECRET_KEY" in checkout.json()["error"]["message"]
        hook = anon.post(WEBHOOK_PATH, content=b"{}", headers={"Stripe-Signature": "t=1,v1=00"})
        assert hook.status_code == 503, hook.text
        assert "STRIPE_WEBHOOK_SECRET" in hook.json()["error"]["message"]
        packs = anon.get("/functions/v1/list-credit-packs")
        assert packs.status_code == 200 and packs.json()["purchases_enabled"] is False
        assert caller.http.get("/functions/v1/get-credits").status_code == 200


def test_rejected_secret_key_is_503(caller: Caller, emu: StripeEmulator) -> None:
    """A secret key Stripe refuses answers 503 service_unavailable naming STRIPE_SECRET_KEY."""
    with stripe_settings(
        stripe_secret_key="sk_test_not_the_right_one",
        stripe_api_base=emu.base_url,
        checkout_success_url=SUCCESS_URL,
        checkout_cancel_url=CANCEL_URL,
    ):
        resp = caller.http.post(CHECKOUT_PATH, json={"pack_id": "pack_500"})
    assert resp.status_code == 503, resp.text
    assert "STRIPE_SECRET_KEY" in resp.json()["error"]["message"]
    assert emu.sessions == {}


def test_stripe_outage_is_503_and_the_key_can_be_retried(shop: Shop) -> None:
    """When Stripe fails, the answer is 503 provider_unavailable and the same key succeeds later."""
    shop.emu.fail_next(2, status=500, saved=False)
    failed = shop.checkout("pack_500", key="retry-me")
    assert failed.status_code == 503, failed.text
    assert failed.json()["error"]["code"] == "provider_unavailable"
    retried = shop.checkout("pack_500", key="retry-me")
    assert retried.status_code == 200, retried.text
    shop.sessions.append(retried.json()["session_id"])
    assert len(shop.emu.sessions) == 1


def test_paid_card_purchase_credits_the_pack(shop: Shop) -> None:
    """checkout.session.completed with payment_status paid credits the pack once and shows it in get-credits."""
    session_id = shop.buy("pack_500")
    data = shop.check_books()
    assert data["balance"] == 500 and data["debt"] == 0
    (entry,) = data["entries"]
    assert entry["kind"] == "purchase" and entry["delta"] == 500
    assert "pack_500" in entry["reason"] and "4.99 USD" in entry["reason"]
    purchase = shop.purchase(session_id)
    assert purchase["status"] == "paid" and purchase["credits_granted"] == 500
    assert purchase["payment_intent"] == shop.emu.session(session_id)["payment_intent"]


def test_delayed_payment_credits_when_it_succeeds(shop: Shop) -> None:
    """A delayed payment credits nothing on completion and the pack once it settles."""
    session_id = shop.start("pack_500")
    assert shop.apply(shop.emu.complete_session_delayed(session_id)) == "processing"
    assert shop.credits()["balance"] == 0
    assert shop.purchase(session_id)["status"] == "processing"
    assert shop.apply(shop.emu.succeed_async_payment(session_id)) == "credited"
    assert shop.check_books()["balance"] == 500
    assert shop.purchase(session_id)["status"] == "paid"


def test_delayed_payment_that_fails_credits_nothing(shop: Shop) -> None:
    """A delayed payment that fails marks the purchase failed and credits nothing."""
    session_id = shop.start("pack_500")
    shop.apply(shop.emu.complete_session_delayed(session_id))
    assert shop.apply(shop.emu.fail_async_payment(session_id)) == "failed"
    assert shop.check_books()["balance"] == 0
    assert shop.purchase(session_id)["status"] == "failed"


def test_expired_session_is_abandoned(shop: Shop) -> None:
    """checkout.session.expired marks the pending purchase abandoned; nothing is credited."""
    session_id = shop.start("pack_500")
    assert shop.apply(shop.emu.expire_session(session_id)) == "abandoned"
    assert shop.purchase(session_id)["status"] == "abandoned"
    assert shop.check_books()["balance"] == 0


def test_checkout_needs_a_token(anon: httpx.Client, emu: StripeEmulator) -> None:
    """create-checkout-session without a bearer token answers 401 and calls nothing."""
    resp = anon.post(
        CHECKOUT_PATH, json={"pack_id": "pack_500"}, headers={"Idempotency-Key": uuid.uuid4().hex}
    )
    assert resp.status_code == 401, resp.text
    assert emu.requests == []
