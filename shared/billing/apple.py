"""Apple's side of App Store purchases: the configuration, signed data verified with Apple's library, and the
transaction lookup. The only module that imports app-store-server-library (inside the functions that use it, so
only App Store requests load it).

Every JWS is verified by the library's ``SignedDataVerifier``: the ``x5c`` chain up to the configured roots
(APPLE_ROOT_CERTS: Apple Root CA - G3 in production), Apple's certificate extensions, the ES256 signature, then
the bundle id, the environment and (Production notifications) the app's Apple ID, with OCSP revocation checks
unless APPLE_ONLINE_CHECKS is false. A Production server with APPLE_ACCEPT_SANDBOX also verifies Sandbox data
(App Review and TestFlight buy in Sandbox) with a second verifier; the environment written in the payload only
chooses which of the allowed verifiers checks it, and that verifier checks everything, the environment included.

The library's errors are mapped here, once::

    VerificationException (any status but the one below)  -> AppStoreDataRefused          400 (details.reason)
    VerificationException RETRYABLE_VERIFICATION_FAILURE  -> ProviderUnavailable          503 (OCSP unreachable)
    APIException 404 (TransactionIdNotFound, InvalidId)    -> AppStoreTransactionNotFound  404
    APIException 401, 403                                  -> ServiceUnavailable           503 (fix the API key)
    APIException 429, 5xx; requests' network errors        -> ProviderUnavailable          503 (retryable)
    any other APIException                                 -> ProviderError                502
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from shared import errors
from shared.settings import Settings, get_settings, parse_app_store_packs

if TYPE_CHECKING:
    from appstoreserverlibrary.api_client import APIException, AppStoreServerAPIClient
    from appstoreserverlibrary.models.JWSTransactionDecodedPayload import JWSTransactionDecodedPayload
    from appstoreserverlibrary.signed_data_verifier import SignedDataVerifier, VerificationException

log = logging.getLogger("i2v.billing")
PRODUCTION, SANDBOX = "Production", "Sandbox"
_API_TIMEOUT_S = (3.05, 10.0)  # connect, read: a lookup ends well inside the function's 29 s
_REQUIRED = ("APPLE_BUNDLE_ID", "APPLE_ROOT_CERTS", "APP_STORE_PACKS")
_API_KEY = ("APPLE_ISSUER_ID", "APPLE_KEY_ID", "APPLE_PRIVATE_KEY")


@dataclass(frozen=True)
class AppStoreConfig:
    """What verifying App Store data needs, from the settings (hashable: verifiers are cached per config)."""

    bundle_id: str
    app_apple_id: int | None
    environment: str
    root_certificates: tuple[bytes, ...]
    online_checks: bool
    accept_sandbox: bool
    packs: tuple[tuple[str, int], ...]

    @property
    def environments(self) -> tuple[str, ...]:
        """The environments whose data this server accepts, its own first."""
        if self.environment == PRODUCTION and self.accept_sandbox:
            return (PRODUCTION, SANDBOX)
        return (self.environment,)


@dataclass(frozen=True)
class VerifiedTransaction:
    """The fields of a verified ``JWSTransactionDecodedPayload`` that crediting needs (dates: Unix ms)."""

    transaction_id: str
    original_transaction_id: str | None
    product_id: str
    quantity: int
    environment: str
    app_account_token: str | None
    signed_date: int
    purchase_date: int | None
    revoked: bool
    revocation_reason: int | None
    price: int | None
    currency: str | None
    storefront: str | None

    def procedure_input(self) -> dict[str, Any]:
        """The ``p_tx`` argument of the App Store procedures (sql/procedures/app_store.sql)."""
        return {
            "transaction_id": self.transaction_id,
            "original_transaction_id": self.original_transaction_id,
            "product_id": self.product_id,
            "quantity": self.quantity,
            "environment": self.environment,
            "signed_date": self.signed_date,
            "purchase_date": self.purchase_date,
            "revoked": self.revoked,
            "revocation_reason": self.revocation_reason,
            "price": self.price,
            "currency": self.currency,
            "storefront": self.storefront,
        }


@dataclass(frozen=True)
class VerifiedNotification:
    """A verified App Store Server Notification V2 and its verified transaction, if it carries one."""

    notification_uuid: str
    type: str
    subtype: str | None
    signed_date: int
    environment: str | None
    transaction: VerifiedTransaction | None


# ------------------------------------------------------------------------------------------ configuration


def config() -> AppStoreConfig:
    """The App Store configuration, or ``NotConfigured`` (503) naming the variable to set."""
    settings = get_settings()
    values = {
        "APPLE_BUNDLE_ID": settings.apple_bundle_id,
        "APPLE_ROOT_CERTS": settings.apple_root_certs,
        "APP_STORE_PACKS": settings.app_store_packs,
    }
    for name in _REQUIRED:
        if not values[name]:
            raise errors.NotConfigured(f"App Store purchases are not configured: set {name}.", setting=name)
    if settings.apple_environment == PRODUCTION and settings.apple_app_id is None:
        raise errors.NotConfigured(
            "App Store purchases in Production need the app's Apple ID: set APPLE_APP_ID.",
            setting="APPLE_APP_ID",
        )
    try:
        packs = parse_app_store_packs(str(settings.app_store_packs))
    except ValueError as exc:
        raise errors.NotConfigured(str(exc), setting="APP_STORE_PACKS") from exc
    if not packs:
        raise errors.NotConfigured("APP_STORE_PACKS lists no product.", setting="APP_STORE_PACKS")
    return AppStoreConfig(
        bundle_id=str(settings.apple_bundle_id),
        app_apple_id=settings.apple_app_id,
        environment=settings.apple_environment,
        root_certificates=root_certificates(str(settings.apple_root_certs)),
        online_checks=settings.apple_online_checks,
        accept_sandbox=settings.apple_accept_sandbox,
        packs=tuple(packs.items()),
    )


def enabled() -> bool:
    """Whether this deployment takes App Store purchases (configured, and the configuration reads)."""
    try:
        config()
    except errors.NotConfigured:
        return False
    return True


@lru_cache(maxsize=8)
def root_certificates(paths: str) -> tuple[bytes, ...]:
    """The DER bytes of every certificate in the comma-separated files (DER, or PEM holding one or more)."""
    from cryptography import x509
    from cryptography.hazmat.primitives.serialization import Encoding

    found: list[bytes] = []
    for raw in (p.strip() for p in paths.split(",")):
        if not raw:
            continue
        try:
            data = Path(raw).read_bytes()
            if b"-----BEGIN" in data:
                found += [c.public_bytes(Encoding.DER) for c in x509.load_pem_x509_certificates(data)]
            else:
                found.append(x509.load_der_x509_certificate(data).public_bytes(Encoding.DER))
        except (OSError, ValueError) as exc:
            raise errors.NotConfigured(
                f"APPLE_ROOT_CERTS: {raw} is not a readable DER or PEM certificate.",
                setting="APPLE_ROOT_CERTS",
            ) from exc
    if not found:
        raise errors.NotConfigured("APPLE_ROOT_CERTS names no certificate.", setting="APPLE_ROOT_CERTS")
    return tuple(found)


# ------------------------------------------------------------------------------------------- verification


def verify_transaction(jws: str, cfg: AppStoreConfig) -> VerifiedTransaction:
    """Verify a signed transaction (the app's ``jwsRepresentation``, or one the API returned) and decode it."""
    verifier = _verifier(cfg, _claimed_environment(jws, cfg, ("environment",)))
    with _verification_errors():
        decoded = verifier.verify_and_decode_signed_transaction(jws)
    return _transaction(decoded)


def verify_notification(signed_payload: str, cfg: AppStoreConfig) -> VerifiedNotification:
    """Verify a notification's ``signedPayload`` and its nested ``signedTransactionInfo`` (same verifier)."""
    verifier = _verifier(cfg, _claimed_environment(signed_payload, cfg, ("data", "environment")))
    with _verification_errors():
        decoded = verifier.verify_and_decode_notification(signed_payload)
        signed_tx = decoded.data.signedTransactionInfo if decoded.data else None
        tx = verifier.verify_and_decode_signed_transaction(signed_tx) if signed_tx else None
    if not decoded.notificationUUID or not decoded.rawNotificationType or decoded.signedDate is None:
        raise errors.AppStoreDataRefused(
            "The notification lacks its notificationUUID, notificationType or signedDate.",
            reason="incomplete",
        )
    return VerifiedNotification(
        notification_uuid=decoded.notificationUUID,
        type=decoded.rawNotificationType,
        subtype=decoded.rawSubtype,
        signed_date=decoded.signedDate,
        environment=decoded.data.rawEnvironment if decoded.data else None,
        transaction=_transaction(tx) if tx is not None else None,
    )


def _transaction(decoded: JWSTransactionDecodedPayload) -> VerifiedTransaction:
    if not decoded.transactionId or not decoded.productId or decoded.signedDate is None:
        raise errors.AppStoreDataRefused(
            "The transaction lacks its transactionId, productId or signedDate.", reason="incomplete"
        )
    return VerifiedTransaction(
        transaction_id=decoded.transactionId,
        original_transaction_id=decoded.originalTransactionId,
        product_id=decoded.productId,
        quantity=max(decoded.quantity or 1, 1),
        environment=str(decoded.rawEnvironment),
        app_account_token=decoded.appAccountToken,
        signed_date=decoded.signedDate,
        purchase_date=decoded.purchaseDate,
        revoked=decoded.revocationDate is not None,
        revocation_reason=decoded.rawRevocationReason,
        price=decoded.price,
        currency=decoded.currency,
        storefront=decoded.storefront,
    )


def _claimed_environment(jws: str, cfg: AppStoreConfig, path: tuple[str, ...]) -> str:
    """The environment the (unverified) payload names when this server accepts it, else the server's own: it
    only picks the verifier, which then checks the whole payload."""
    try:
        part = jws.split(".")[1]
        value: Any = json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))
        for key in path:
            value = value.get(key) if isinstance(value, dict) else None
    except (IndexError, ValueError, RecursionError, binascii.Error):  # UnicodeDecodeError is a ValueError
        value = None
    return value if value in cfg.environments else cfg.environment


