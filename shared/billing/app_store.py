"""Credits bought in the iOS app: App Store transactions redeemed by the buyer, and App Store Server Notifications.

Both are one procedure call each (sql/procedures/app_store.sql, where the exactly-once rules and the refund policy
are written), made only with what shared/billing/apple.py verified with Apple's library. A transaction is credited
to the caller only when its signed ``appAccountToken`` is the caller's user id (the app sets it when purchasing).
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from shared import errors
from shared.auth import User
from shared.billing import apple
from shared.db import get_db
from shared.settings import get_settings

log = logging.getLogger("i2v.billing")
#: Notification types that move credits; every other verified type is recorded and acknowledged.
APPLIED_TYPES = frozenset({"REFUND", "REVOKE", "REFUND_REVERSED", "TEST"})
MAX_JWS = 16 * 1024  # characters; a signed transaction is about 4-7 KiB (three certificates and the payload)
JWS_PATTERN = (
    r"^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*$"  # JWS compact serialization: base64url parts
)


class RedeemRequest(BaseModel):
    """Body of POST redeem-app-store-transaction: the signed transaction, or its id to look it up at Apple."""

    model_config = ConfigDict(extra="forbid")
    signed_transaction: str | None = Field(
        default=None,
        max_length=MAX_JWS,
        pattern=JWS_PATTERN,
        description="StoreKit 2 `Transaction.jwsRepresentation` (JWS compact serialization).",
    )
    transaction_id: str | None = Field(
        default=None,
        pattern=r"^[0-9A-Za-z_-]{1,64}$",
        description="The transaction's id, fetched from the App Store Server API when no JWS is sent.",
    )

    @model_validator(mode="after")
    def _one_of_them(self) -> RedeemRequest:
        if (self.signed_transaction is None) == (self.transaction_id is None):
            raise ValueError("send either signed_transaction or transaction_id")
        return self


class AppStoreRedemption(BaseModel):
    """An App Store purchase as this server holds it (the same answer for every redeem of it)."""

    transaction_id: str
    product_id: str
    quantity: int
    credits: int = Field(description="Credits this purchase gives: the pack's credits times the quantity.")
    environment: Literal["Production", "Sandbox"]
    sandbox: bool = Field(description="A Sandbox purchase (App Review, TestFlight, sandbox testers).")
    status: Literal["credited", "refunded"] = Field(description="refunded: Apple refunded or revoked it.")


@dataclass(frozen=True)
class RedeemOutcome:
    """The answer to redeem-app-store-transaction, and whether the transaction was credited before."""

    redemption: AppStoreRedemption
    replayed: bool


class AppStoreNotification(BaseModel):
    """Body of POST app-store-notification: App Store Server Notifications V2."""

    model_config = ConfigDict(extra="ignore", populate_by_name=True)
    signed_payload: str = Field(
        alias="signedPayload", max_length=2 * MAX_JWS, pattern=JWS_PATTERN
    )  # nests a JWS


class NotificationAck(BaseModel):
    """Body of a 200 answer to the App Store."""

    received: bool = True
    notification_uuid: str
    type: str
    outcome: str


class AppStoreProduct(BaseModel):
    """An App Store product this server credits, and how many credits one purchase of it gives."""

    product_id: str
    credits: int


def products() -> list[AppStoreProduct]:
    """The App Store products for sale, fewest credits first (none when App Store purchases are not set up)."""
    if not apple.enabled():
        return []
    packs = sorted(apple.config().packs, key=lambda p: (p[1], p[0]))
    return [AppStoreProduct(product_id=product, credits=credits) for product, credits in packs]


def redeem(user: User, request: RedeemRequest) -> RedeemOutcome:
    """Verify the caller's App Store transaction and credit it once; a repeat answers the same."""
    cfg = apple.config()
    jws = request.signed_transaction or apple.fetch_transaction(str(request.transaction_id), cfg)
    tx = apple.verify_transaction(jws, cfg)
    if request.transaction_id is not None and tx.transaction_id != request.transaction_id:
        raise errors.AppStoreDataRefused(
            "The App Store answered with another transaction.", reason="transaction_id_mismatch"
        )
    _check_buyer(user, tx)
    packs = dict(cfg.packs)
    if tx.product_id not in packs:
        raise errors.UnknownCreditPack(
            f"The App Store product {tx.product_id!r} is not sold for credits here (APP_STORE_PACKS).",
            field="productId",
            allowed=sorted(packs),
        )
    result = get_db().call(
        "redeem_app_store_transaction",
        user=user.id,
        signup_credits=get_settings().signup_credits,
        credits=packs[tx.product_id] * tx.quantity,
        tx=tx.procedure_input(),
    )
    outcome = str(result.pop("outcome"))
    log.info(
        "app store transaction redeemed",
        extra={"transaction_id": tx.transaction_id, "environment": tx.environment, "outcome": outcome},
    )
    redemption = AppStoreRedemption(**result, sandbox=result["environment"] == apple.SANDBOX)
    return RedeemOutcome(redemption, replayed=outcome == "already_credited")


def _check_buyer(user: User, tx: apple.VerifiedTransaction) -> None:
    """The transaction's appAccountToken must be the caller's user id (compared as UUIDs, any letter case)."""
    if tx.app_account_token is None:
        raise errors.AppStoreAccountMismatch(
            "This purchase names no account: buy with appAccountToken set to the user id.",
            reason="missing_app_account_token",
        )
    try:
        buyer = uuid.UUID(tx.app_account_token)
    except ValueError:
        buyer = None
    if buyer != user.id:
        raise errors.AppStoreAccountMismatch(reason="other_account")


def handle_notification(body: AppStoreNotification) -> NotificationAck:
    """Verify an App Store Server Notification and apply it once (refunds, reversals, revocations)."""
    note = apple.verify_notification(body.signed_payload, apple.config())
    tx = note.transaction
    result = get_db().call(
        "apply_app_store_notification",
        uuid=note.notification_uuid,
        type=note.type,
        subtype=note.subtype,
        signed_date=note.signed_date,
        environment=note.environment,
        tx=tx.procedure_input() if tx is not None else None,
    )
    outcome = str(result["outcome"])
    extra = {
        "notification_uuid": note.notification_uuid,
        "type": note.type,
        "subtype": note.subtype,
        "transaction_id": tx.transaction_id if tx is not None else None,
        "outcome": outcome,
    }
    if note.type in APPLIED_TYPES:
        log.info("app store notification applied", extra=extra)
    else:
        log.info("app store notification ignored: type %s", note.type, extra=extra)
    return NotificationAck(notification_uuid=note.notification_uuid, type=note.type, outcome=outcome)
