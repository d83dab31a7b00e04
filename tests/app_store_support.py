"""Fixtures and helpers of the App Store purchase tests: the stack configured to trust the test PKI's root."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import httpx
import pytest

from shared.db import Database
from shared.settings import get_settings
from tests.conftest import Caller
from tests.emulators.app_store import (
    DEFAULT_APP_APPLE_ID,
    DEFAULT_BUNDLE_ID,
    DEFAULT_PRODUCT_ID,
    AppStorePKI,
    Notification,
    Transaction,
    default_pki,
    notification_body,
)

REDEEM_PATH = "/functions/v1/redeem-app-store-transaction"
NOTIFY_PATH = "/functions/v1/app-store-notification"
BIG_PRODUCT_ID = "com.example.i2v.credits500"
PACKS = f"{DEFAULT_PRODUCT_ID}=100,{BIG_PRODUCT_ID}=550"
APPLE_VARS = (
    "APPLE_BUNDLE_ID",
    "APPLE_APP_ID",
    "APPLE_ENVIRONMENT",
    "APPLE_ROOT_CERTS",
    "APPLE_ONLINE_CHECKS",
    "APPLE_ACCEPT_SANDBOX",
    "APP_STORE_PACKS",
    "APPLE_ISSUER_ID",
    "APPLE_KEY_ID",
    "APPLE_PRIVATE_KEY",
    "APP_STORE_API_URL",
)


@contextmanager
def apple_settings(**values: str | None) -> Iterator[None]:
    """Set the App Store variables (lower-case names; missing = unset) for the stack, restoring them afterwards."""
    saved = {name: os.environ.get(name) for name in APPLE_VARS}
    try:
        for name in APPLE_VARS:
            _set_env(name, values.get(name.lower()))
        get_settings.cache_clear()
        yield
    finally:
        for name, value in saved.items():
            _set_env(name, value)
        get_settings.cache_clear()


def _set_env(name: str, value: str | None) -> None:
    if value is None:
        os.environ.pop(name, None)
    else:
        os.environ[name] = value


@pytest.fixture(scope="session", name="root_cert_file")
def root_cert_fixture(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The test PKI's root certificate as a DER file (what APPLE_ROOT_CERTS names)."""
    path = tmp_path_factory.mktemp("apple") / "test-root.der"
    path.write_bytes(default_pki().root_der)
    return path


def base_settings(root: Path, **overrides: str | None) -> dict[str, str | None]:
    """A Sandbox server trusting the test root, OCSP off, selling two products; ``overrides`` replace values."""
    values: dict[str, str | None] = {
        "apple_bundle_id": DEFAULT_BUNDLE_ID,
        "apple_app_id": str(DEFAULT_APP_APPLE_ID),
        "apple_environment": "Sandbox",
        "apple_root_certs": str(root),
        "apple_online_checks": "false",
        "app_store_packs": PACKS,
    }
    values.update(overrides)
    return values


@pytest.fixture(name="store")
def store_fixture(root_cert_file: Path, stack: str) -> Iterator[None]:
    """The stack configured as a Sandbox App Store server for this test."""
    with apple_settings(**base_settings(root_cert_file)):
        yield


@dataclass
class Buyer:
    """One user of the running stack buying in the iOS app; the App Store is the test PKI."""

    caller: Caller
    db: Database
    base_url: str
    pki: AppStorePKI
    clock: int = 0

    def transaction(self, **fields: Any) -> Transaction:
        """A consumable purchase made for this user (appAccountToken = the user id)."""
        fields.setdefault("app_account_token", str(self.caller.id))
        return Transaction(**fields)

    def redeem(self, tx: Transaction | None = None, *, jws: str | None = None) -> httpx.Response:
        """POST redeem-app-store-transaction with the transaction's JWS (signed by the test PKI unless given)."""
        signed = jws if jws is not None else self.pki.sign_transaction(tx or self.transaction())
        return self.caller.http.post(REDEEM_PATH, json={"signed_transaction": signed})

    def buy(self, tx: Transaction) -> dict[str, Any]:
        """Redeem ``tx``, expect 200, and return the answer."""
        resp = self.redeem(tx)
        assert resp.status_code == 200, resp.text
        body: dict[str, Any] = resp.json()
        return body

    def notification(self, kind: str, tx: Transaction, *, later_s: int = 60, **fields: Any) -> Notification:
        """A notification about ``tx`` that Apple signed ``later_s`` seconds after the transaction; its
        transaction carries the revocation fields for REFUND and REVOKE, none for REFUND_REVERSED."""
        at = tx.signed_date + later_s * 1000
        if kind in ("REFUND", "REVOKE"):
            inner = tx.revoked(at=at)
        elif kind == "REFUND_REVERSED":
            inner = replace(tx.reinstated(), signed_date=at)
        else:
            inner = replace(tx, signed_date=at)
        return Notification(kind, inner, signed_date=at, **fields)

    def notify(self, note: Notification, *, signed: str | None = None) -> httpx.Response:
        """POST app-store-notification as the App Store does (no token)."""
        payload = signed if signed is not None else self.pki.sign_notification(note)
        return httpx.post(
            self.base_url + NOTIFY_PATH,
            content=notification_body(payload),
            headers={"Content-Type": "application/json"},
            timeout=30,
        )

    def apply(self, note: Notification) -> str:
        """Deliver a notification once, expect 200, and return the outcome."""
        resp = self.notify(note)
        assert resp.status_code == 200, resp.text
        outcome: str = resp.json()["outcome"]
        return outcome

    def credits(self) -> dict[str, Any]:
        """GET get-credits with every entry."""
        resp = self.caller.http.get("/functions/v1/get-credits", params={"limit": 200})
        assert resp.status_code == 200, resp.text
        data: dict[str, Any] = resp.json()
        return data

    def stored(self, transaction_id: str) -> dict[str, Any] | None:
        """The stored transaction row (None when unknown)."""
        row: dict[str, Any] | None = self.db.call("get_app_store_transaction", transaction_id=transaction_id)
        return row

    def check_books(self) -> dict[str, Any]:
        """Balance = sum of the ledger >= 0, and the purchase bookkeeping of both stores agrees with the ledger."""
        data = self.credits()
        assert data["balance"] >= 0
        assert data["balance"] == sum(e["delta"] for e in data["entries"])
        assert self.db.call_rows("ledger_mismatches") == []
        assert self.db.call_rows("purchase_mismatches") == []
        return data


@pytest.fixture(name="buyer")
def buyer_fixture(caller: Caller, db: Database, stack: str, store: None) -> Iterator[Buyer]:
    """A fresh buyer on a configured Sandbox App Store server; the books are checked after the test."""
    buyer = Buyer(caller, db, stack, default_pki())
    yield buyer
    buyer.check_books()
