"""Stripe webhooks: verify, store once, re-read, update through the payment services.

1. The signature is checked with STRIPE_WEBHOOK_SECRET; its timestamp must be no older
   than STRIPE_WEBHOOK_TOLERANCE seconds and no further in the future than
   STRIPE_WEBHOOK_CLOCK_SKEW seconds. Anything else is refused (400) and changes nothing;
   the answer never says why (the reason is logged for the operators).
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
import time
from dataclasses import dataclass

import stripe
from flask import current_app
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from crowdfund.database import retry_on_lock, unit_of_work
from crowdfund.errors import DomainError, ErrorCode
from crowdfund.extensions import db
from crowdfund.models_base import utcnow
from crowdfund.payments import service
from crowdfund.payments.gateway import KEY_METADATA
from crowdfund.payments.models import OperationKind, PaymentOperation, PayoutAccount, WebhookEvent

#: Event type prefixes we act on, and the kind of operation their object belongs to.
HANDLED_PREFIXES = {
    "payment_intent.": OperationKind.CHARGE,
    "refund.": OperationKind.REFUND,
    "charge.refund.": OperationKind.REFUND,
    "transfer.": OperationKind.PAYOUT,
}


class WebhookRejected(DomainError):
    """The request is not a genuine, recent Stripe event: answer 400 and change nothing.

    The message is the same whatever the reason; the reason goes to the log.
    """

    code = ErrorCode.INVALID_SIGNATURE

    def __init__(self, reason: str):
        super().__init__(code=ErrorCode.INVALID_SIGNATURE)
        self.reason = reason


@dataclass(frozen=True)
class WebhookReceipt:
    event_id: str
    type: str
    duplicate: bool
    outcome: str


def _reject(reason: str, *args) -> WebhookRejected:
    current_app.logger.warning("Stripe webhook refused: " + reason, *args)
    return WebhookRejected(reason % args if args else reason)


def _signed_at(signature: str) -> int | None:
    """The `t=` timestamp of a Stripe-Signature header (None if it has none)."""
    for item in signature.split(","):
        name, _, value = item.strip().partition("=")
        if name == "t" and value.isascii() and value.isdigit():
            return int(value)
    return None


def verify(payload: bytes, signature: str | None) -> dict:
    """The event, if the signature matches our secret and was made recently; else WebhookRejected."""
    config = current_app.config
    secret = config["STRIPE_WEBHOOK_SECRET"]
    if not secret:
        raise _reject("STRIPE_WEBHOOK_SECRET is not set")
    try:
        text = payload.decode("utf-8")
        stripe.WebhookSignature.verify_header(
            text, signature, secret, int(config["STRIPE_WEBHOOK_TOLERANCE"])
        )
        event = json.loads(text)
    except (stripe.SignatureVerificationError, UnicodeDecodeError, ValueError) as exc:
        raise _reject("%s", exc) from None
    signed_at = _signed_at(signature or "")
    if signed_at is None or signed_at > time.time() + int(config["STRIPE_WEBHOOK_CLOCK_SKEW"]):
        raise _reject("signature timestamp %s is in the future", signed_at)
    if (
        not isinstance(event, dict)
        or not isinstance(event.get("id"), str)
        or not isinstance(event.get("type"), str)
    ):
        raise _reject("the signed body is not a Stripe event")
    return event


def _find_event(event_id: str) -> WebhookEvent | None:
    return db.session.scalars(select(WebhookEvent).where(WebhookEvent.event_id == event_id)).first()


@retry_on_lock
def _store(event: dict, payload: str) -> tuple[int, bool, str]:
    """(stored event id, already handled?, its outcome) — stores the event the first time it is seen."""
    try:
        with unit_of_work():
            stored = _find_event(event["id"])
            if stored is None:
                stored = WebhookEvent(event_id=event["id"][:100], type=event["type"][:100], payload=payload)
                db.session.add(stored)
                db.session.flush()
            return stored.id, stored.processed_at is not None, stored.outcome or ""
    except IntegrityError:  # the same event, delivered twice at once
        stored = _find_event(event["id"])
        return stored.id, True, stored.outcome or ""


@retry_on_lock
def _mark(event_id: int, outcome: str) -> None:
    with unit_of_work():
        stored = db.session.get(WebhookEvent, event_id)
        stored.processed_at = utcnow()
        stored.outcome = outcome[:300]


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
    stored_id, handled, outcome = _store(event, payload.decode("utf-8"))
    if handled:
        return WebhookReceipt(event["id"], event["type"], True, outcome)
    outcome = _handle(event)
    _mark(stored_id, outcome)
    return WebhookReceipt(event["id"], event["type"], False, outcome)
