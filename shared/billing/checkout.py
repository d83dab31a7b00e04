"""Buying credits: credit packs, Stripe Checkout sessions and Stripe webhooks. The only module that imports stripe.

(The App Store, the iOS app's store, is in shared/billing/app_store.py; list-credit-packs lists both.)

stripe is imported inside the functions that use it, so a cold start pays for it only when a purchase
endpoint runs. Stripe's errors are mapped to ours here, once::

    SignatureVerificationError, no header, body not UTF-8   -> InvalidSignature     400
    APIConnectionError, RateLimitError, APIError (5xx)      -> ProviderUnavailable  503 (retryable)
    AuthenticationError, PermissionError                    -> ServiceUnavailable   503 (fix the key)
    IdempotencyError                                        -> IdempotencyKeyReused 422
    any other StripeError (e.g. InvalidRequestError)        -> ProviderError        502

Every webhook is one procedure call (``apply_stripe_event``) keyed by the event id; ``shared/billing/stripe_events.py``
turns a verified event into that call's input. The refund and debt policy lives in ``sql/0004_purchases.sql``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
import uuid
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field

from shared import errors
from shared.auth import User
from shared.billing import app_store
from shared.billing import stripe_events as billing_events
from shared.billing.app_store import AppStoreProduct
from shared.db import get_db
from shared.settings import get_settings
from shared.web import json_body

if TYPE_CHECKING:
    import requests
    import stripe
    from stripe.params.checkout import SessionCreateParams, SessionCreateParamsLineItem

log = logging.getLogger("i2v.billing")
ENDPOINT = "POST /functions/v1/create-checkout-session"
PACKS_FILE = Path(__file__).resolve().parent / "credit_packs.json"
WEBHOOK_TOLERANCE_S = 300
_HOLD_S = 60  # the Idempotency-Key stays "in progress" at most this long while Stripe is called
_TIMEOUT_S = (3.0, 10.0)  # connect, read: two attempts end well inside the function's 29 s


class CreditPack(BaseModel):
    """A pack of credits for sale."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    id: str = Field(pattern=r"^[a-z0-9_]{1,40}$")
    name: str
    credits: int = Field(gt=0)
    price_cents: int = Field(gt=0)
    currency: str = Field(pattern=r"^[a-z]{3}$")
    stripe_price_id: str | None = Field(default=None, exclude=True)


class PurchaseStores(BaseModel):
    """Where this deployment sells credits."""

    stripe: bool = Field(description="Stripe Checkout (the packs above, on the web).")
    app_store: bool = Field(description="In-app purchase in the iOS app (the app_store_products).")


class CreditPackList(BaseModel):
    """Body of GET list-credit-packs."""

    packs: list[CreditPack]
    purchases_enabled: bool = Field(description="Whether the packs can be bought with Stripe Checkout.")
    stores: PurchaseStores
    app_store_products: list[AppStoreProduct]


class CheckoutRequest(BaseModel):
    """Body of POST create-checkout-session."""

    model_config = ConfigDict(extra="forbid")
    pack_id: str = Field(min_length=1, max_length=100)


class CheckoutSession(BaseModel):
    """Where to send the buyer: Stripe's hosted payment page for one pending purchase."""

    checkout_url: str
    session_id: str


@dataclass(frozen=True)
class CheckoutOutcome:
    """The answer to create-checkout-session, and whether it replays an earlier one."""

    session: CheckoutSession
    replayed: bool = False


class WebhookAck(BaseModel):
    """Body of a 2xx answer to Stripe."""

    received: bool = True
    event_id: str
    outcome: str


# ------------------------------------------------------------------------------------------------ packs


@lru_cache(maxsize=1)
def credit_packs() -> dict[str, CreditPack]:
    """The packs for sale, by id, from ``credit_packs.json``."""
    packs = [CreditPack.model_validate(p) for p in json.loads(PACKS_FILE.read_text())]
    return {p.id: p for p in packs}


def get_pack(pack_id: str) -> CreditPack:
    """One pack, or ``UnknownCreditPack`` naming the ids that exist."""
    packs = credit_packs()
    if pack_id not in packs:
        raise errors.UnknownCreditPack(
            f"No credit pack has the id {pack_id!r}.", field="pack_id", allowed=sorted(packs)
        )
    return packs[pack_id]


