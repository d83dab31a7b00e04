"""Stripe webhook events -> the input of the ``apply_stripe_event`` procedure (plain data, no stripe import).

Only the fields the procedure needs are read from ``data.object``; Stripe adds fields freely, so unknown ones
are ignored. The signature is checked before anything here runs (``shared/billing/checkout.py``).
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError

from shared import errors

SESSION_EVENTS = frozenset(
    {
        "checkout.session.completed",
        "checkout.session.async_payment_succeeded",
        "checkout.session.async_payment_failed",
        "checkout.session.expired",
    }
)
REFUND_EVENTS = frozenset({"charge.refunded"})


class _StripeObject(BaseModel):
    model_config = ConfigDict(extra="ignore")


class _EventData(_StripeObject):
    object: dict[str, Any]


class StripeEvent(_StripeObject):
    """The envelope of a Stripe webhook event."""

    id: str
    type: str
    created: int
    data: _EventData


class _Session(_StripeObject):
    id: str
    payment_status: str | None = None
    payment_intent: str | dict[str, Any] | None = None
    amount_total: int | None = None
    currency: str | None = None
    client_reference_id: str | None = None
    metadata: dict[str, str] | None = None


class _Refund(_StripeObject):
    id: str


class _RefundList(_StripeObject):
    data: list[_Refund] = []


class _Charge(_StripeObject):
    id: str
    payment_intent: str | dict[str, Any] | None = None
    amount: int
    amount_refunded: int
    currency: str
    refunds: _RefundList | None = None


def parse(payload: str) -> StripeEvent:
    """A verified webhook body as an event; 400 when it is not one."""
    try:
        return StripeEvent.model_validate_json(payload)
    except ValidationError as exc:
        raise errors.BadRequest("The webhook body is not a Stripe event.") from exc


def procedure_input(event: StripeEvent, pack_credits: Mapping[str, int]) -> dict[str, Any] | None:
    """The fields ``apply_stripe_event`` needs from ``data.object``; None for event types we do not handle.

    ``pack_credits`` (pack id -> credits) fills in the credits of a session whose metadata lacks them.
    """
    try:
        if event.type in SESSION_EVENTS:
            return _session_data(_Session.model_validate(event.data.object), pack_credits)
        if event.type in REFUND_EVENTS:
            return _charge_data(_Charge.model_validate(event.data.object))
    except ValidationError as exc:
        raise errors.BadRequest(f"The {event.type} event's object is not what Stripe sends.") from exc
    return None


def _session_data(session: _Session, pack_credits: Mapping[str, int]) -> dict[str, Any]:
    meta = session.metadata or {}
    pack_id = meta.get("pack_id")
    credits = _int(meta.get("credits"))
    if credits is None and pack_id is not None:
        credits = pack_credits.get(pack_id)
    return {
        "session_id": session.id,
        "payment_status": session.payment_status,
        "payment_intent": _object_id(session.payment_intent),
        "amount_total": session.amount_total,
        "currency": session.currency,
        "user_id": _uuid(meta.get("user_id") or session.client_reference_id),
        "pack_id": pack_id,
        "credits": credits,
    }


def _charge_data(charge: _Charge) -> dict[str, Any]:
    return {
        "charge_id": charge.id,
        "payment_intent": _object_id(charge.payment_intent),
        "amount": charge.amount,
        "amount_refunded": charge.amount_refunded,
        "currency": charge.currency,
        "refund_ids": [r.id for r in charge.refunds.data] if charge.refunds else [],
    }


def _object_id(value: str | dict[str, Any] | None) -> str | None:
    """An id from a field Stripe sends either as an id or, when expanded, as the object."""
    if isinstance(value, dict):
        found = value.get("id")
        return found if isinstance(found, str) else None
    return value or None


def _uuid(value: str | None) -> str | None:
    try:
        return str(uuid.UUID(value)) if value else None
    except ValueError:
        return None


def _int(value: str | None) -> int | None:
    return int(value) if value and value.isdigit() else None
