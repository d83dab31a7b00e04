"""The Stripe webhook: signatures over the raw body, exactly-once events, refunds in any order, and debt."""

from __future__ import annotations

import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from shared import errors
from shared.db import Database
from tests.billing_support import (
    WEBHOOK_PATH,
    Shop,
    emu_fixture,  # noqa: F401  (fixture)
    shop_fixture,  # noqa: F401  (fixture)
    stripe_server_fixture,  # noqa: F401  (fixture)
)
from tests.conftest import Caller, configured
from tests.emulators.stripe import SignedDelivery, prepare_delivery, send, sign


def _post(shop: Shop, delivery: SignedDelivery) -> httpx.Response:
    return send(delivery, shop.base_url + WEBHOOK_PATH)


def test_same_event_three_times_credits_once(shop: Shop) -> None:
    """An event delivered three times (fresh signatures) is applied once; the others are acknowledged."""
    session_id = shop.start("pack_500")
    answers = shop.send(shop.emu.complete_session(session_id), times=3)
    assert [a.status_code for a in answers] == [200, 200, 200]
    assert [a.json()["outcome"] for a in answers] == ["credited", "duplicate", "duplicate"]
    assert shop.check_books()["balance"] == 500


def test_concurrent_deliveries_of_one_event_credit_once(shop: Shop) -> None:
    """Eight simultaneous deliveries of the same event (real threads) credit the pack exactly once."""
    session_id = shop.start("pack_1200")
    answers = shop.send(shop.emu.complete_session(session_id), times=8, concurrent=True)
    assert all(a.status_code == 200 for a in answers), [a.text for a in answers]
    outcomes = sorted(a.json()["outcome"] for a in answers)
    assert outcomes == ["credited"] + ["duplicate"] * 7
    assert shop.check_books()["balance"] == 1200


def test_refund_before_completion_converges(shop: Shop) -> None:
    """A full refund processed before its purchase leaves the same books as the usual order: nothing kept."""
    session_id = shop.start("pack_500")
    completed = shop.emu.complete_session(session_id)
    refunded = shop.refund(session_id)
    assert shop.apply(refunded) == "refund_pending"
    assert shop.credits()["balance"] == 0
    assert shop.apply(completed) == "credited"
    data = shop.check_books()
    assert (data["balance"], data["debt"]) == (0, 0)
    assert sorted(e["delta"] for e in data["entries"]) == [-500, 500]
    assert shop.purchase(session_id)["status"] == "refunded"


def test_partial_refund_before_completion_converges(shop: Shop) -> None:
    """A partial refund seen first is applied when the purchase is credited, as if it had come second."""
    session_id = shop.start("pack_1200")
    completed = shop.emu.complete_session(session_id)
    shop.apply(shop.refund(session_id, 333))
    shop.apply(completed)
    assert shop.check_books()["balance"] == 1200 - 1200 * 333 // 999
    assert shop.purchase(session_id)["status"] == "partially_refunded"


def test_partial_then_full_refund(shop: Shop) -> None:
    """Credits come back in proportion to the cumulative refund: 30% first, then the rest."""
    session_id = shop.buy("pack_1200")
    assert shop.apply(shop.refund(session_id, 300)) == "refunded"
    assert shop.credits()["balance"] == 1200 - 1200 * 300 // 999
    assert shop.purchase(session_id)["status"] == "partially_refunded"
    assert shop.apply(shop.refund(session_id)) == "refunded"
    data = shop.check_books()
    assert (data["balance"], data["debt"]) == (0, 0)
    refunds = [e for e in data["entries"] if e["kind"] == "purchase_refund"]
    assert sorted(e["delta"] for e in refunds) == [-(1200 - 360), -360]
    assert all("refunded" in e["reason"] and "credits taken back" in e["reason"] for e in refunds)
    purchase = shop.purchase(session_id)
    assert purchase["status"] == "refunded"
    assert (purchase["credits_refunded"], purchase["amount_refunded"]) == (1200, 999)


def test_stale_partial_refund_after_the_full_one_changes_nothing(shop: Shop) -> None:
    """Refund events arriving newest first converge: the older, smaller cumulative amount is ignored."""
    session_id = shop.buy("pack_500")
    partial = shop.refund(session_id, 100)
    full = shop.refund(session_id)
    assert shop.apply(full) == "refunded"
    assert shop.apply(partial) == "refund_already_applied"
    assert shop.check_books()["balance"] == 0


