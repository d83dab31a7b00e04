"""Fixtures and helpers shared by the billing tests: the Stripe emulator wired into the running stack."""

from __future__ import annotations

import os
import uuid
from collections import Counter
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest

from shared.billing import checkout as billing
from shared.db import Database
from shared.settings import get_settings
from tests.conftest import Caller, debit_job
from tests.emulators.stripe import StripeEmulator, deliver

WEBHOOK_PATH = "/functions/v1/stripe-webhook"
CHECKOUT_PATH = "/functions/v1/create-checkout-session"
SUCCESS_URL = "https://app.example.com/billing/success?session_id={CHECKOUT_SESSION_ID}"
CANCEL_URL = "https://app.example.com/billing"
STRIPE_VARS = (
    "STRIPE_SECRET_KEY",
    "STRIPE_WEBHOOK_SECRET",
    "STRIPE_API_BASE",
    "CHECKOUT_SUCCESS_URL",
    "CHECKOUT_CANCEL_URL",
)


@contextmanager
def stripe_settings(**values: str | None) -> Iterator[None]:
    """Set the Stripe variables (lower-case names; missing = unset) for the stack, restoring them afterwards."""
    saved = {name: os.environ.get(name) for name in STRIPE_VARS}
    try:
        for name in STRIPE_VARS:
            _set_env(name, values.get(name.lower()))
        get_settings.cache_clear()
        billing.close()
        yield
    finally:
        billing.close()
        for name, value in saved.items():
            _set_env(name, value)
        get_settings.cache_clear()


def _set_env(name: str, value: str | None) -> None:
    if value is None:
        os.environ.pop(name, None)
    else:
        os.environ[name] = value


@pytest.fixture(scope="module", name="stripe_server")
def stripe_server_fixture() -> Iterator[StripeEmulator]:
    """One Stripe emulator per test module."""
    with StripeEmulator() as emulator:
        yield emulator


@pytest.fixture(name="emu")
def emu_fixture(stripe_server: StripeEmulator, stack: str) -> Iterator[StripeEmulator]:
    """The emulator, emptied, with the stack's Stripe settings pointing at it for this test."""
    stripe_server.reset()
    with stripe_settings(
        stripe_secret_key=stripe_server.api_key,
        stripe_webhook_secret=stripe_server.webhook_secret,
        stripe_api_base=stripe_server.base_url,
        checkout_success_url=SUCCESS_URL,
        checkout_cancel_url=CANCEL_URL,
    ):
        yield stripe_server


@dataclass
class Shop:
    """One buyer of the running stack, the Stripe emulator, and the webhook endpoint."""

    caller: Caller
    emu: StripeEmulator
    db: Database
    base_url: str
    sessions: list[str] = field(default_factory=list)

    def checkout(self, pack_id: str = "pack_500", key: str | None = None) -> httpx.Response:
        """POST create-checkout-session (with an Idempotency-Key when given)."""
        headers = {"Idempotency-Key": key} if key else {}
        return self.caller.http.post(CHECKOUT_PATH, json={"pack_id": pack_id}, headers=headers)

    def start(self, pack_id: str = "pack_500") -> str:
        """Open a Checkout Session for a pack through the API; return its id."""
        resp = self.checkout(pack_id, key=uuid.uuid4().hex)
        assert resp.status_code == 200, resp.text
        session_id: str = resp.json()["session_id"]
        self.sessions.append(session_id)
        return session_id

    def send(
        self, event: Mapping[str, Any] | bytes, *, times: int = 1, concurrent: bool = False
    ) -> list[httpx.Response]:
        """Deliver an event to the stack's webhook, signed like Stripe signs it."""
        url = self.base_url + WEBHOOK_PATH
        return deliver(event, url, self.emu.webhook_secret, times=times, concurrent=concurrent)

    def apply(self, event: Mapping[str, Any]) -> str:
        """Deliver an event once, expect 200, and return the outcome the stack reports."""
        (resp,) = self.send(event)
        assert resp.status_code == 200, resp.text
        outcome: str = resp.json()["outcome"]
        return outcome

    def buy(self, pack_id: str = "pack_500") -> str:
        """Open a session, pay it by card and deliver checkout.session.completed; return the session id."""
        session_id = self.start(pack_id)
        assert self.apply(self.emu.complete_session(session_id)) == "credited"
        return session_id

    def refund(self, session_id: str, amount: int | None = None) -> dict[str, Any]:
        """Refund (part of) the session's charge at Stripe; return the charge.refunded event."""
        return self.emu.refund_charge(self.emu.charge_for_session(session_id)["id"], amount)

    def purchase(self, session_id: str) -> dict[str, Any]:
        """The stored purchase row."""
        row: dict[str, Any] = self.db.call("get_purchase", session_id=session_id)
        return row

    def credits(self) -> dict[str, Any]:
        """GET get-credits with every entry."""
        resp = self.caller.http.get("/functions/v1/get-credits", params={"limit": 200})
        assert resp.status_code == 200, resp.text
        data: dict[str, Any] = resp.json()
        return data

    def spend(self, cost: int) -> None:
        """Debit credits with a job no worker runs (set-up for the debt scenarios)."""
        debit_job(self.db, self.caller.id, cost)

    def check_books(self) -> dict[str, Any]:
        """Balance = sum of the ledger >= 0, and credits granted = credits paid - credits refunded (+ debt)."""
        data = self.credits()
        assert data["balance"] >= 0
        assert data["balance"] == sum(e["delta"] for e in data["entries"])
        assert self.db.call_rows("ledger_mismatches") == []
        assert self.db.call_rows("purchase_mismatches") == []
        kinds: Counter[str] = Counter()
        for entry in data["entries"]:
            kinds[entry["kind"]] += entry["delta"]
        rows = [self.purchase(s) for s in self.sessions]
        paid = sum(r["credits_granted"] for r in rows)
        refunded = sum(r["credits_refunded"] for r in rows)
        net = kinds["purchase"] + kinds["purchase_refund"] + kinds["debt_recovery"]
        assert kinds["purchase"] == paid
        assert net - data["debt"] == paid - refunded
        return data


@pytest.fixture(name="shop")
def shop_fixture(caller: Caller, emu: StripeEmulator, db: Database, stack: str) -> Iterator[Shop]:
    """A fresh buyer; the books are checked after the test, whatever it did."""
    shop = Shop(caller, emu, db, stack)
    yield shop
    shop.check_books()
