"""App Store purchases: nothing is credited or refunded that Apple did not sign for this app, environment and
user; transactions looked up by id through the App Store Server API; 503 when App Store purchases are not set up.

Real Postgres and the real app over HTTP; the unmodified app-store-server-library verifies the test PKI's data and
its client talks to the App Store Server API emulator over HTTP.
"""

from __future__ import annotations

import base64
import json
import logging
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from appstoreserverlibrary.models.Environment import Environment

from tests.app_store_support import (
    NOTIFY_PATH,
    REDEEM_PATH,
    Buyer,
    apple_settings,
    base_settings,
    buyer_fixture,  # noqa: F401  (fixture)
    root_cert_fixture,  # noqa: F401  (fixture)
    store_fixture,  # noqa: F401  (fixture)
)
from tests.conftest import Caller
from tests.emulators.app_store import (
    ApiKey,
    AppStoreAPIEmulator,
    Notification,
    Transaction,
    notification_body,
    tamper,
)


def _refused(resp: httpx.Response, status: int, code: str, reason: str | None = None) -> None:
    assert resp.status_code == status, resp.text
    error = resp.json()["error"]
    assert error["code"] == code
    if reason is not None:
        assert error["details"]["reason"] == reason


# ---------------------------------------------------------------------------------------- refused redeems


def test_another_apps_transaction_is_refused(buyer: Buyer) -> None:
    """A transaction signed for another bundle id answers 400 invalid_app_identifier and credits nothing."""
    resp = buyer.redeem(buyer.transaction(bundle_id="com.example.other"))
    _refused(resp, 400, "app_store_data_refused", "invalid_app_identifier")
    assert buyer.check_books()["balance"] == 0


def test_wrong_environment_is_refused(buyer: Buyer) -> None:
    """A Production transaction sent to a Sandbox server answers 400 invalid_environment."""
    resp = buyer.redeem(buyer.transaction(environment=Environment.PRODUCTION.value))
    _refused(resp, 400, "app_store_data_refused", "invalid_environment")
    assert buyer.check_books()["balance"] == 0


def test_another_users_purchase_is_refused(buyer: Buyer, other: Caller) -> None:
    """A transaction whose appAccountToken is another user's answers 403 and stays redeemable by its buyer."""
    tx = Transaction(app_account_token=str(other.id).upper())
    _refused(buyer.redeem(tx), 403, "app_store_account_mismatch", "other_account")
    assert buyer.check_books()["balance"] == 0
    theirs = other.http.post(REDEEM_PATH, json={"signed_transaction": buyer.pki.sign_transaction(tx)})
    assert theirs.status_code == 200 and theirs.json()["credits"] == 100  # the token compares as a UUID
    _refused(buyer.redeem(tx), 403, "app_store_account_mismatch", "other_account")


def test_purchase_without_account_token_is_refused(buyer: Buyer) -> None:
    """A transaction bought without appAccountToken names no account: 403, nothing credited."""
    resp = buyer.redeem(buyer.transaction(app_account_token=None))
    _refused(resp, 403, "app_store_account_mismatch", "missing_app_account_token")
    assert buyer.check_books()["balance"] == 0


def test_untrusted_chain_is_refused(buyer: Buyer) -> None:
    """A JWS signed by a chain with Apple's names but another root answers 400 verification_failure."""
    resp = buyer.redeem(jws=buyer.pki.impostor().sign_transaction(buyer.transaction()))
    _refused(resp, 400, "app_store_data_refused", "verification_failure")
    assert buyer.check_books()["balance"] == 0


def test_expired_leaf_is_refused(buyer: Buyer) -> None:
    """A JWS signed (signedDate) after its leaf certificate expired answers 400 verification_failure."""
    resp = buyer.redeem(jws=buyer.pki.expired_leaf().sign_transaction(buyer.transaction()))
    _refused(resp, 400, "app_store_data_refused", "verification_failure")
    assert buyer.check_books()["balance"] == 0


def test_tampered_payload_is_refused(buyer: Buyer) -> None:
    """A payload edited after signing (a bigger pack, ten of them) answers 400; the genuine one still credits."""
    tx = buyer.transaction()
    jws = buyer.pki.sign_transaction(tx)
    forged = tamper(jws, productId="com.example.i2v.credits500", quantity=10)
    _refused(buyer.redeem(jws=forged), 400, "app_store_data_refused", "verification_failure")
    assert buyer.check_books()["balance"] == 0
    assert buyer.redeem(jws=jws).json()["credits"] == 100


def test_unknown_product_is_refused_with_the_products_sold(buyer: Buyer) -> None:
    """A verified purchase of a product not in APP_STORE_PACKS answers 404 listing the products sold."""
    resp = buyer.redeem(buyer.transaction(product_id="com.example.i2v.sticker"))
    _refused(resp, 404, "unknown_credit_pack")
    assert resp.json()["error"]["details"]["allowed"] == [
        "com.example.i2v.credits100",
        "com.example.i2v.credits500",
    ]
    assert buyer.check_books()["balance"] == 0