@lru_cache(maxsize=8)
def _verifier(cfg: AppStoreConfig, environment: str) -> SignedDataVerifier:
    """One verifier per configuration and environment, kept: it caches chains it verified online (15 min)."""
    from appstoreserverlibrary.models.Environment import Environment
    from appstoreserverlibrary.signed_data_verifier import SignedDataVerifier

    return SignedDataVerifier(
        list(cfg.root_certificates),
        cfg.online_checks,
        Environment(environment),
        cfg.bundle_id,
        cfg.app_apple_id,
    )


@contextmanager
def _verification_errors() -> Iterator[None]:
    """Turn the library's VerificationException into our errors (see the module docstring)."""
    from appstoreserverlibrary.signed_data_verifier import VerificationException, VerificationStatus

    try:
        yield
    except VerificationException as exc:
        if exc.status == VerificationStatus.RETRYABLE_VERIFICATION_FAILURE:
            raise errors.ProviderUnavailable(
                "Apple's certificate status service cannot be reached right now; retry later.",
                provider="app_store",
            ) from exc
        raise _refused(exc) from exc


def _refused(exc: VerificationException) -> errors.AppStoreDataRefused:
    reason = exc.status.name.lower()
    messages = {
        "invalid_app_identifier": "The App Store data is for another app (bundle id or Apple ID).",
        "invalid_environment": "The App Store data is from an environment this server does not accept.",
    }
    return errors.AppStoreDataRefused(
        messages.get(reason, "The App Store data is not signed by Apple (signature or certificate chain)."),
        reason=reason,
    )


