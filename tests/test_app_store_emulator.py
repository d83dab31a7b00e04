"""The App Store test PKI, signers and API emulator are faithful: Apple's unmodified library accepts them."""

from __future__ import annotations

import asyncio
import base64
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from appstoreserverlibrary.api_client import (
    APIError,
    APIException,
    AppStoreServerAPIClient,
    AsyncAppStoreServerAPIClient,
)
from appstoreserverlibrary.models.ConsumptionRequestReason import ConsumptionRequestReason
from appstoreserverlibrary.models.Environment import Environment
from appstoreserverlibrary.models.InAppOwnershipType import InAppOwnershipType
from appstoreserverlibrary.models.NotificationTypeV2 import NotificationTypeV2
from appstoreserverlibrary.models.RevocationReason import RevocationReason
from appstoreserverlibrary.models.RevocationType import RevocationType
from appstoreserverlibrary.models.TransactionReason import TransactionReason
from appstoreserverlibrary.models.Type import Type
from appstoreserverlibrary.signed_data_verifier import VerificationException, VerificationStatus
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding

from tests.emulators.app_store import (
    AUDIENCE,
    DEFAULT_APP_APPLE_ID,
    DEFAULT_BUNDLE_ID,
    ApiKey,
    AppStoreAPIEmulator,
    AppStorePKI,
    Fault,
    Notification,
    Transaction,
    decode_unverified,
    default_pki,
    deliver_notification,
    now_ms,
    tamper,
)

TOKEN = "7e3fb20b-4cdb-47cc-936d-99d65f608138"


@pytest.fixture
def emu() -> Iterator[AppStoreAPIEmulator]:
    """A running Sandbox App Store Server API emulator."""
    with AppStoreAPIEmulator() as emulator:
        yield emulator


def refused(verify: Any, jws: str) -> VerificationStatus:
    """The library's VerificationException status for ``verify(jws)`` (fails the test if it verifies)."""
    with pytest.raises(VerificationException) as info:
        verify(jws)
    return info.value.status


# ----------------------------------------------------------------------------------------------------
# Signed transactions and notifications
# ----------------------------------------------------------------------------------------------------


def test_signed_transaction_verifies_and_decodes_every_field() -> None:
    """A consumable's JWS verifies against the test root (OCSP off) and decodes to exactly the fields set."""
    pki = default_pki()
    tx = Transaction(
        transaction_id="2000000411047647",
        product_id="com.example.i2v.credits500",
        purchase_date=1698148900000,
        quantity=3,
        app_account_token=TOKEN,
        price=14970,
        app_transaction_id="704289572311258",
    )
    decoded = pki.verifier(Environment.SANDBOX).verify_and_decode_signed_transaction(pki.sign_transaction(tx))
    assert decoded.transactionId == decoded.originalTransactionId == "2000000411047647"
    assert decoded.bundleId == DEFAULT_BUNDLE_ID
    assert decoded.productId == "com.example.i2v.credits500"
    assert decoded.purchaseDate == decoded.originalPurchaseDate == 1698148900000
    assert decoded.signedDate == tx.signed_date
    assert decoded.quantity == 3
    assert decoded.type is Type.CONSUMABLE
    assert uuid.UUID(decoded.appAccountToken or "") == uuid.UUID(TOKEN)
    assert decoded.inAppOwnershipType is InAppOwnershipType.PURCHASED
    assert decoded.environment is Environment.SANDBOX
    assert decoded.transactionReason is TransactionReason.PURCHASE
    assert (decoded.storefront, decoded.storefrontId) == ("USA", "143441")
    assert (decoded.price, decoded.currency) == (14970, "USD")
    assert decoded.appTransactionId == "704289572311258"
    assert decoded.revocationDate is None and decoded.revocationReason is None


def test_production_transaction_verifies_with_a_production_verifier() -> None:
    """A Production JWS verifies with the Production verifier (which requires the app's Apple id)."""
    pki = default_pki()
    tx = Transaction(environment=Environment.PRODUCTION)
    decoded = pki.verifier(Environment.PRODUCTION).verify_and_decode_signed_transaction(
        pki.sign_transaction(tx)
    )
    assert decoded.environment is Environment.PRODUCTION
    assert decoded.transactionId == tx.transaction_id