def pack_list() -> CreditPackList:
    """Every pack, cheapest first, the App Store products, and which stores this deployment sells through."""
    packs = sorted(credit_packs().values(), key=lambda p: (p.price_cents, p.id))
    stripe_enabled = bool(get_settings().stripe_secret_key)
    products = app_store.products()
    return CreditPackList(
        packs=packs,
        purchases_enabled=stripe_enabled,
        stores=PurchaseStores(stripe=stripe_enabled, app_store=bool(products)),
        app_store_products=products,
    )


# --------------------------------------------------------------------------------------------- checkout


def create_checkout(user: User, pack_id: str, key: str | None) -> CheckoutOutcome:
    """Create a Stripe Checkout Session for a pack and record the pending purchase, once per Idempotency-Key."""
    pack = get_pack(pack_id)
    client = _client()
    success_url, cancel_url = _redirect_urls()
    settings = get_settings()
    key = key or uuid.uuid4().hex
    fingerprint = _fingerprint({"pack_id": pack_id})
    db = get_db()
    begun = db.call(
        "begin_checkout",
        user=user.id,
        endpoint=ENDPOINT,
        key=key,
        fingerprint=fingerprint,
        signup_credits=settings.signup_credits,
        ttl_s=settings.idempotency_ttl_s,
        hold_s=_HOLD_S,
    )
    if begun["outcome"] == "replay":
        return CheckoutOutcome(CheckoutSession.model_validate(begun["body"]), replayed=True)
    if begun["outcome"] == "mismatch":
        raise errors.IdempotencyKeyReused()
    if begun["outcome"] == "in_progress":
        raise errors.IdempotencyInFlight()
    params = _session_params(user, pack, success_url, cancel_url)
    try:
        session = _create_session(client, params, _stripe_key(user, key, fingerprint))
    except errors.I2VError:
        db.call("release_checkout", user=user.id, endpoint=ENDPOINT, key=key)
        raise
    db.call(
        "record_checkout",
        user=user.id,
        endpoint=ENDPOINT,
        key=key,
        session_id=session.id,
        pack_id=pack.id,
        credits=pack.credits,
        amount_cents=session.amount_total if session.amount_total is not None else pack.price_cents,
        currency=session.currency or pack.currency,
        response=CheckoutSession(checkout_url=str(session.url), session_id=session.id).model_dump(),
    )
    return CheckoutOutcome(CheckoutSession(checkout_url=str(session.url), session_id=session.id))


def _session_params(user: User, pack: CreditPack, success_url: str, cancel_url: str) -> SessionCreateParams:
    uid = str(user.id)
    return {
        "mode": "payment",
        "line_items": [_line_item(pack)],
        "success_url": success_url,
        "cancel_url": cancel_url,
        "client_reference_id": uid,
        "metadata": {"user_id": uid, "pack_id": pack.id, "credits": str(pack.credits)},
        "payment_intent_data": {"metadata": {"user_id": uid, "pack_id": pack.id}},
    }


def _line_item(pack: CreditPack) -> SessionCreateParamsLineItem:
    if pack.stripe_price_id:
        return {"price": pack.stripe_price_id, "quantity": 1}
    return {
        "price_data": {
            "currency": pack.currency,
            "unit_amount": pack.price_cents,
            "product_data": {"name": pack.name},
        },
        "quantity": 1,
    }


def _create_session(
    client: stripe.StripeClient, params: SessionCreateParams, key: str
) -> stripe.checkout.Session:
    import stripe

    try:
        session = client.v1.checkout.sessions.create(params=params, options={"idempotency_key": key})
    except stripe.StripeError as exc:
        raise _map_stripe_error(exc) from exc
    if not session.url:
        raise errors.ProviderError("Stripe returned a Checkout Session without a payment page URL.")
    return session


def _fingerprint(body: dict[str, Any]) -> str:
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(f"{ENDPOINT}\n{canonical}".encode()).hexdigest()


def _stripe_key(user: User, key: str, fingerprint: str) -> str:
    """Stripe's idempotency key: the caller's key scoped to the user and body (Stripe's keys are account-wide)."""
    digest = hashlib.sha256(f"{user.id}\n{key}\n{fingerprint}".encode()).hexdigest()
    return f"i2v-checkout-{digest}"


def _redirect_urls() -> tuple[str, str]:
    settings = get_settings()
    if not settings.checkout_success_url or not settings.checkout_cancel_url:
        raise errors.NotConfigured(
            "Buying credits is not configured: set CHECKOUT_SUCCESS_URL and CHECKOUT_CANCEL_URL.",
            setting="CHECKOUT_SUCCESS_URL" if not settings.checkout_success_url else "CHECKOUT_CANCEL_URL",
        )
    return settings.checkout_success_url, settings.checkout_cancel_url


