"""App Store test infrastructure: a test PKI, Apple-format signed data, and an App Store Server API emulator.

Everything here follows ``shared/reference/app-store.md`` (cited below as "ref §N"); where the reference is
silent, the installed ``app-store-server-library`` (3.1.2) source was read and the comment says so.

Signed data (ref §2, §3, §4)
    ``AppStorePKI`` makes a root CA, an intermediate and a leaf that carry the extensions the library's chain
    verifier checks (``appstoreserverlibrary/signed_data_verifier.py``: ``_ChainVerifier.check_oid`` on the
    verified chain's leaf and intermediate, under ``X509_STRICT``). JWS from it verify with the library's
    ``SignedDataVerifier([pki.root_der], False, environment, bundle_id, app_apple_id)`` run unmodified::

        pki = default_pki()                                   # or AppStorePKI.create()
        tx = Transaction(product_id="com.example.i2v.credits100", app_account_token=str(user_uuid))
        jws = pki.sign_transaction(tx)                        # what the app sends (jwsRepresentation)
        signed_payload = pki.sign_notification(Notification("REFUND", transaction=tx.revoked()))
        body = notification_body(signed_payload)              # b'{"signedPayload": "..."}' (ref §4)
        verifier = pki.verifier(Environment.SANDBOX)          # SignedDataVerifier, OCSP off

    Refused data: ``pki.impostor()`` (same names, other keys: an untrusted chain), ``pki.expired_leaf()``
    (offline checks use the payload's ``signedDate`` as the clock, ref §7, so the default ``signedDate`` = now
    lies after the leaf's notAfter), ``pki.with_leaf(leaf_oid=False)``, ``tamper(jws, quantity=100)``.

App Store Server API (ref §5)
    ``AppStoreAPIEmulator`` is one real HTTP server (Starlette on uvicorn, background thread, 127.0.0.1, free
    port) for ONE environment's host, serving ``GET /inApps/v1/transactions/{transactionId}``. Every request
    must carry ``Authorization: Bearer <ES256 JWT>`` made with the emulator's ``ApiKey`` (else 401)::

        with AppStoreAPIEmulator(environment=Environment.SANDBOX) as emu:
            emu.add_transaction(tx)                           # signed with emu.pki
            client = emu.api_client()                         # the library's AppStoreServerAPIClient
            info = client.get_transaction_info(tx.transaction_id)
            verifier = emu.pki.verifier(Environment.SANDBOX)
            verifier.verify_and_decode_signed_transaction(info.signedTransactionInfo)

    Pointing the library's client at it: ``AppStoreServerAPIClient`` has no base-URL parameter; its
    constructor picks ``https://api.storekit.apple.com`` (PRODUCTION),
    ``https://api.storekit-sandbox.apple.com`` (SANDBOX) or ``https://local-testing-base-url``
    (LOCAL_TESTING) and stores it in ``_base_url``, which ``_get_full_url`` reads on every call (ref §6;
    ``appstoreserverlibrary/api_client.py``). ``emu.point(client)`` sets ``client._base_url = emu.base_url``;
    ``emu.api_client()`` builds a client and points it. ``AsyncAppStoreServerAPIClient`` shares the base
    class and is pointed the same way. LOCAL_TESTING is not used: it only changes the (unreachable) base URL.

HTTP-level misbehaviour is injected with ``Fault``; every request is kept in ``emu.requests`` with the
decoded token header and claims and, when refused, why.
"""

from __future__ import annotations

import asyncio
import base64
import functools
import itertools
import json
import secrets
import threading
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from enum import Enum
from typing import Any, TypeVar

import httpx
import jwt
import pytest
from appstoreserverlibrary.api_client import AppStoreServerAPIClient, AsyncAppStoreServerAPIClient
from appstoreserverlibrary.models.Environment import Environment
from appstoreserverlibrary.signed_data_verifier import SignedDataVerifier
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat
from cryptography.x509.oid import NameOID
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from tests.emulators._server import BackgroundServer

__all__ = [
    "AUDIENCE",
    "DEFAULT_APP_APPLE_ID",
    "DEFAULT_BUNDLE_ID",
    "DEFAULT_PRODUCT_ID",
    "INTERMEDIATE_OID",
    "LEAF_OID",
    "NOTIFICATION_RETRY_DELAYS_H",
    "ApiKey",
    "AppStoreAPIEmulator",
    "AppStorePKI",
    "Fault",
    "Notification",
    "ReceivedNotification",
    "RecordedRequest",
    "Transaction",
    "app_store_emulator",
    "decode_unverified",
    "default_pki",
    "deliver_notification",
    "new_transaction_id",
    "notification_body",
    "now_ms",
    "tamper",
]