def test_revoked_transaction_carries_revocation_fields() -> None:
    """``Transaction.revoked()`` yields a JWS whose revocation date, reason, type and percentage decode."""
    pki = default_pki()
    tx = Transaction(signed_date=now_ms() - 60_000)
    revoked = tx.revoked(reason=1, revocation_type="REFUND_PRORATED", percentage=50000, at=tx.signed_date + 1)
    decoded = pki.verifier().verify_and_decode_signed_transaction(pki.sign_transaction(revoked))
    assert decoded.transactionId == tx.transaction_id
    assert decoded.revocationDate == tx.signed_date + 1
    assert decoded.revocationReason is RevocationReason.REFUNDED_DUE_TO_ISSUE
    assert decoded.revocationType is RevocationType.REFUND_PRORATED
    assert decoded.revocationPercentage == 50000
    reinstated = pki.verifier().verify_and_decode_signed_transaction(
        pki.sign_transaction(revoked.reinstated())
    )
    assert reinstated.revocationDate is None and reinstated.revocationType is None


def test_jws_header_is_apples_shape() -> None:
    """The header is ``{"alg": "ES256", "x5c": [leaf, intermediate, root]}``, standard base64 DER, no kid."""
    pki = default_pki()
    header, payload = decode_unverified(pki.sign_transaction(Transaction()))
    assert set(header) == {"alg", "x5c"} and header["alg"] == "ES256"
    ders = [base64.b64decode(c, validate=True) for c in header["x5c"]]
    assert ders == [c.public_bytes(Encoding.DER) for c in (pki.leaf, pki.intermediate, pki.root)]
    assert ders[2] == pki.root_der
    assert payload["type"] == "Consumable"


SANDBOX, PRODUCTION = Environment.SANDBOX, Environment.PRODUCTION
NOTIFICATIONS = [
    pytest.param(
        "CONSUMPTION_REQUEST",
        lambda tx: tx,
        {"consumption_request_reason": "UNINTENDED_PURCHASE"},
        SANDBOX,
        id="consumption-request",
    ),
    pytest.param("REFUND", lambda tx: tx.revoked(), {}, SANDBOX, id="refund"),
    pytest.param("REFUND_REVERSED", lambda tx: tx.reinstated(), {}, SANDBOX, id="refund-reversed"),
    pytest.param(
        "REVOKE", lambda tx: tx.revoked(revocation_type="FAMILY_REVOKE"), {}, PRODUCTION, id="revoke"
    ),
    pytest.param("TEST", None, {}, PRODUCTION, id="test"),
]


@pytest.mark.parametrize(("kind", "make_tx", "extra", "environment"), NOTIFICATIONS)
def test_notification_verifies_and_decodes(
    kind: str, make_tx: Any, extra: dict[str, Any], environment: Environment
) -> None:
    """A V2 ``signedPayload`` verifies and decodes, and its nested ``signedTransactionInfo`` verifies too."""
    pki = default_pki()
    tx = make_tx(Transaction(app_account_token=TOKEN, environment=environment)) if make_tx else None
    note = Notification(kind, transaction=tx, environment=environment, **extra)
    verifier = pki.verifier(environment)
    decoded = verifier.verify_and_decode_notification(pki.sign_notification(note))
    assert decoded.notificationType is NotificationTypeV2(kind)
    assert decoded.rawNotificationType == kind
    assert decoded.notificationUUID == note.notification_uuid
    assert decoded.version == "2.0" and decoded.signedDate == note.signed_date
    assert decoded.subtype is None
    assert decoded.data is not None
    assert decoded.data.bundleId == DEFAULT_BUNDLE_ID
    assert decoded.data.environment is environment
    assert decoded.data.appAppleId == DEFAULT_APP_APPLE_ID
    if kind == "CONSUMPTION_REQUEST":
        assert decoded.data.consumptionRequestReason is ConsumptionRequestReason.UNINTENDED_PURCHASE
    if tx is None:
        assert decoded.data.signedTransactionInfo is None
        return
    inner = verifier.verify_and_decode_signed_transaction(decoded.data.signedTransactionInfo or "")
    assert inner.transactionId == tx.transaction_id and inner.appAccountToken == TOKEN
    assert (inner.revocationDate is not None) == (kind in ("REFUND", "REVOKE"))
    if kind == "REVOKE":
        assert inner.revocationType is RevocationType.FAMILY_REVOKE