def test_body_must_hold_one_of_jws_or_id(buyer: Buyer) -> None:
    """Neither or both of signed_transaction and transaction_id, or an id that is not one, answer 400."""
    for body in ({}, {"signed_transaction": "a.b.c", "transaction_id": "1"}, {"transaction_id": "../1"}):
        resp = buyer.caller.http.post(REDEEM_PATH, json=body)
        assert resp.status_code == 400, (body, resp.text)


# ------------------------------------------------------------------------------------ refused notifications


@pytest.mark.parametrize(
    "make",
    [
        pytest.param(lambda b, n: b.pki.impostor().sign_notification(n), id="untrusted-chain"),
        pytest.param(lambda b, n: b.pki.expired_leaf().sign_notification(n), id="expired-leaf"),
        pytest.param(
            lambda b, n: tamper(b.pki.sign_notification(n), notificationUUID="forged"), id="tampered"
        ),
    ],
)
def test_forged_refund_notification_changes_nothing(buyer: Buyer, make: object) -> None:
    """A refund notification not signed by the trusted chain (or edited) answers 400 and takes nothing back."""
    tx = buyer.transaction()
    buyer.buy(tx)
    note = buyer.notification("REFUND", tx)
    resp = buyer.notify(note, signed=make(buyer, note))  # type: ignore[operator]
    _refused(resp, 400, "app_store_data_refused", "verification_failure")
    assert buyer.check_books()["balance"] == 100
    assert buyer.apply(note) == "refunded"  # the notification UUID was not consumed by the forgery


def test_notification_for_another_app_is_refused(buyer: Buyer) -> None:
    """A notification about another app's transaction answers 400 invalid_app_identifier."""
    note = buyer.notification("REFUND", buyer.transaction(bundle_id="com.example.other"))
    _refused(buyer.notify(note), 400, "app_store_data_refused", "invalid_app_identifier")


# ------------------------------------------------------------------------------------- lookup by transaction id


@pytest.fixture(name="api")
def api_fixture(root_cert_file: Path, stack: str) -> Iterator[AppStoreAPIEmulator]:
    """The App Store Server API emulator (Sandbox), and the stack configured with its key and URL."""
    with AppStoreAPIEmulator() as emu:
        key = emu.api_key
        settings = base_settings(
            root_cert_file,
            apple_issuer_id=key.issuer_id,
            apple_key_id=key.key_id,
            apple_private_key=key.pem.decode().replace("\n", "\\n"),  # as a one-line variable carries it
            app_store_api_url=emu.base_url,
        )
        with apple_settings(**settings):
            yield emu


def test_transaction_id_is_looked_up_with_the_api_key(caller: Caller, api: AppStoreAPIEmulator) -> None:
    """A transaction_id is fetched from the App Store Server API (the library's ES256 JWT accepted), verified and
    credited once."""
    tx = Transaction(app_account_token=str(caller.id))
    api.add_transaction(tx)
    first = caller.http.post(REDEEM_PATH, json={"transaction_id": tx.transaction_id})
    assert first.status_code == 200, first.text
    assert first.json()["credits"] == 100 and first.json()["transaction_id"] == tx.transaction_id
    again = caller.http.post(REDEEM_PATH, json={"transaction_id": tx.transaction_id})
    assert again.json() == first.json() and again.headers["idempotent-replayed"] == "true"
    records = api.requests_for(tx.transaction_id)
    assert [(r.status_code, r.auth_error) for r in records] == [(200, None), (200, None)]
    assert records[0].token_claims is not None and records[0].token_claims["bid"] == tx.bundle_id
    assert caller.balance() == 100


def test_unknown_transaction_id_is_404(caller: Caller, api: AppStoreAPIEmulator) -> None:
    """An id the App Store does not know answers 404 app_store_transaction_not_found."""
    resp = caller.http.post(REDEEM_PATH, json={"transaction_id": "2000000000000001"})
    _refused(resp, 404, "app_store_transaction_not_found")


def test_api_lookup_refused_by_apple_is_503(
    caller: Caller, api: AppStoreAPIEmulator, root_cert_file: Path
) -> None:
    """A key the App Store Server API refuses (401) answers 503, and without a key the lookup names the variable."""
    tx = Transaction(app_account_token=str(caller.id))
    api.add_transaction(tx)
    other_key = ApiKey.generate(key_id=api.api_key.key_id, issuer_id=api.api_key.issuer_id)
    wrong = base_settings(
        root_cert_file,
        apple_issuer_id=api.api_key.issuer_id,
        apple_key_id=api.api_key.key_id,
        apple_private_key=other_key.pem.decode(),
        app_store_api_url=api.base_url,
    )
    with apple_settings(**wrong):
        refused = caller.http.post(REDEEM_PATH, json={"transaction_id": tx.transaction_id})
    _refused(refused, 503, "service_unavailable")
    assert api.requests_for(tx.transaction_id)[-1].status_code == 401
    with apple_settings(**base_settings(root_cert_file)):
        keyless = caller.http.post(REDEEM_PATH, json={"transaction_id": tx.transaction_id})
    _refused(keyless, 503, "service_unavailable")
    assert keyless.json()["error"]["details"]["setting"] == "APPLE_ISSUER_ID"
    assert caller.balance() == 0