DEFAULT_BUNDLE_ID = "com.example.i2v"
DEFAULT_PRODUCT_ID = "com.example.i2v.credits100"
# The App Store's numeric app id (the library's tests use 1234); a Production verifier requires it (ref §6).
DEFAULT_APP_APPLE_ID = 1234

# The extensions the library requires (ref §2; appstoreserverlibrary/signed_data_verifier.py check_oid):
# on the leaf (x5c[0]) and on the intermediate (x5c[1]); Apple's certificates carry them as ASN.1 NULL.
LEAF_OID = "1.2.840.113635.100.6.11.1"
INTERMEDIATE_OID = "1.2.840.113635.100.6.2.1"
_ASN1_NULL = b"\x05\x00"

# The App Store Server API's JWT audience (ref §5).
AUDIENCE = "appstoreconnect-v1"
# "Tokens that expire more than 60 minutes after the time in iat are not valid" (ref §5).
MAX_TOKEN_LIFETIME_S = 3600

# Notification V2 retries after a failed delivery, hours after the previous attempt; production only (ref §4).
NOTIFICATION_RETRY_DELAYS_H = (1, 12, 24, 48, 72)

_Client = TypeVar("_Client", AppStoreServerAPIClient, AsyncAppStoreServerAPIClient)

TRANSACTION_PATH = "/inApps/v1/transactions/{transaction_id}"
NOTIFICATION_SINK_PATH = "/_sink/notifications"

# Error codes of the API (ref §5; APIError in appstoreserverlibrary/api_client.py).
INVALID_TRANSACTION_ID = 4000006
TRANSACTION_ID_NOT_FOUND = 4040010
RATE_LIMIT_EXCEEDED = 4290000
GENERAL_INTERNAL = 5000000
GENERAL_INTERNAL_RETRYABLE = 5000001
# The reference gives only the body's shape {"errorCode", "errorMessage"}; these texts are placeholders
# (nothing may depend on them: the library keeps errorMessage as text and decides on errorCode).
_ERROR_MESSAGES = {
    INVALID_TRANSACTION_ID: "Invalid transaction id.",
    TRANSACTION_ID_NOT_FOUND: "Transaction id not found.",
    RATE_LIMIT_EXCEEDED: "Rate limit exceeded.",
    GENERAL_INTERNAL: "An unknown error occurred.",
    GENERAL_INTERNAL_RETRYABLE: "An unknown error occurred. Please try again.",
}

_EPOCH_START = datetime(2020, 1, 1, tzinfo=UTC)
_CA_END = datetime(2045, 1, 1, tzinfo=UTC)
_LEAF_END = datetime(2040, 1, 1, tzinfo=UTC)


def now_ms() -> int:
    """The current time in Unix milliseconds (how App Store payloads carry dates, ref §3)."""
    return time.time_ns() // 1_000_000


_ids = itertools.count(2_000_000_000_000_000 + secrets.randbelow(1_000_000_000) * 1000)


def new_transaction_id() -> str:
    """A fresh transaction id shaped like Apple's (digits; ref §3 says to treat them as opaque strings)."""
    return str(next(_ids))


def _text(value: Any) -> Any:
    """An enum member as its wire value (``str(Environment.SANDBOX)`` is not ``"Sandbox"``)."""
    return value.value if isinstance(value, Enum) else value


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _b64url_decode(part: str) -> bytes:
    return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))


# ----------------------------------------------------------------------------------------------------
# The test PKI
# ----------------------------------------------------------------------------------------------------


def _name(common_name: str, unit: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
            x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, unit),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "i2v Tests"),
            x509.NameAttribute(NameOID.COUNTRY_NAME, "US"),
        ]
    )


def _certificate(
    *,
    subject: x509.Name,
    key: ec.EllipticCurvePrivateKey,
    issuer: x509.Name,
    issuer_key: ec.EllipticCurvePrivateKey,
    not_before: datetime,
    not_after: datetime,
    ca: bool,
    path_length: int | None,
    apple_oid: str | None,
) -> x509.Certificate:
    """One certificate with what X509_STRICT and the library need (ref §7: SKI and AKI on all three)."""
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=ca, path_length=path_length), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=not ca,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=ca,
                crl_sign=ca,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()), critical=False
        )
    )
    if apple_oid is not None:
        builder = builder.add_extension(
            x509.UnrecognizedExtension(x509.ObjectIdentifier(apple_oid), _ASN1_NULL), critical=False
        )
    # Apple's root and WWDR intermediate are P-384 (ecdsa-with-SHA384); the leaf is P-256 (ES256) (ref §2).
    digest = hashes.SHA384() if isinstance(issuer_key.curve, ec.SECP384R1) else hashes.SHA256()
    return builder.sign(issuer_key, digest)