def test_unknown_notification_type_is_kept_raw() -> None:
    """A type the library does not know decodes to ``notificationType=None`` with the raw string kept."""
    pki = default_pki()
    decoded = pki.verifier().verify_and_decode_notification(
        pki.sign_notification(Notification("NEW_KIND_2027"))
    )
    assert decoded.notificationType is None and decoded.rawNotificationType == "NEW_KIND_2027"


# ----------------------------------------------------------------------------------------------------
# What the library refuses
# ----------------------------------------------------------------------------------------------------


def test_wrong_bundle_id_is_refused() -> None:
    """Another app's transaction or notification is refused with INVALID_APP_IDENTIFIER."""
    pki = default_pki()
    verifier = pki.verifier()
    other = Transaction(bundle_id="com.example.other")
    status = refused(verifier.verify_and_decode_signed_transaction, pki.sign_transaction(other))
    assert status is VerificationStatus.INVALID_APP_IDENTIFIER
    assert (
        refused(verifier.verify_and_decode_notification, pki.sign_notification(Notification("REFUND", other)))
        is VerificationStatus.INVALID_APP_IDENTIFIER
    )


def test_wrong_app_apple_id_is_refused_in_production_only() -> None:
    """``data.appAppleId`` is checked by a Production verifier and ignored by a Sandbox one."""
    pki = default_pki()
    prod = Notification("TEST", environment=Environment.PRODUCTION, app_apple_id=999)
    status = refused(
        pki.verifier(Environment.PRODUCTION).verify_and_decode_notification, pki.sign_notification(prod)
    )
    assert status is VerificationStatus.INVALID_APP_IDENTIFIER
    sandbox = pki.sign_notification(Notification("TEST", app_apple_id=999))
    assert pki.verifier().verify_and_decode_notification(sandbox).data is not None


def test_wrong_environment_is_refused() -> None:
    """A Sandbox transaction or notification is refused by a Production verifier with INVALID_ENVIRONMENT."""
    pki = default_pki()
    verifier = pki.verifier(Environment.PRODUCTION)
    sandbox_tx = Transaction()
    status = refused(verifier.verify_and_decode_signed_transaction, pki.sign_transaction(sandbox_tx))
    assert status is VerificationStatus.INVALID_ENVIRONMENT
    note = pki.sign_notification(Notification("REFUND", sandbox_tx.revoked()))
    assert refused(verifier.verify_and_decode_notification, note) is VerificationStatus.INVALID_ENVIRONMENT


def test_untrusted_chain_is_refused() -> None:
    """A chain with the same names and extensions but another root key is refused (VERIFICATION_FAILURE)."""
    pki = default_pki()
    impostor = pki.impostor()
    assert impostor.root.subject == pki.root.subject
    tx = Transaction()
    verifier = pki.verifier()
    status = refused(verifier.verify_and_decode_signed_transaction, impostor.sign_transaction(tx))
    assert status is VerificationStatus.VERIFICATION_FAILURE
    note = impostor.sign_notification(Notification("TEST"))
    assert refused(verifier.verify_and_decode_notification, note) is VerificationStatus.VERIFICATION_FAILURE
    assert (
        impostor.verifier().verify_and_decode_signed_transaction(impostor.sign_transaction(tx)).quantity == 1
    )