def _map_stripe_error(exc: stripe.StripeError) -> errors.I2VError:
    import stripe

    status = exc.http_status
    if isinstance(exc, stripe.IdempotencyError):
        return errors.IdempotencyKeyReused()
    if isinstance(exc, stripe.AuthenticationError | stripe.PermissionError):
        return errors.ServiceUnavailable(
            "Stripe refused the configured STRIPE_SECRET_KEY.", provider="stripe"
        )
    if isinstance(exc, stripe.APIConnectionError | stripe.RateLimitError) or (status or 500) >= 500:
        return errors.ProviderUnavailable(
            "Stripe cannot be reached right now; retry later.", provider="stripe", stripe_status=status
        )
    return errors.ProviderError(
        f"Stripe refused the checkout request: {exc.user_message or 'invalid request'}",
        provider="stripe",
        stripe_status=status,
    )


# ------------------------------------------------------------------------------------------ the client

_client_lock = threading.Lock()
_cached: tuple[tuple[str, str | None], stripe.StripeClient, requests.Session] | None = None


def _client() -> stripe.StripeClient:
    """The process-wide StripeClient (one pooled HTTP session, reused by warm invocations)."""
    global _cached
    settings = get_settings()
    if not settings.stripe_secret_key:
        raise errors.NotConfigured(
            "Buying credits is not configured: set STRIPE_SECRET_KEY.", setting="STRIPE_SECRET_KEY"
        )
    config = (settings.stripe_secret_key, settings.stripe_api_base)
    with _client_lock:
        if _cached is None or _cached[0] != config:
            import requests
            import stripe

            if _cached is not None:
                _cached[2].close()
            session = requests.Session()
            client = stripe.StripeClient(
                config[0],
                base_addresses={"api": config[1]} if config[1] else None,
                max_network_retries=1,
                http_client=stripe.RequestsClient(session=session, timeout=_TIMEOUT_S),
            )
            _cached = (config, client, session)
        return _cached[1]


def close() -> None:
    """Close the Stripe client's connections (at shutdown, or after tests change the settings)."""
    global _cached
    with _client_lock:
        if _cached is not None:
            _cached[2].close()
            _cached = None


# ------------------------------------------------------------------------------------------- webhooks


def handle_webhook(raw_body: bytes, signature: str | None) -> WebhookAck:
    """Verify a Stripe webhook over its exact body, then apply the event once (one procedure call)."""
    secret = get_settings().stripe_webhook_secret
    if not secret:
        raise errors.NotConfigured(
            "Stripe webhooks are not configured: set STRIPE_WEBHOOK_SECRET.", setting="STRIPE_WEBHOOK_SECRET"
        )
    payload = verify_signature(raw_body, signature, secret)
    try:  # bounded nesting, no NUL or unpaired surrogate, finite numbers
        json_body(raw_body)
    except errors.InvalidField as exc:
        raise errors.BadRequest(
            f"The webhook body is not a Stripe event: {exc.message}", field=exc.field
        ) from exc
    event = billing_events.parse(payload)
    data = billing_events.procedure_input(event, {p.id: p.credits for p in credit_packs().values()})
    if data is None:
        log.info("stripe event ignored", extra={"event_id": event.id, "type": event.type})
        return WebhookAck(event_id=event.id, outcome="ignored")
    result = get_db().call(
        "apply_stripe_event", event_id=event.id, type=event.type, created=event.created, data=data
    )
    outcome = str(result["outcome"])
    log.info("stripe event applied", extra={"event_id": event.id, "type": event.type, "outcome": outcome})
    return WebhookAck(event_id=event.id, outcome=outcome)


def verify_signature(raw_body: bytes, signature: str | None, secret: str) -> str:
    """Check ``Stripe-Signature`` against the raw body with stripe-python (300 s tolerance); return the body."""
    import stripe

    if not signature:
        raise errors.InvalidSignature("The Stripe-Signature header is missing.")
    try:
        payload = raw_body.decode("utf-8")
        stripe.WebhookSignature.verify_header(payload, signature, secret, WEBHOOK_TOLERANCE_S)
    except UnicodeDecodeError as exc:
        raise errors.InvalidSignature("The webhook body is not UTF-8.") from exc
    except stripe.SignatureVerificationError as exc:
        raise errors.InvalidSignature(f"The Stripe signature does not verify: {exc.user_message}") from exc
    return payload