# ----------------------------------------------------------------------------------- the transaction lookup


def fetch_transaction(transaction_id: str, cfg: AppStoreConfig) -> str:
    """The signed transaction with this id from the App Store Server API (Get Transaction Info), trying the
    server's environment, then Sandbox when it is accepted too. The answer is a JWS still to be verified."""
    settings = get_settings()
    missing = [n for n in _API_KEY if not getattr(settings, n.lower())]
    if missing:
        raise errors.NotConfigured(
            f"Looking up App Store transactions by id needs an App Store Server API key: set {missing[0]}.",
            setting=missing[0],
        )
    for environment in cfg.environments:
        signed = _get_transaction_info(_api_client(_api_config(settings, cfg), environment), transaction_id)
        if signed is not None:
            return signed
    raise errors.AppStoreTransactionNotFound(transaction_id=transaction_id)


def _api_config(settings: Settings, cfg: AppStoreConfig) -> tuple[str, str, str, str, str | None]:
    key = str(settings.apple_private_key).replace("\\n", "\n")  # one-line variables carry the PEM's newlines
    return (
        key,
        str(settings.apple_key_id),
        str(settings.apple_issuer_id),
        cfg.bundle_id,
        settings.app_store_api_url,
    )


def _get_transaction_info(client: AppStoreServerAPIClient, transaction_id: str) -> str | None:
    """The JWS, or None when this environment's host does not know the id."""
    import requests
    from appstoreserverlibrary.api_client import APIException

    try:
        info = client.get_transaction_info(transaction_id)
    except APIException as exc:
        if exc.http_status_code == 404 or exc.raw_api_error in (4000006, 4040010):
            return None
        raise _api_error(exc) from exc
    except requests.RequestException as exc:
        raise errors.ProviderUnavailable(
            "The App Store Server API cannot be reached right now; retry later.", provider="app_store"
        ) from exc
    return info.signedTransactionInfo