def test_expired_leaf_is_refused_at_signed_date() -> None:
    """A leaf expired before ``signedDate`` is refused; offline, ``signedDate`` inside its validity passes."""
    pki = default_pki()
    expired = pki.expired_leaf()
    verifier = pki.verifier()
    status = refused(verifier.verify_and_decode_signed_transaction, expired.sign_transaction(Transaction()))
    assert status is VerificationStatus.VERIFICATION_FAILURE
    back_then = Transaction(signed_date=int((datetime.now(UTC) - timedelta(days=30)).timestamp() * 1000))
    assert verifier.verify_and_decode_signed_transaction(expired.sign_transaction(back_then)) is not None


def test_tampered_payload_is_refused() -> None:
    """A payload edited after signing (header and signature kept) is refused with VERIFICATION_FAILURE."""
    pki = default_pki()
    jws = pki.sign_transaction(Transaction(quantity=1))
    verifier = pki.verifier()
    assert verifier.verify_and_decode_signed_transaction(jws).quantity == 1
    status = refused(verifier.verify_and_decode_signed_transaction, tamper(jws, quantity=100))
    assert status is VerificationStatus.VERIFICATION_FAILURE
    note = pki.sign_notification(Notification("REFUND_REVERSED", Transaction()))
    forged = tamper(note, notificationType="REFUND")
    assert refused(verifier.verify_and_decode_notification, forged) is VerificationStatus.VERIFICATION_FAILURE


def test_apple_extensions_are_what_makes_the_chain_pass() -> None:
    """Without the leaf's or the intermediate's Apple OID the same chain is refused (VERIFICATION_FAILURE)."""
    pki = default_pki()
    tx = Transaction()
    no_leaf_oid = pki.with_leaf(leaf_oid=False)
    status = refused(pki.verifier().verify_and_decode_signed_transaction, no_leaf_oid.sign_transaction(tx))
    assert status is VerificationStatus.VERIFICATION_FAILURE
    no_ca_oid = AppStorePKI.create(intermediate_oid=False)
    status = refused(
        no_ca_oid.verifier().verify_and_decode_signed_transaction, no_ca_oid.sign_transaction(tx)
    )
    assert status is VerificationStatus.VERIFICATION_FAILURE


def test_chain_of_two_is_refused() -> None:
    """An ``x5c`` without the root is refused with INVALID_CHAIN_LENGTH."""
    pki = default_pki()
    jws = pki.sign(Transaction().payload(), x5c=pki.x5c[:2])
    status = refused(pki.verifier().verify_and_decode_signed_transaction, jws)
    assert status is VerificationStatus.INVALID_CHAIN_LENGTH


# ----------------------------------------------------------------------------------------------------
# The App Store Server API emulator
# ----------------------------------------------------------------------------------------------------


def test_api_client_fetches_transaction_with_its_own_jwt(emu: AppStoreAPIEmulator) -> None:
    """The library's client, pointed at the emulator, gets a JWS that verifies; its own JWT was checked."""
    tx = Transaction(app_account_token=TOKEN)
    emu.add_transaction(tx)
    client = emu.api_client()
    info = client.get_transaction_info(tx.transaction_id)
    decoded = emu.pki.verifier().verify_and_decode_signed_transaction(info.signedTransactionInfo or "")
    assert decoded.transactionId == tx.transaction_id and decoded.appAccountToken == TOKEN
    (record,) = emu.requests_for(tx.transaction_id)
    assert (record.method, record.path, record.status_code) == (
        "GET",
        f"/inApps/v1/transactions/{tx.transaction_id}",
        200,
    )
    assert record.auth_error is None
    assert record.token_header is not None and record.token_claims is not None
    assert record.token_header["alg"] == "ES256" and record.token_header["kid"] == emu.api_key.key_id
    assert set(record.token_claims) == {"bid", "iss", "aud", "exp"}  # the library sends no iat
    assert record.token_claims["aud"] == AUDIENCE and record.token_claims["bid"] == DEFAULT_BUNDLE_ID
    assert record.token_claims["iss"] == emu.api_key.issuer_id


def test_unknown_transaction_is_404_with_apples_error(emu: AppStoreAPIEmulator) -> None:
    """An unknown id answers 404 ``{"errorCode": 4040010}``, the library's TRANSACTION_ID_NOT_FOUND."""
    with pytest.raises(APIException) as info:
        emu.api_client().get_transaction_info("2000000000000001")
    assert info.value.http_status_code == 404
    assert info.value.api_error is APIError.TRANSACTION_ID_NOT_FOUND
    assert info.value.raw_api_error == 4040010