def _der(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(Encoding.DER)


@dataclass(frozen=True)
class AppStorePKI:
    """A root CA, an intermediate and a signing leaf shaped like Apple's (ref §2), and the JWS they sign.

    Only ``root_der`` goes to ``SignedDataVerifier``; ``x5c[2]`` is ignored by the library (the anchor is the
    verifier's root list), so JWS made by another ``AppStorePKI`` are untrusted.
    """

    root_key: ec.EllipticCurvePrivateKey
    root: x509.Certificate
    intermediate_key: ec.EllipticCurvePrivateKey
    intermediate: x509.Certificate
    leaf_key: ec.EllipticCurvePrivateKey
    leaf: x509.Certificate

    @classmethod
    def create(
        cls,
        *,
        leaf_not_before: datetime = _EPOCH_START,
        leaf_not_after: datetime = _LEAF_END,
        leaf_oid: bool = True,
        intermediate_oid: bool = True,
        label: str = "i2v Test",
    ) -> AppStorePKI:
        """A new chain. CA validity is 2020 → 2045 so that payloads with past ``signedDate`` still verify."""
        root_key = ec.generate_private_key(ec.SECP384R1())
        root_name = _name(f"{label} Root CA - G3", "Test Certification Authority")
        root = _certificate(
            subject=root_name,
            key=root_key,
            issuer=root_name,
            issuer_key=root_key,
            not_before=_EPOCH_START,
            not_after=_CA_END,
            ca=True,
            path_length=None,
            apple_oid=None,
        )
        intermediate_key = ec.generate_private_key(ec.SECP384R1())
        intermediate_name = _name(f"{label} Worldwide Developer Relations Certification Authority", "G6")
        intermediate = _certificate(
            subject=intermediate_name,
            key=intermediate_key,
            issuer=root_name,
            issuer_key=root_key,
            not_before=_EPOCH_START,
            not_after=_CA_END,
            ca=True,
            path_length=0,
            apple_oid=INTERMEDIATE_OID if intermediate_oid else None,
        )
        pki = cls(root_key, root, intermediate_key, intermediate, root_key, root)
        return pki.with_leaf(not_before=leaf_not_before, not_after=leaf_not_after, leaf_oid=leaf_oid)

    def with_leaf(
        self,
        *,
        not_before: datetime = _EPOCH_START,
        not_after: datetime = _LEAF_END,
        leaf_oid: bool = True,
    ) -> AppStorePKI:
        """The same root and intermediate with a new P-256 leaf (its validity and Apple OID as given)."""
        leaf_key = ec.generate_private_key(ec.SECP256R1())
        unit = "Worldwide Developer Relations"
        leaf = _certificate(
            subject=_name("Test ECC Mac App Store and iTunes Store Receipt Signing", unit),
            key=leaf_key,
            issuer=self.intermediate.subject,
            issuer_key=self.intermediate_key,
            not_before=not_before,
            not_after=not_after,
            ca=False,
            path_length=None,
            apple_oid=LEAF_OID if leaf_oid else None,
        )
        return replace(self, leaf_key=leaf_key, leaf=leaf)

    def expired_leaf(self, *, expired_at: datetime | None = None) -> AppStorePKI:
        """A leaf that expired at ``expired_at`` (default: a day ago), valid for two years before that.

        Offline verification uses the payload's ``signedDate`` as the clock (ref §7): JWS from this PKI are
        refused only when their ``signedDate`` lies after ``expired_at``, as the default (now) does.
        """
        end = expired_at or datetime.now(UTC) - timedelta(days=1)
        return self.with_leaf(not_before=end - timedelta(days=730), not_after=end)

    def impostor(self) -> AppStorePKI:
        """A chain with the same names and extensions but its own keys: untrusted by this PKI's root."""
        label = self.root.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value
        assert isinstance(label, str)
        return AppStorePKI.create(label=label.removesuffix(" Root CA - G3"))

    @property
    def root_der(self) -> bytes:
        """The root certificate, DER: what ``SignedDataVerifier(root_certificates=[...])`` takes (ref §6)."""
        return _der(self.root)

    @property
    def x5c(self) -> list[str]:
        """``[leaf, intermediate, root]``, each standard base64 of the DER (ref §2: not url-safe)."""
        return [base64.b64encode(_der(c)).decode() for c in (self.leaf, self.intermediate, self.root)]

    def sign(
        self,
        payload: Mapping[str, Any],
        *,
        x5c: Sequence[str] | None = None,
        headers: Mapping[str, Any] | None = None,
    ) -> str:
        """A compact JWS of ``payload``: header ``{"alg": "ES256", "x5c": [...]}``, signed by the leaf.

        The reference lists ``alg`` and ``x5c`` as the header (ref §2: no ``kid``) and the library reads only
        those, so no ``typ`` is added. ``x5c`` overrides the chain (e.g. two certificates); ``headers`` add or
        replace header fields (``{"alg": ...}`` changes the algorithm PyJWT signs with).
        """
        header: dict[str, Any] = {"typ": None, "x5c": list(self.x5c if x5c is None else x5c)}
        header.update(headers or {})
        return jwt.encode(dict(payload), self.leaf_key, algorithm="ES256", headers=header)

    def sign_transaction(self, transaction: Transaction) -> str:
        """A signed transaction (``JWSTransaction``, what the app's ``jwsRepresentation`` is)."""
        return self.sign(transaction.payload())

    def sign_notification(self, notification: Notification) -> str:
        """A notification V2 ``signedPayload``; its transaction, if any, is signed by this PKI too."""
        return self.sign(notification.payload(self))

    def verifier(
        self,
        environment: Environment = Environment.SANDBOX,
        *,
        bundle_id: str = DEFAULT_BUNDLE_ID,
        app_apple_id: int | None = DEFAULT_APP_APPLE_ID,
    ) -> SignedDataVerifier:
        """The library's verifier trusting this root, online (OCSP) checks off."""
        return SignedDataVerifier([self.root_der], False, environment, bundle_id, app_apple_id)


@functools.cache
def default_pki() -> AppStorePKI:
    """One PKI shared by the test session (made once; keys are cheap but need not be remade)."""
    return AppStorePKI.create()


# ----------------------------------------------------------------------------------------------------
# Payload builders
# ----------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Transaction:
    """A ``JWSTransactionDecodedPayload`` for a consumable (ref §3). ``None`` fields are left out.

    Dates are Unix milliseconds; ``purchase_date`` defaults to ``signed_date``, ``original_purchase_date`` to
    the purchase date, ``original_transaction_id`` to ``transaction_id``. ``extra`` adds or replaces raw
    payload keys (e.g. the app-only ``deviceVerification``); ``omit`` removes keys.
    """

    transaction_id: str = field(default_factory=new_transaction_id)
    original_transaction_id: str | None = None
    bundle_id: str = DEFAULT_BUNDLE_ID
    product_id: str = DEFAULT_PRODUCT_ID
    purchase_date: int | None = None
    original_purchase_date: int | None = None
    quantity: int = 1
    type: str = "Consumable"
    app_account_token: str | None = field(default_factory=lambda: str(uuid.uuid4()))
    in_app_ownership_type: str = "PURCHASED"
    signed_date: int = field(default_factory=now_ms)
    environment: str = Environment.SANDBOX.value
    transaction_reason: str = "PURCHASE"
    storefront: str = "USA"
    storefront_id: str = "143441"
    price: int | None = 4990  # milliunits of currency, total for quantity (ref §3)
    currency: str | None = "USD"
    app_transaction_id: str | None = None
    revocation_date: int | None = None
    revocation_reason: int | None = None  # 0 other reason, 1 issue with the purchase (ref §3)
    revocation_type: str | None = None  # REFUND_FULL | REFUND_PRORATED | FAMILY_REVOKE
    revocation_percentage: int | None = None  # milliunits: 50000 = 50 %
    extra: Mapping[str, Any] = field(default_factory=dict)
    omit: tuple[str, ...] = ()

    def payload(self) -> dict[str, Any]:
        """The payload as Apple's JSON keys and values."""
        purchased = self.purchase_date if self.purchase_date is not None else self.signed_date
        values: dict[str, Any] = {
            "transactionId": self.transaction_id,
            "originalTransactionId": self.original_transaction_id or self.transaction_id,
            "bundleId": self.bundle_id,
            "productId": self.product_id,
            "purchaseDate": purchased,
            "originalPurchaseDate": (
                self.original_purchase_date if self.original_purchase_date is not None else purchased
            ),
            "quantity": self.quantity,
            "type": self.type,
            "appAccountToken": self.app_account_token,
            "inAppOwnershipType": self.in_app_ownership_type,
            "signedDate": self.signed_date,
            "environment": self.environment,
            "transactionReason": self.transaction_reason,
            "storefront": self.storefront,
            "storefrontId": self.storefront_id,
            "price": self.price,
            "currency": self.currency,
            "appTransactionId": self.app_transaction_id,
            "revocationDate": self.revocation_date,
            "revocationReason": self.revocation_reason,
            "revocationType": self.revocation_type,
            "revocationPercentage": self.revocation_percentage,
        }
        values.update(self.extra)
        return {k: _text(v) for k, v in values.items() if v is not None and k not in self.omit}

    def revoked(
        self,
        *,
        reason: int = 0,
        revocation_type: str = "REFUND_FULL",
        percentage: int | None = None,
        at: int | None = None,
    ) -> Transaction:
        """This transaction as the App Store signs it after a refund: revocation fields set, newly signed."""
        when = at if at is not None else now_ms()
        return replace(
            self,
            revocation_date=when,
            revocation_reason=reason,
            revocation_type=revocation_type,
            revocation_percentage=percentage,
            signed_date=max(when, self.signed_date),
        )

    def reinstated(self) -> Transaction:
        """This transaction without revocation fields, newly signed (for ``REFUND_REVERSED``).

        The reference does not say what the transaction in a ``REFUND_REVERSED`` notification carries; this
        choice drops the revocation fields. Keep them with ``replace(tx, signed_date=...)`` if needed.
        """
        return replace(
            self,
            revocation_date=None,
            revocation_reason=None,
            revocation_type=None,
            revocation_percentage=None,
            signed_date=now_ms(),
        )


@dataclass(frozen=True)
class Notification:
    """A notification V2 ``ResponseBodyV2DecodedPayload`` with ``data`` (ref §4). ``None`` is left out.

    ``transaction`` is signed with the signing PKI into ``data.signedTransactionInfo`` (a nested JWS), unless
    ``signed_transaction_info`` gives the JWS itself. ``bundle_id``/``environment`` default to the
    transaction's (else ``DEFAULT_BUNDLE_ID``/Sandbox). ``data_extra``/``extra`` add or replace raw keys of
    ``data``/the payload. For ``CONSUMPTION_REQUEST`` set ``consumption_request_reason`` (values: ref §4).
    """

    notification_type: str = "TEST"
    transaction: Transaction | None = None
    subtype: str | None = None
    notification_uuid: str = field(default_factory=lambda: str(uuid.uuid4()))
    version: str = "2.0"
    signed_date: int = field(default_factory=now_ms)
    bundle_id: str | None = None
    environment: str | None = None
    app_apple_id: int | None = DEFAULT_APP_APPLE_ID
    bundle_version: str | None = "1"
    signed_transaction_info: str | None = None
    consumption_request_reason: str | None = None
    status: int | None = None
    data_extra: Mapping[str, Any] = field(default_factory=dict)
    extra: Mapping[str, Any] = field(default_factory=dict)

    def payload(self, pki: AppStorePKI | None = None) -> dict[str, Any]:
        """The payload as Apple's JSON keys; ``pki`` (default: ``default_pki()``) signs the transaction."""
        signed = self.signed_transaction_info
        if signed is None and self.transaction is not None:
            signed = (pki or default_pki()).sign_transaction(self.transaction)
        tx = self.transaction
        data: dict[str, Any] = {
            "appAppleId": self.app_apple_id,
            "bundleId": self.bundle_id or (tx.bundle_id if tx else DEFAULT_BUNDLE_ID),
            "bundleVersion": self.bundle_version,
            "environment": self.environment or (tx.environment if tx else Environment.SANDBOX.value),
            "signedTransactionInfo": signed,
            "consumptionRequestReason": self.consumption_request_reason,
            "status": self.status,
        }
        data.update(self.data_extra)
        values: dict[str, Any] = {
            "notificationType": self.notification_type,
            "subtype": self.subtype,
            "notificationUUID": self.notification_uuid,
            "data": {k: _text(v) for k, v in data.items() if v is not None},
            "version": self.version,
            "signedDate": self.signed_date,
        }
        values.update(self.extra)
        return {k: _text(v) for k, v in values.items() if v is not None}


def decode_unverified(jws: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """The header and payload of a compact JWS, without any check."""
    header, payload, _ = jws.split(".")
    return json.loads(_b64url_decode(header)), json.loads(_b64url_decode(payload))


def tamper(jws: str, **changes: Any) -> str:
    """``jws`` with payload keys changed (``None`` removes one) after signing; header and signature kept."""
    header, payload, signature = jws.split(".")
    values = json.loads(_b64url_decode(payload))
    for key, value in changes.items():
        if value is None:
            values.pop(key, None)
        else:
            values[key] = _text(value)
    return ".".join((header, _b64url(json.dumps(values, separators=(",", ":")).encode()), signature))


def notification_body(signed_payload: str) -> bytes:
    """The body App Store Server Notifications V2 POST: ``{"signedPayload": "<JWS>"}`` (ref §4)."""
    return json.dumps({"signedPayload": signed_payload}).encode()


def deliver_notification(
    url: str,
    signed_payload: str,
    *,
    attempts: int = 1,
    client: httpx.Client | None = None,
    timeout: float = 10.0,
) -> list[httpx.Response]:
    """POST a notification to ``url`` as the App Store does, retrying at once until a 200-206 answer.

    Apple retries a failed V2 delivery up to 5 times (``NOTIFICATION_RETRY_DELAYS_H``), in production only
    (ref §4); here the waits are skipped. ``attempts=6`` plays production, 1 plays sandbox. Every attempt
    sends the same body; that retries keep the ``notificationUUID`` is [U] in the reference.
    The ``Content-Type`` Apple sends is not in the reference; ``application/json`` is used.
    """
    own = client is None
    http = client or httpx.Client(timeout=timeout)
    body = notification_body(signed_payload)
    responses: list[httpx.Response] = []
    try:
        for _ in range(attempts):
            response = http.post(url, content=body, headers={"Content-Type": "application/json"})
            responses.append(response)
            if 200 <= response.status_code <= 206:
                break
    finally:
        if own:
            http.close()
    return responses


# ----------------------------------------------------------------------------------------------------
# The App Store Server API emulator
# ----------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ApiKey:
    """An App Store Connect API key: key id (JWT ``kid``), issuer id (``iss``) and the P-256 ``.p8`` key."""

    key_id: str
    issuer_id: str
    private_key: ec.EllipticCurvePrivateKey

    @classmethod
    def generate(cls, *, key_id: str = "EMUKEY0001", issuer_id: str | None = None) -> ApiKey:
        """A new key (the issuer id is a UUID, as App Store Connect's are, ref §5)."""
        return cls(key_id, issuer_id or str(uuid.uuid4()), ec.generate_private_key(ec.SECP256R1()))

    @property
    def pem(self) -> bytes:
        """The key as a ``.p8`` file holds it (PKCS#8 PEM): the library's ``signing_key`` argument."""
        return self.private_key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption())

    def token(
        self,
        *,
        bundle_id: str = DEFAULT_BUNDLE_ID,
        lifetime_s: int = 300,
        claims: Mapping[str, Any] | None = None,
        headers: Mapping[str, Any] | None = None,
    ) -> str:
        """A JWT as the library makes it (``{"bid", "iss", "aud", "exp"}``, header ``kid``; ref §5).

        A claim or header set to ``None`` in ``claims``/``headers`` is removed.
        """
        body: dict[str, Any] = {
            "bid": bundle_id,
            "iss": self.issuer_id,
            "aud": AUDIENCE,
            "exp": int(time.time()) + lifetime_s,
        }
        body.update(claims or {})
        header: dict[str, Any] = {"kid": self.key_id}
        header.update(headers or {})
        body = {k: v for k, v in body.items() if v is not None}
        header = {k: v for k, v in header.items() if v is not None}
        return jwt.encode(body, self.private_key, algorithm="ES256", headers=header)


@dataclass(frozen=True)
class Fault:
    """An injected answer for matching requests (``status_code`` None: only ``delay_s``), before auth.

    The body defaults to Apple's error shape ``{"errorCode", "errorMessage"}`` with ``error_code`` (for 429:
    RateLimitExceeded 4290000, for 5xx: GeneralInternal 5000000); ``body`` replaces it (bytes: sent as is,
    with ``content_type``). The library parses an error body only when the Content-Type is exactly
    ``application/json`` (ref §5).
    """

    status_code: int | None = 500
    error_code: int | None = None
    error_message: str | None = None
    body: Any = None
    content_type: str = "application/json"
    headers: Mapping[str, str] = field(default_factory=dict)
    times: int | None = 1  # None: forever
    delay_s: float = 0.0
    transaction_id: str | None = None  # only requests for this id


@dataclass
class RecordedRequest:
    """One request the emulator received, how its token decoded and what was answered."""

    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]  # lower-case names
    body: bytes
    transaction_id: str | None = None
    token_header: dict[str, Any] | None = None
    token_claims: dict[str, Any] | None = None  # unverified claims, for assertions
    auth_error: str | None = None  # why the token was refused (None: accepted or not checked)
    status_code: int | None = None
    at: float = field(default_factory=time.time)