def test_forged_signature_is_refused_without_state_change(shop: Shop) -> None:
    """A body signed with another secret answers 400 invalid_signature and changes nothing."""
    session_id = shop.start("pack_500")
    event = shop.emu.complete_session(session_id)
    resp = _post(shop, prepare_delivery(event, "whsec_attacker"))
    assert resp.status_code == 400, resp.text
    assert resp.json()["error"]["code"] == "invalid_signature"
    assert shop.credits()["balance"] == 0
    assert shop.apply(event) == "credited"  # the event id was not consumed by the forgery


def test_stale_signature_is_refused(shop: Shop) -> None:
    """A correctly signed delivery older than the 300 s tolerance answers 400 and changes nothing."""
    session_id = shop.start("pack_500")
    event = shop.emu.complete_session(session_id)
    resp = _post(shop, prepare_delivery(event, shop.emu.webhook_secret, int(time.time()) - 301))
    assert resp.status_code == 400, resp.text
    assert "tolerance" in resp.json()["error"]["message"]
    assert shop.credits()["balance"] == 0
    assert shop.apply(event) == "credited"


def test_missing_signature_is_refused(shop: Shop) -> None:
    """A delivery without a Stripe-Signature header answers 400 and changes nothing."""
    session_id = shop.start("pack_500")
    event = shop.emu.complete_session(session_id)
    delivery = prepare_delivery(event, shop.emu.webhook_secret)
    headers = {k: v for k, v in delivery.headers.items() if k != "Stripe-Signature"}
    resp = _post(shop, SignedDelivery(delivery.body, headers, delivery.timestamp))
    assert resp.status_code == 400, resp.text
    assert "missing" in resp.json()["error"]["message"]
    assert shop.apply(event) == "credited"


def test_body_changed_by_one_byte_is_refused(shop: Shop) -> None:
    """Changing one byte of a signed body (here 500 credits -> 900) answers 400 and changes nothing."""
    session_id = shop.start("pack_500")
    event = shop.emu.complete_session(session_id)
    delivery = prepare_delivery(event, shop.emu.webhook_secret)
    at = delivery.body.index(b'"credits": "500"') + len(b'"credits": "')
    tampered = delivery.body[:at] + b"9" + delivery.body[at + 1 :]
    assert len(tampered) == len(delivery.body) and tampered != delivery.body
    resp = _post(shop, SignedDelivery(tampered, delivery.headers, delivery.timestamp))
    assert resp.status_code == 400, resp.text
    assert shop.credits()["balance"] == 0
    assert shop.apply(event) == "credited"
    assert shop.check_books()["balance"] == 500


def test_rotated_secrets_any_matching_signature_is_accepted(shop: Shop) -> None:
    """A header carrying an old-secret and a current-secret v1 signature verifies."""
    session_id = shop.start("pack_500")
    event = shop.emu.complete_session(session_id)
    delivery = prepare_delivery(event, shop.emu.webhook_secret)
    header = sign(delivery.body, ["whsec_old_secret", shop.emu.webhook_secret], delivery.timestamp)
    resp = _post(shop, SignedDelivery(delivery.body, {**delivery.headers, "Stripe-Signature": header}, 0))
    assert resp.status_code == 200, resp.text
    assert shop.check_books()["balance"] == 500


def test_refund_beyond_the_balance_becomes_debt(shop: Shop, caller: Caller) -> None:
    """Refunding spent credits leaves balance 0 plus debt, blocks generation (402); the next purchase repays it."""
    first = shop.buy("pack_500")
    shop.spend(120)
    assert shop.apply(shop.refund(first)) == "refunded_with_debt"
    data = shop.check_books()
    assert (data["balance"], data["debt"]) == (0, 120)
    assert shop.purchase(first)["debt_incurred"] == 120
    refund_entry = next(e for e in data["entries"] if e["kind"] == "purchase_refund")
    assert refund_entry["delta"] == -380 and "120 owed as debt" in refund_entry["reason"]

    blocked = caller.generate(
        model_id="local-motion", prompt="zoom in", image_url=caller.upload(), settings={"duration": 2}
    )
    assert blocked.status_code == 402, blocked.text
    assert blocked.json()["error"]["details"]["debt"] == 120

    shop.buy("pack_500")
    data = shop.check_books()
    assert (data["balance"], data["debt"]) == (380, 0)
    recovery = next(e for e in data["entries"] if e["kind"] == "debt_recovery")
    assert recovery["delta"] == -120