def _api_error(exc: APIException) -> errors.I2VError:
    status = exc.http_status_code
    if status in (401, 403):
        return errors.ServiceUnavailable(
            "The App Store Server API refused the configured key (APPLE_ISSUER_ID, APPLE_KEY_ID, APPLE_PRIVATE_KEY).",
            provider="app_store",
        )
    if status == 429 or status >= 500:
        return errors.ProviderUnavailable(
            "The App Store Server API is unavailable right now; retry later.",
            provider="app_store",
            apple_status=status,
        )
    return errors.ProviderError(
        "The App Store Server API refused the lookup.", provider="app_store", apple_status=status
    )


@lru_cache(maxsize=4)
def _api_client(api: tuple[str, str, str, str, str | None], environment: str) -> AppStoreServerAPIClient:
    """The library's client for one environment, kept per configuration (its key loaded once)."""
    import requests
    from appstoreserverlibrary.api_client import AppStoreServerAPIClient
    from appstoreserverlibrary.models.Environment import Environment

    class _BoundedClient(AppStoreServerAPIClient):
        """The library's client over one pooled session with short timeouts (its own waits 30 s per call)."""

        _session = requests.Session()

        def _execute_request(
            self, method: str, url: str, params: Any, headers: Any, json: Any, data: Any
        ) -> requests.Response:
            return self._session.request(
                method, url, params=params, headers=headers, json=json, data=data, timeout=_API_TIMEOUT_S
            )

    key, key_id, issuer_id, bundle_id, base_url = api
    try:
        client = _BoundedClient(key.encode(), key_id, issuer_id, bundle_id, Environment(environment))
    except ValueError as exc:
        raise errors.NotConfigured(
            "APPLE_PRIVATE_KEY is not an App Store Connect .p8 key (PEM).", setting="APPLE_PRIVATE_KEY"
        ) from exc
    if base_url:
        client._base_url = base_url.rstrip("/")  # the library has no parameter for it; it reads this per call
    return client
