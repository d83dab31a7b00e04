"""App Store purchases: credited once, refunds and reversals once, in any order of arrival, with debt.

Real Postgres and the real app over HTTP; Apple's signed data comes from the test PKI and is verified by the
unmodified app-store-server-library against that PKI's root (APPLE_ROOT_CERTS).
"""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path

import httpx
import pytest
from appstoreserverlibrary.models.Environment import Environment

from tests.app_store_support import (
    BIG_PRODUCT_ID,
    NOTIFY_PATH,
    Buyer,
    apple_settings,
    base_settings,
    buyer_fixture,  # noqa: F401  (fixture)
    root_cert_fixture,  # noqa: F401  (fixture)
    store_fixture,  # noqa: F401  (fixture)
)
from tests.conftest import debit_job
from tests.emulators.app_store import DEFAULT_PRODUCT_ID, Notification, notification_body


def test_purchase_is_credited_once(buyer: Buyer) -> None:
    """A redeemed purchase credits its pack once; redeeming it again answers the same, marked as a replay."""
    tx = buyer.transaction()
    first = buyer.redeem(tx)
    assert first.status_code == 200, first.text
    assert first.json() == {
        "transaction_id": tx.transaction_id,
        "product_id": DEFAULT_PRODUCT_ID,
        "quantity": 1,
        "credits": 100,
        "environment": "Sandbox",
        "sandbox": True,
        "status": "credited",
    }
    assert "idempotent-replayed" not in first.headers
    again = buyer.redeem(tx)
    assert again.status_code == 200 and again.json() == first.json()
    assert again.headers["idempotent-replayed"] == "true"
    data = buyer.check_books()
    assert data["balance"] == 100
    (entry,) = data["entries"]
    assert entry["kind"] == "purchase" and entry["reason"].startswith("App Store purchase (Sandbox)")


def test_quantity_multiplies_the_pack(buyer: Buyer) -> None:
    """A purchase of three packs at once credits three times the pack's credits."""
    body = buyer.buy(buyer.transaction(product_id=BIG_PRODUCT_ID, quantity=3))
    assert (body["quantity"], body["credits"]) == (3, 1650)
    assert buyer.check_books()["balance"] == 1650


def test_ten_concurrent_redeems_credit_once(buyer: Buyer) -> None:
    """The same transaction redeemed ten times at once (real threads) is credited exactly once."""
    jws = buyer.pki.sign_transaction(buyer.transaction())
    with ThreadPoolExecutor(max_workers=10) as pool:
        answers = list(pool.map(lambda _: buyer.redeem(jws=jws), range(10)))
    assert [a.status_code for a in answers] == [200] * 10, [a.text for a in answers]
    assert sum("idempotent-replayed" not in a.headers for a in answers) == 1
    assert {a.json()["status"] for a in answers} == {"credited"}
    data = buyer.check_books()
    assert data["balance"] == 100 and len(data["entries"]) == 1


def test_refund_notification_before_the_redeem_converges(buyer: Buyer) -> None:
    """A refund that arrives before the app redeems the purchase ends as the usual order does: nothing kept."""
    tx = buyer.transaction()
    assert buyer.apply(buyer.notification("REFUND", tx)) == "refund_pending"
    assert buyer.stored(tx.transaction_id)["status"] == "unredeemed"  # type: ignore[index]
    body = buyer.buy(tx)  # the app still holds the JWS signed at purchase, before the refund
    assert body["status"] == "refunded"
    data = buyer.check_books()
    assert (data["balance"], data["debt"]) == (0, 0)
    assert sorted(e["delta"] for e in data["entries"]) == [-100, 100]