def test_request_without_token_is_401(emu: AppStoreAPIEmulator) -> None:
    """A request with no bearer token gets 401, even for a known transaction."""
    tx = Transaction()
    emu.add_transaction(tx)
    response = httpx.get(f"{emu.base_url}/inApps/v1/transactions/{tx.transaction_id}")
    assert response.status_code == 401
    assert emu.requests[-1].auth_error == "missing bearer token"


def test_wrongly_signed_token_is_401(emu: AppStoreAPIEmulator) -> None:
    """The library's client with the right key id and issuer but another private key gets 401."""
    tx = Transaction()
    emu.add_transaction(tx)
    forged = ApiKey(emu.api_key.key_id, emu.api_key.issuer_id, ec.generate_private_key(ec.SECP256R1()))
    with pytest.raises(APIException) as info:
        emu.api_client(forged).get_transaction_info(tx.transaction_id)
    assert info.value.http_status_code == 401 and info.value.api_error is None
    assert "InvalidSignatureError" in (emu.requests[-1].auth_error or "")


BAD_TOKENS = [
    pytest.param({"headers": {"kid": "OTHERKEY01"}}, "unknown kid", id="kid"),
    pytest.param({"headers": {"kid": None}}, "unknown kid", id="no-kid"),
    pytest.param({"claims": {"iss": str(uuid.uuid4())}}, "Issuer", id="iss"),
    pytest.param({"claims": {"aud": "appstoreconnect-v2"}}, "Audience", id="aud"),
    pytest.param({"bundle_id": "com.example.other"}, "bid", id="bid"),
    pytest.param({"claims": {"bid": None}}, "MissingRequiredClaim", id="no-bid"),
    pytest.param({"lifetime_s": -10}, "ExpiredSignature", id="expired"),
    pytest.param({"claims": {"exp": None}}, "MissingRequiredClaim", id="no-exp"),
    pytest.param({"lifetime_s": 3700}, "lifetime", id="exp-over-60-min"),
    pytest.param(
        {"claims": {"iat": int(time.time()) - 10, "exp": int(time.time()) + 3595}}, "lifetime", id="iat"
    ),
]


@pytest.mark.parametrize(("token_args", "reason"), BAD_TOKENS)
def test_invalid_jwt_is_401(emu: AppStoreAPIEmulator, token_args: dict[str, Any], reason: str) -> None:
    """A JWT with a wrong kid, iss, aud or bid, missing claims, expired or over 60 minutes long gets 401."""
    tx = Transaction()
    emu.add_transaction(tx)
    url = f"{emu.base_url}/inApps/v1/transactions/{tx.transaction_id}"
    good = httpx.get(url, headers={"Authorization": f"Bearer {emu.api_key.token()}"})
    assert good.status_code == 200
    bad = httpx.get(url, headers={"Authorization": f"Bearer {emu.api_key.token(**token_args)}"})
    assert bad.status_code == 401
    assert reason in (emu.requests[-1].auth_error or "")


def test_token_with_iat_is_accepted(emu: AppStoreAPIEmulator) -> None:
    """A token with ``iat`` (Apple's documented form, header ``typ: JWT``) within 60 minutes is accepted."""
    tx = Transaction()
    emu.add_transaction(tx)
    now = int(time.time())
    token = emu.api_key.token(claims={"iat": now, "exp": now + 3600}, headers={"typ": "JWT"})
    response = httpx.get(
        f"{emu.base_url}/inApps/v1/transactions/{tx.transaction_id}",
        headers={"Authorization": f"Bearer {token}"},
    )
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    assert set(response.json()) == {"signedTransactionInfo"}