def test_grant_pays_the_debt_first(shop: Shop, caller: Caller) -> None:
    """An operator grant to an indebted account repays the debt before it adds to the balance."""
    session_id = shop.buy("pack_500")
    shop.spend(500)
    shop.apply(shop.refund(session_id))
    assert shop.credits()["debt"] == 500
    caller.grant(200)
    data = shop.check_books()
    assert (data["balance"], data["debt"]) == (0, 300)
    caller.grant(450)
    data = shop.check_books()
    assert (data["balance"], data["debt"]) == (150, 0)


def test_completion_and_refund_delivered_together_converge(shop: Shop) -> None:
    """A completion and its refund delivered at the same moment, in threads, end with nothing kept."""
    session_id = shop.start("pack_500")
    completed = shop.emu.complete_session(session_id)
    refunded = shop.refund(session_id)
    with ThreadPoolExecutor(max_workers=2) as pool:
        answers = list(pool.map(shop.send, [completed, refunded]))
    assert all(a.status_code == 200 for (a,) in answers)
    data = shop.check_books()
    assert (data["balance"], data["debt"]) == (0, 0)
    assert shop.purchase(session_id)["status"] == "refunded"


def test_unknown_event_type_is_acknowledged(shop: Shop) -> None:
    """A verified event of a type we do not handle answers 2xx and changes nothing."""
    event = {
        "id": f"evt_{uuid.uuid4().hex[:24]}",
        "object": "event",
        "api_version": shop.emu.api_version,
        "created": int(time.time()),
        "data": {"object": {"id": "cus_123", "object": "customer"}},
        "livemode": False,
        "pending_webhooks": 1,
        "request": {"id": None, "idempotency_key": None},
        "type": "customer.created",
    }
    assert shop.apply(event) == "ignored"
    assert shop.check_books()["balance"] == 0


def test_signed_body_that_is_not_an_event_is_400(shop: Shop) -> None:
    """A correctly signed body that is not a Stripe event answers 400."""
    resp = _post(shop, prepare_delivery(b"not json at all", shop.emu.webhook_secret))
    assert resp.status_code == 400, resp.text
    assert resp.json()["error"]["code"] == "bad_request"


def test_old_event_ids_are_purged_and_recent_ones_still_deduplicate(shop: Shop, db: Database) -> None:
    """purge_stripe_events drops ids older than 35 days and keeps newer ones, which still answer duplicate."""
    now = int(time.time())
    old, recent = f"evt_old_{uuid.uuid4().hex}", f"evt_new_{uuid.uuid4().hex}"
    for event_id, created in ((old, now - 40 * 86400), (recent, now - 20 * 86400)):
        outcome = db.call(
            "apply_stripe_event", event_id=event_id, type="customer.created", created=created, data={}
        )
        assert outcome["outcome"] == "ignored"
    assert db.call("purge_stripe_events") >= 1
    again_old = db.call("apply_stripe_event", event_id=old, type="customer.created", created=now, data={})
    again_recent = db.call(
        "apply_stripe_event", event_id=recent, type="customer.created", created=now, data={}
    )
    assert again_old["outcome"] == "ignored"  # forgotten: applied again, and an ignored type changes nothing
    assert again_recent["outcome"] == "duplicate"


def test_purge_refuses_a_window_shorter_than_stripes_retention(db: Database) -> None:
    """Keeping fewer than 30 days could forget ids Stripe may still deliver: the procedure refuses."""
    with pytest.raises(errors.BadRequest):
        db.call("purge_stripe_events", keep_days=3)


def test_bad_signatures_answer_one_code_for_every_provider(stack: str) -> None:
    """A bad fal signature and a bad Stripe signature answer the same status and error code."""
    with configured(STRIPE_WEBHOOK_SECRET="whsec_test_secret"):
        stripe_resp = httpx.post(
            f"{stack}/functions/v1/stripe-webhook", content=b"{}", headers={"Stripe-Signature": "t=1,v1=00"}
        )
    fal_resp = httpx.post(
        f"{stack}/functions/v1/fal-webhook",
        content=b"{}",
        headers={"X-Fal-Webhook-Signature": "00", "X-Fal-Webhook-Timestamp": "1"},
    )
    codes = {(r.status_code, r.json()["error"]["code"]) for r in (stripe_resp, fal_resp)}
    assert codes == {(400, "invalid_signature")}