@dataclass
class ReceivedNotification:
    """A POST received by the emulator's notification sink."""

    headers: dict[str, str]
    body: bytes
    at: float = field(default_factory=time.time)

    def json(self) -> Any:
        """The body parsed as JSON."""
        return json.loads(self.body)

    @property
    def signed_payload(self) -> str:
        """The ``signedPayload`` JWS."""
        value = self.json()["signedPayload"]
        assert isinstance(value, str)
        return value


class AppStoreAPIEmulator(BackgroundServer):
    """The App Store Server API host of one environment, over real HTTP; see the module docstring.

    Served: ``GET /inApps/v1/transactions/{transactionId}`` → 200 ``{"signedTransactionInfo": "<JWS>"}`` for
    a registered transaction, 404 ``{"errorCode": 4040010, "errorMessage": ...}`` otherwise (ref §5); 401 with
    an empty body unless the bearer JWT checks out (the reference leaves the 401 body open: "[U body shape]").
    ``POST /_sink/notifications`` is a test receiver for ``deliver_notification`` (not an Apple endpoint).

    JWT checks (ref §5; the library's ``_generate_token`` in ``appstoreserverlibrary/api_client.py``): header
    ``alg`` ES256 and ``kid`` = the key id; signature by the key; claims ``iss`` = issuer id, ``aud`` =
    ``appstoreconnect-v1``, ``bid`` = ``bundle_id``, ``exp`` in the future; ``iat`` optional (the library
    sends none), and when present ``exp - iat`` ≤ 60 min. Without ``iat``, ``exp`` more than 60 min ahead is
    refused too: the reference does not say what Apple does then; this emulator is strict.
    """

    _server_label = "App Store emulator"
    _server_thread = "app-store-emulator"
    _server_lifespan = "off"

    def __init__(
        self,
        *,
        environment: Environment = Environment.SANDBOX,
        pki: AppStorePKI | None = None,
        api_key: ApiKey | None = None,
        bundle_id: str = DEFAULT_BUNDLE_ID,
        leeway_s: float = 0.0,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        if environment not in (Environment.SANDBOX, Environment.PRODUCTION):
            raise ValueError("the App Store Server API has Production and Sandbox hosts only")
        super().__init__(host=host, port=port)
        self.environment = environment
        self.pki = pki or default_pki()
        self.api_key = api_key or ApiKey.generate()
        self.bundle_id = bundle_id
        self.leeway_s = leeway_s
        self.requests: list[RecordedRequest] = []
        self.notifications: list[ReceivedNotification] = []
        self.sink_status = 200
        self._transactions: dict[str, str] = {}
        self._faults: list[list[Any]] = []  # [Fault, remaining]
        self._lock = threading.RLock()
        self.app = Starlette(
            routes=[
                Route(TRANSACTION_PATH, self._get_transaction, methods=["GET"]),
                Route(NOTIFICATION_SINK_PATH, self._sink, methods=["POST"]),
            ]
        )

    # ---------------------------------------------------------------- the library's client

    @property
    def sink_url(self) -> str:
        """Where ``deliver_notification`` can send to have notifications recorded in ``notifications``."""
        return self.base_url + NOTIFICATION_SINK_PATH

    def point(self, client: _Client) -> _Client:
        """Send ``client``'s requests here: the library reads ``_base_url`` on every call (ref §6)."""
        if not self.base_url:
            raise RuntimeError("start the emulator first")
        client._base_url = self.base_url
        return client

    def api_client(
        self, api_key: ApiKey | None = None, *, bundle_id: str | None = None
    ) -> AppStoreServerAPIClient:
        """The library's ``AppStoreServerAPIClient`` for this environment and key, pointed here."""
        key = api_key or self.api_key
        client = AppStoreServerAPIClient(
            key.pem, key.key_id, key.issuer_id, bundle_id or self.bundle_id, self.environment
        )
        return self.point(client)

    # ---------------------------------------------------------------- state

    def add_transaction(self, transaction: Transaction) -> str:
        """Sign ``transaction`` with ``pki`` and serve it under its id; returns the JWS."""
        if transaction.environment != self.environment.value:
            raise ValueError(
                f"a {transaction.environment} transaction is not on the {self.environment.value} host"
            )
        jws = self.pki.sign_transaction(transaction)
        self.add_signed_transaction(transaction.transaction_id, jws)
        return jws

    def add_signed_transaction(self, transaction_id: str, jws: str) -> None:
        """Serve ``jws`` as is under ``transaction_id`` (no checks: for deliberately wrong data)."""
        with self._lock:
            self._transactions[transaction_id] = jws

    def remove_transaction(self, transaction_id: str) -> None:
        """Stop serving a transaction (its id answers 404 again)."""
        with self._lock:
            self._transactions.pop(transaction_id, None)

    def add_fault(self, fault: Fault) -> Fault:
        """Inject ``fault`` into matching requests until used up."""
        with self._lock:
            self._faults.append([fault, fault.times])
        return fault

    def clear_faults(self) -> None:
        """Remove every injected fault."""
        with self._lock:
            self._faults.clear()

    def requests_for(self, transaction_id: str) -> list[RecordedRequest]:
        """The recorded requests for one transaction id."""
        with self._lock:
            return [r for r in self.requests if r.transaction_id == transaction_id]

    # ---------------------------------------------------------------- handlers

    def _check_token(self, request: Request, record: RecordedRequest) -> str | None:
        """Why the request's bearer JWT is refused, or None when it is valid."""
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            return "missing bearer token"
        try:
            record.token_header = jwt.get_unverified_header(token)
            record.token_claims = jwt.decode(token, options={"verify_signature": False})
        except jwt.PyJWTError as exc:
            return f"malformed token: {exc}"
        if record.token_header.get("alg") != "ES256":
            return "alg is not ES256"
        if record.token_header.get("kid") != self.api_key.key_id:
            return "unknown kid"
        try:
            claims = jwt.decode(
                token,
                self.api_key.private_key.public_key(),
                algorithms=["ES256"],
                audience=AUDIENCE,
                issuer=self.api_key.issuer_id,
                leeway=self.leeway_s,
                options={"require": ["exp", "aud", "iss", "bid"]},
            )
        except jwt.PyJWTError as exc:
            return f"{type(exc).__name__}: {exc}"
        if claims.get("bid") != self.bundle_id:
            return "bid is not the app's bundle id"
        start = claims.get("iat", time.time())
        if not isinstance(start, int | float) or claims["exp"] - start > MAX_TOKEN_LIFETIME_S + self.leeway_s:
            return "token lifetime over 60 minutes"
        return None

    async def _apply_faults(self, transaction_id: str | None) -> Response | None:
        """Sleep for and answer the first matching fault, if any."""
        fault: Fault | None = None
        delay = 0.0
        with self._lock:
            for slot in self._faults:
                f: Fault = slot[0]
                if slot[1] == 0 or (f.transaction_id is not None and f.transaction_id != transaction_id):
                    continue
                if slot[1] is not None:
                    slot[1] -= 1
                delay += f.delay_s
                if f.status_code is not None:
                    fault = f
                    break
        if delay:
            await asyncio.sleep(delay)
        if fault is None or fault.status_code is None:
            return None
        status = fault.status_code
        if isinstance(fault.body, bytes):
            return Response(fault.body, status, headers=dict(fault.headers), media_type=fault.content_type)
        body = fault.body
        if body is None:
            code = fault.error_code
            if code is None:
                code = RATE_LIMIT_EXCEEDED if status == 429 else GENERAL_INTERNAL if status >= 500 else None
            if code is None:
                return Response(b"", status, headers=dict(fault.headers))
            body = {"errorCode": code, "errorMessage": fault.error_message or _ERROR_MESSAGES.get(code, "")}
        return Response(
            json.dumps(body).encode(), status, headers=dict(fault.headers), media_type=fault.content_type
        )

    async def _get_transaction(self, request: Request) -> Response:
        """GET /inApps/v1/transactions/{transactionId} (Get Transaction Info, ref §5)."""
        transaction_id = request.path_params["transaction_id"]
        record = RecordedRequest(
            method=request.method,
            path=request.url.path,
            query=dict(request.query_params),
            headers={k.lower(): v for k, v in request.headers.items()},
            body=await request.body(),
            transaction_id=transaction_id,
        )
        with self._lock:
            self.requests.append(record)
        response = await self._apply_faults(transaction_id)
        if response is None:
            record.auth_error = self._check_token(request, record)
            if record.auth_error is not None:
                response = Response(b"", 401)
            else:
                with self._lock:
                    jws = self._transactions.get(transaction_id)
                if jws is None:
                    body = {
                        "errorCode": TRANSACTION_ID_NOT_FOUND,
                        "errorMessage": _ERROR_MESSAGES[TRANSACTION_ID_NOT_FOUND],
                    }
                    response = JSONResponse(body, 404)
                else:
                    response = JSONResponse({"signedTransactionInfo": jws})
        record.status_code = response.status_code
        return response

    async def _sink(self, request: Request) -> Response:
        """POST /_sink/notifications: record a notification delivery and answer ``sink_status``."""
        received = ReceivedNotification(
            {k.lower(): v for k, v in request.headers.items()}, await request.body()
        )
        with self._lock:
            self.notifications.append(received)
        return Response(status_code=self.sink_status)


@pytest.fixture
def app_store_emulator() -> Iterator[AppStoreAPIEmulator]:
    """A running Sandbox App Store Server API emulator, stopped after the test (import it into a conftest)."""
    with AppStoreAPIEmulator() as emulator:
        yield emulator