def test_emulator_is_one_environments_host() -> None:
    """A Production emulator serves Production transactions to a Production client, refuses Sandbox ones."""
    with AppStoreAPIEmulator(environment=Environment.PRODUCTION) as emu:
        with pytest.raises(ValueError, match="Sandbox"):
            emu.add_transaction(Transaction())
        tx = Transaction(environment=Environment.PRODUCTION)
        emu.add_transaction(tx)
        info = emu.api_client().get_transaction_info(tx.transaction_id)
        verifier = emu.pki.verifier(Environment.PRODUCTION)
        assert verifier.verify_and_decode_signed_transaction(
            info.signedTransactionInfo or ""
        ).environment is (Environment.PRODUCTION)


def test_faults_are_injected(emu: AppStoreAPIEmulator) -> None:
    """Injected 429 and 5xx answers carry Apple's error codes the library maps, then service resumes."""
    tx = Transaction()
    emu.add_transaction(tx)
    client = emu.api_client()
    emu.add_fault(Fault(429))
    with pytest.raises(APIException) as info:
        client.get_transaction_info(tx.transaction_id)
    assert info.value.http_status_code == 429 and info.value.api_error is APIError.RATE_LIMIT_EXCEEDED
    emu.add_fault(Fault(500, error_code=5000001, transaction_id=tx.transaction_id))
    with pytest.raises(APIException) as info:
        client.get_transaction_info(tx.transaction_id)
    assert info.value.api_error is APIError.GENERAL_INTERNAL_RETRYABLE
    emu.add_fault(Fault(503, body=b"<html>unavailable</html>", content_type="text/html"))
    with pytest.raises(APIException) as info:
        client.get_transaction_info(tx.transaction_id)
    assert info.value.http_status_code == 503 and info.value.raw_api_error is None
    assert client.get_transaction_info(tx.transaction_id).signedTransactionInfo is not None
    assert [r.status_code for r in emu.requests] == [429, 500, 503, 200]


def test_async_client_can_be_pointed_at_the_emulator(emu: AppStoreAPIEmulator) -> None:
    """The library's async client, pointed the same way, fetches the transaction too."""
    tx = Transaction()
    emu.add_transaction(tx)

    async def fetch() -> str | None:
        key = emu.api_key
        client = emu.point(
            AsyncAppStoreServerAPIClient(
                key.pem, key.key_id, key.issuer_id, DEFAULT_BUNDLE_ID, Environment.SANDBOX
            )
        )
        try:
            return (await client.get_transaction_info(tx.transaction_id)).signedTransactionInfo
        finally:
            await client.async_close()  # type: ignore[no-untyped-call]  # the library leaves it unannotated

    signed = asyncio.run(fetch())
    assert (
        emu.pki.verifier().verify_and_decode_signed_transaction(signed or "").transactionId
        == tx.transaction_id
    )


def test_client_points_only_at_a_started_emulator() -> None:
    """Pointing a client before the emulator listens fails loudly instead of reaching Apple."""
    emu = AppStoreAPIEmulator()
    key = emu.api_key
    client = AppStoreServerAPIClient(
        key.pem, key.key_id, key.issuer_id, DEFAULT_BUNDLE_ID, Environment.SANDBOX
    )
    with pytest.raises(RuntimeError):
        emu.point(client)


def test_notification_delivery_posts_signed_payload_and_retries(emu: AppStoreAPIEmulator) -> None:
    """``deliver_notification`` POSTs ``{"signedPayload"}`` and repeats it while the receiver fails."""
    signed = emu.pki.sign_notification(Notification("REFUND", Transaction().revoked()))
    emu.sink_status = 500
    responses = deliver_notification(emu.sink_url, signed, attempts=6)
    assert [r.status_code for r in responses] == [500] * 6
    emu.sink_status = 200
    assert [r.status_code for r in deliver_notification(emu.sink_url, signed, attempts=6)] == [200]
    assert len(emu.notifications) == 7
    assert {n.body for n in emu.notifications} == {emu.notifications[0].body}
    received = emu.notifications[-1]
    assert received.json() == {"signedPayload": signed}
    assert received.headers["content-type"] == "application/json"
    decoded = emu.pki.verifier().verify_and_decode_notification(received.signed_payload)
    assert decoded.notificationType is NotificationTypeV2.REFUND