def test_refund_after_spending_becomes_debt(buyer: Buyer) -> None:
    """Refunding spent credits leaves balance 0 plus debt (402 on generate); the next purchase repays it."""
    tx = buyer.transaction()
    buyer.buy(tx)
    debit_job(buyer.db, buyer.caller.id, 70)
    assert buyer.apply(buyer.notification("REFUND", tx)) == "refunded_with_debt"
    data = buyer.check_books()
    assert (data["balance"], data["debt"]) == (0, 70)
    refund = next(e for e in data["entries"] if e["kind"] == "purchase_refund")
    assert refund["delta"] == -30 and "70 owed as debt" in refund["reason"]
    assert buyer.stored(tx.transaction_id)["debt_incurred"] == 70  # type: ignore[index]
    blocked = buyer.caller.generate(
        model_id="local-motion", prompt="zoom in", image_url=buyer.caller.upload(), settings={"duration": 2}
    )
    assert blocked.status_code == 402 and blocked.json()["error"]["details"]["debt"] == 70
    buyer.buy(buyer.transaction(product_id=BIG_PRODUCT_ID))
    data = buyer.check_books()
    assert (data["balance"], data["debt"]) == (480, 0)


def test_revoke_takes_the_credits_back_like_a_refund(buyer: Buyer) -> None:
    """A REVOKE notification takes the purchase's credits back once, as a refund does."""
    tx = buyer.transaction()
    buyer.buy(tx)
    revoke = buyer.notification("REVOKE", tx)
    assert buyer.apply(revoke) == "refunded"
    assert buyer.apply(revoke) == "duplicate"
    assert buyer.check_books()["balance"] == 0
    assert buyer.stored(tx.transaction_id)["status"] == "refunded"  # type: ignore[index]


def test_refund_reversed_gives_the_credits_back_once(buyer: Buyer) -> None:
    """REFUND then REFUND_REVERSED gives the credits back once, whether re-sent with the same or a new UUID."""
    tx = buyer.transaction()
    buyer.buy(tx)
    assert buyer.apply(buyer.notification("REFUND", tx, later_s=60)) == "refunded"
    reversed_ = buyer.notification("REFUND_REVERSED", tx, later_s=120)
    assert buyer.apply(reversed_) == "reinstated"
    assert buyer.apply(reversed_) == "duplicate"
    assert buyer.apply(buyer.notification("REFUND_REVERSED", tx, later_s=120)) == "no_change"
    data = buyer.check_books()
    assert data["balance"] == 100
    assert [e["delta"] for e in reversed(data["entries"])] == [100, -100, 100]
    assert buyer.redeem(tx).json()["status"] == "credited"


def test_refund_and_reversal_in_any_order_converge(buyer: Buyer) -> None:
    """A reversal delivered before its refund wins (Apple signed it later): the credits stay, whatever order."""
    tx = buyer.transaction()
    refund = buyer.notification("REFUND", tx, later_s=60)
    reversal = buyer.notification("REFUND_REVERSED", tx, later_s=120)
    assert buyer.apply(reversal) == "not_redeemed"
    buyer.buy(tx)
    assert buyer.apply(refund) == "no_change"
    data = buyer.check_books()
    assert data["balance"] == 100 and [e["delta"] for e in data["entries"]] == [100]


def test_a_stale_transaction_does_not_undo_a_refund(buyer: Buyer) -> None:
    """Redeeming, after the refund, a JWS signed before it (a retry by the app) gives nothing back."""
    tx = buyer.transaction()
    buyer.buy(tx)
    buyer.apply(buyer.notification("REFUND", tx))
    again = buyer.redeem(tx)
    assert again.status_code == 200 and again.json()["status"] == "refunded"
    assert buyer.check_books()["balance"] == 0


def test_redeeming_a_revoked_transaction_credits_nothing_net(buyer: Buyer) -> None:
    """A transaction Apple already marks refunded (revocationDate set) is recorded, credited and taken back."""
    tx = buyer.transaction().revoked()
    assert buyer.buy(tx)["status"] == "refunded"
    data = buyer.check_books()
    assert data["balance"] == 0 and sorted(e["delta"] for e in data["entries"]) == [-100, 100]