# ----------------------------------------------------------------------------------------------- configuration


def test_unconfigured_endpoints_answer_503(
    caller: Caller, stack: str, root_cert_file: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Without App Store settings both endpoints answer 503 naming the variable (a warning, not an error), and
    list-credit-packs says the App Store is not enabled; a bad APP_STORE_PACKS disables it the same way."""
    signed = notification_body("a.b.c")
    with apple_settings(), caplog.at_level(logging.WARNING, logger="i2v.http"):
        redeem = caller.http.post(REDEEM_PATH, json={"signed_transaction": "a.b.c"})
        notify = httpx.post(stack + NOTIFY_PATH, content=signed)
        packs = httpx.get(stack + "/functions/v1/list-credit-packs").json()
    for resp in (redeem, notify):
        _refused(resp, 503, "service_unavailable")
        assert resp.json()["error"]["details"] == {"setting": "APPLE_BUNDLE_ID"}
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert packs["stores"]["app_store"] is False and packs["app_store_products"] == []
    with apple_settings(**base_settings(root_cert_file, app_store_packs="com.example.a=ten")):
        bad = caller.http.post(REDEEM_PATH, json={"signed_transaction": "a.b.c"})
    _refused(bad, 503, "service_unavailable")
    assert bad.json()["error"]["details"] == {"setting": "APP_STORE_PACKS"}
    with apple_settings(**base_settings(root_cert_file, apple_environment="Production", apple_app_id=None)):
        no_app_id = caller.http.post(REDEEM_PATH, json={"signed_transaction": "a.b.c"})
    assert no_app_id.json()["error"]["details"] == {"setting": "APPLE_APP_ID"}


def test_configured_store_is_listed_with_its_products(anon: httpx.Client, store: None) -> None:
    """With the App Store configured, list-credit-packs says so and lists its products and credits."""
    body = anon.get("/functions/v1/list-credit-packs").json()
    assert body["stores"]["app_store"] is True
    assert body["app_store_products"] == [
        {"product_id": "com.example.i2v.credits100", "credits": 100},
        {"product_id": "com.example.i2v.credits500", "credits": 550},
    ]


def test_pem_root_certificate_file_is_accepted(buyer: Buyer, root_cert_file: Path, tmp_path: Path) -> None:
    """APPLE_ROOT_CERTS may name PEM files, several of them, comma-separated."""
    from cryptography.hazmat.primitives.serialization import Encoding

    pem = tmp_path / "roots.pem"
    pem.write_bytes(
        buyer.pki.impostor().root.public_bytes(Encoding.PEM) + buyer.pki.root.public_bytes(Encoding.PEM)
    )
    other = tmp_path / "other.der"
    other.write_bytes(buyer.pki.impostor().root_der)
    with apple_settings(**base_settings(root_cert_file, apple_root_certs=f"{other}, {pem}")):
        assert buyer.buy(buyer.transaction())["credits"] == 100


def _jws(header: object, payload: object | bytes, signature: str = "AAAA") -> str:
    """A compact JWS from raw parts, unsigned (base64url of the JSON, or of the bytes given)."""

    def part(value: object | bytes) -> str:
        raw = value if isinstance(value, bytes) else json.dumps(value).encode()
        return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()

    return f"{part(header)}.{part(payload)}.{signature}"


MALFORMED = [
    pytest.param(lambda pki: _jws({"alg": "ES256"}, b"[" * 6000), id="deeply-nested-payload"),
    pytest.param(lambda pki: _jws({"alg": "ES256"}, b"\xff\xfe not json"), id="payload-not-json"),
    pytest.param(lambda pki: _jws({"alg": "ES256", "x5c": pki.x5c}, [1, 2, 3]), id="payload-a-list"),
    pytest.param(
        lambda pki: _jws({"alg": "none", "x5c": pki.x5c}, {"environment": "Sandbox"}), id="alg-none"
    ),
    pytest.param(
        lambda pki: _jws({"alg": "ES256", "x5c": "abc"}, {"environment": "Sandbox"}), id="x5c-not-a-list"
    ),
    pytest.param(lambda pki: _jws({"alg": "ES256", "x5c": ["!!", "??", "**"]}, {}), id="x5c-not-base64"),
    pytest.param(
        lambda pki: pki.sign({"environment": {"nested": True}, "signedDate": "soon", "data": []}),
        id="odd-types",
    ),
    pytest.param(lambda pki: pki.sign(Transaction().payload(), x5c=pki.x5c[:2]), id="chain-of-two"),
]


@pytest.mark.parametrize("make", MALFORMED)
def test_malformed_signed_data_is_400_on_both_endpoints(buyer: Buyer, make: object) -> None:
    """Malformed or unsigned JWS (deep nesting, not JSON, wrong types, alg none, bad chains) answer 400, never 5xx."""
    jws = make(buyer.pki)  # type: ignore[operator]
    _refused(buyer.redeem(jws=jws), 400, "app_store_data_refused")
    _refused(buyer.notify(Notification("TEST"), signed=jws), 400, "app_store_data_refused")
