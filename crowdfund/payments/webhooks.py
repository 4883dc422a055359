"""Stripe webhooks: verify, store once, re-read, update through the payment services.

1. The signature is checked with STRIPE_WEBHOOK_SECRET and the timestamp must be within
   STRIPE_WEBHOOK_TOLERANCE seconds; anything else is refused (400) and changes nothing.
2. The event is stored once by its id. A delivery of an event already handled is
   acknowledged and ignored; one whose handling failed earlier is handled again.
3. Events can arrive late, twice or out of order, so their payload is never trusted for
   state: we find our operation (by the object's id, else by our key in its metadata),
   re-read the object at Stripe and record its *current* state with the same service
   function a charge, a retry or `flask payments reconcile` uses. Money outcomes post to
   the ledger there, exactly once.
4. Event types we do not act on are stored and acknowledged with 200.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import stripe
from flask import current_app
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from crowdfund.database import begin_write
from crowdfund.errors import DomainError
from crowdfund.extensions import db
from crowdfund.models_base import utcnow
from crowdfund.payments import service
from crowdfund.payments.gateway import KEY_METADATA
from crowdfund.payments.models import OperationKind, PaymentOperation, PayoutAccount, WebhookEvent

DEFAULT_TOLERANCE_SECONDS = 300

#: Event type prefixes we act on, and the kind of operation their object belongs to.
HANDLED_PREFIXES = {
    "payment_intent.": OperationKind.CHARGE,
    "refund.": OperationKind.REFUND,
    "charge.refund.": OperationKind.REFUND,
    "transfer.": OperationKind.PAYOUT,
}


class WebhookRejected(Exception):
    """The request is not a genuine, recent Stripe event: answer 400 and change nothing."""


@dataclass(frozen=True)
class WebhookReceipt:
    event_id: str
    type: str
    duplicate: bool
    outcome: str


def verify(payload: bytes, signature: str | None) -> dict:
    """The event, if the signature matches our secret and is recent; else WebhookRejected."""
    secret = current_app.config.get("STRIPE_WEBHOOK_SECRET")
    if not secret:
        raise WebhookRejected("Webhooks are not configured (STRIPE_WEBHOOK_SECRET is not set).")
    tolerance = int(current_app.config.get("STRIPE_WEBHOOK_TOLERANCE", DEFAULT_TOLERANCE_SECONDS))
    try:
        text = payload.decode("utf-8")
        stripe.WebhookSignature.verify_header(text, signature, secret, tolerance)
        event = json.loads(text)
    except (stripe.SignatureVerificationError, UnicodeDecodeError, ValueError) as exc:
        raise WebhookRejected(str(exc)) from None
    if (
        not isinstance(event, dict)
        or not isinstance(event.get("id"), str)
        or not isinstance(event.get("type"), str)
    ):
        raise WebhookRejected("Not a Stripe event.")
    return event


def _store(event: dict, payload: str) -> tuple[WebhookEvent, bool]:
    """(stored event, already handled?) — inserts the event the first time it is seen."""
    begin_write()
    stored = db.session.scalars(select(WebhookEvent).where(WebhookEvent.event_id == event["id"])).first()
    if stored is not None:
        handled = stored.processed_at is not None
        db.session.commit()
        return stored, handled
    stored = WebhookEvent(event_id=event["id"][:100], type=event["type"][:100], payload=payload)
    db.session.add(stored)
    try:
        db.session.commit()
    except IntegrityError:  # the same event, delivered twice at once
        db.session.rollback()
        stored = db.session.scalars(select(WebhookEvent).where(WebhookEvent.event_id == event["id"])).one()
        return stored, True
    return stored, False


def _mark(event_id: int, outcome: str) -> None:
    begin_write()
    stored = db.session.get(WebhookEvent, event_id)
    stored.processed_at = utcnow()
    stored.outcome = outcome[:300]
    db.session.commit()


def _operation_for(kind: OperationKind, obj: dict) -> PaymentOperation | None:
    object_id = obj.get("id")
    if object_id:
        op = db.session.scalars(
            select(PaymentOperation).where(
                PaymentOperation.kind == kind, PaymentOperation.gateway_id == object_id
            )
        ).first()
        if op is not None:
            return op
    key = (obj.get("metadata") or {}).get(KEY_METADATA)
    if key:
        op = service.find_operation(key)
        if op is not None and op.kind is kind:
            return op
    return None


def _refund_operations_of_charge(obj: dict) -> list[PaymentOperation]:
    """charge.refunded carries a Charge: every refund we made of its PaymentIntent."""
    intent = obj.get("payment_intent")
    if not intent:
        return []
    parent = db.session.scalars(
        select(PaymentOperation).where(
            PaymentOperation.kind == OperationKind.CHARGE, PaymentOperation.gateway_id == intent
        )
    ).first()
    if parent is None:
        return []
    return list(
        db.session.scalars(
            select(PaymentOperation).where(
                PaymentOperation.kind == OperationKind.REFUND, PaymentOperation.parent_id == parent.id
            )
        )
    )


def _handle(event: dict) -> str:
    """Act on one event; returns what was done, for the stored record."""
    event_type = event["type"]
    obj = (event.get("data") or {}).get("object") or {}
    if event_type == "account.updated":
        account = db.session.scalars(
            select(PayoutAccount).where(PayoutAccount.account_id == obj.get("id"))
        ).first()
        if account is None:
            return "no matching payout account"
        service.refresh_payout_account(account.organisation_id)
        return f"payout account {account.account_id} refreshed"
    if event_type == "charge.refunded":
        ops = _refund_operations_of_charge(obj)
        for op in ops:
            service.refresh_operation(op.id)
        return f"{len(ops)} refund(s) refreshed"
    kind = next((k for prefix, k in HANDLED_PREFIXES.items() if event_type.startswith(prefix)), None)
    if kind is None:
        return "ignored"
    op = _operation_for(kind, obj)
    if op is None:
        return "no matching operation"
    before = op.state
    op = service.refresh_operation(op.id)
    return f"{op.kind.value} {op.id}: {before.value} -> {op.state.value}"


def receive_stripe_event(payload: bytes, signature: str | None) -> WebhookReceipt:
    """Verify, store once and handle a Stripe event (see the module docstring).

    Raises WebhookRejected (answer 400) for a forged or stale request; a DomainError when
    Stripe could not be reached to re-read the object (answer 5xx: Stripe delivers again).
    """
    event = verify(payload, signature)
    stored, handled = _store(event, payload.decode("utf-8"))
    if handled:
        return WebhookReceipt(event["id"], event["type"], True, stored.outcome or "")
    try:
        outcome = _handle(event)
    except DomainError:
        db.session.rollback()
        raise
    _mark(stored.id, outcome)
    return WebhookReceipt(event["id"], event["type"], False, outcome)