def test_test_and_unknown_notifications_answer_200(buyer: Buyer, caplog: pytest.LogCaptureFixture) -> None:
    """TEST answers 200; a type this server does not know answers 200 and is logged with its type."""
    with caplog.at_level(logging.INFO, logger="i2v.billing"):
        assert buyer.apply(Notification("TEST")) == "test"
        unknown = buyer.notify(buyer.notification("NEW_KIND_2027", buyer.transaction()))
        consumption = buyer.notification(
            "CONSUMPTION_REQUEST", buyer.transaction(), consumption_request_reason="UNINTENDED_PURCHASE"
        )
        assert buyer.apply(consumption) == "ignored"
    assert unknown.status_code == 200 and unknown.json()["outcome"] == "ignored"
    assert unknown.json()["type"] == "NEW_KIND_2027"
    ignored = [
        r for r in caplog.records if r.getMessage() == "app store notification ignored: type NEW_KIND_2027"
    ]
    assert len(ignored) == 1 and ignored[0].notification_uuid == unknown.json()["notification_uuid"]
    assert buyer.check_books()["balance"] == 0


def test_production_server_takes_sandbox_purchases_only_when_allowed(
    buyer: Buyer, root_cert_file: Path
) -> None:
    """A Production server credits Sandbox purchases recorded as sandbox (App Review), unless told not to."""
    production = base_settings(root_cert_file, apple_environment="Production")
    tx = buyer.transaction()
    with apple_settings(**production, apple_accept_sandbox="false"):
        refused = buyer.redeem(tx)
    assert (
        refused.status_code == 400 and refused.json()["error"]["details"]["reason"] == "invalid_environment"
    )
    with apple_settings(**production):
        sandbox = buyer.buy(tx)
        live = buyer.buy(buyer.transaction(environment=Environment.PRODUCTION.value))
    assert (sandbox["environment"], sandbox["sandbox"]) == ("Sandbox", True)
    assert (live["environment"], live["sandbox"]) == ("Production", False)
    assert buyer.stored(tx.transaction_id)["environment"] == "Sandbox"  # type: ignore[index]
    reasons = [e["reason"] for e in buyer.check_books()["entries"]]
    assert sum("(Sandbox)" in r for r in reasons) == 1 and len(reasons) == 2


def test_notification_body_is_checked_before_the_signature(stack: str, store: None) -> None:
    """A notification body without signedPayload, or not shaped as a JWS, is a 400 naming the field; a JWS
    shape that does not verify is a 400 app_store_data_refused."""
    resp = httpx.post(stack + NOTIFY_PATH, json={"payload": "x"})
    assert resp.status_code == 400 and resp.json()["error"]["details"]["field"] == "signedPayload"
    not_jws = httpx.post(stack + NOTIFY_PATH, content=notification_body("not a JWS"))
    assert not_jws.status_code == 400 and not_jws.json()["error"]["details"]["field"] == "signedPayload"
    unsigned = httpx.post(stack + NOTIFY_PATH, content=notification_body("a.b.c"))
    assert unsigned.status_code == 400 and unsigned.json()["error"]["code"] == "app_store_data_refused"


def test_sandbox_data_never_touches_a_production_purchase(buyer: Buyer, root_cert_file: Path) -> None:
    """A Sandbox refund for the id of a Production purchase is refused (400) and takes nothing back."""
    production = base_settings(root_cert_file, apple_environment="Production")
    live = buyer.transaction(environment=Environment.PRODUCTION.value)
    with apple_settings(**production):
        buyer.buy(live)
        sandbox_twin = replace(live, environment=Environment.SANDBOX.value)
        resp = buyer.notify(buyer.notification("REFUND", sandbox_twin))
    assert resp.status_code == 400 and resp.json()["error"]["code"] == "bad_request"
    assert buyer.check_books()["balance"] == 100
