"""Payment use cases: saved cards, charges, refunds, payouts — exactly once.

Every money-moving use case runs in three steps:

1. persist the intent: a `PaymentOperation` in state *pending* with the caller's
   idempotency key, committed before the gateway is called;
2. call the gateway (off-session, with the key and metadata naming the operation);
3. record the outcome and, on success, post the ledger transaction — one commit.

If the process dies between 1 and 3, the operation stays pending. The next call with the
same key, a webhook, or `flask payments reconcile` looks it up at the gateway (by the
gateway id we stored, else by the key in its metadata) and records what really happened
instead of charging again; only when the gateway has no trace of it is the call made
again — and only by one process at a time (the call lease). This holds even when the
gateway ignores idempotency keys.

Webhooks, the CLI and the pages all go through these functions; only this package knows
which gateway is in use.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta

from flask import current_app
from sqlalchemy import func, or_, select, update
from sqlalchemy.exc import IntegrityError

from crowdfund.database import begin_write, lock
from crowdfund.errors import Conflict, DomainError, Forbidden, NotFound, ValidationError
from crowdfund.extensions import db
from crowdfund.models_base import utcnow
from crowdfund.money import Money
from crowdfund.payments.gateway import (
    KEY_METADATA,
    OPERATION_METADATA,
    CardError,
    Gateway,
    GatewayResult,
    GatewayUnavailable,
    SetupSession,
)
from crowdfund.payments.models import (
    ChargeOutcome,
    GatewayCustomer,
    MethodStatus,
    OperationKind,
    OperationState,
    PaymentMethod,
    PaymentOperation,
    PayoutAccount,
)

__all__ = [
    "ChargeOutcome",
    "OperationState",
    "PaymentMethod",
    "PaymentOperation",
    "authenticate_payment_method",
    "begin_add_payment_method",
    "charge",
    "default_payment_method",
    "find_operation",
    "get_gateway",
    "list_payment_methods",
    "payout",
    "payout_account",
    "payout_destination",
    "reconcile_operation",
    "record_outcome",
    "refund",
    "remove_payment_method",
    "save_payment_method",
    "set_default_payment_method",
]

#: How long one process may take over the gateway call of an operation before another may retry it.
DEFAULT_CALL_LEASE_SECONDS = 120


# --- the gateway -------------------------------------------------------------------------
@contextmanager
def _rollback_on_error() -> Iterator[None]:
    """End the write transaction when a use case refuses, so no lock outlives the refusal."""
    try:
        yield
    except DomainError:
        db.session.rollback()
        raise


def get_gateway() -> Gateway:
    """The gateway named by PAYMENT_GATEWAY ("sandbox", the default, or "stripe").

    Tests may put a ready gateway in `app.extensions["payments.gateway"]`.
    """
    override = current_app.extensions.get("payments.gateway")
    if override is not None:
        return override
    name = (current_app.config.get("PAYMENT_GATEWAY") or "sandbox").lower()
    if name == "sandbox":
        from crowdfund.payments.sandbox import SandboxGateway

        return SandboxGateway()
    if name == "stripe":
        from crowdfund.payments.stripe_gateway import StripeGateway

        return StripeGateway.from_config(current_app.config)
    raise RuntimeError(f"PAYMENT_GATEWAY must be 'sandbox' or 'stripe', not {name!r}")


def gateway_name() -> str:
    return get_gateway().name


def _lease() -> timedelta:
    return timedelta(
        seconds=int(current_app.config.get("PAYMENT_CALL_LEASE_SECONDS", DEFAULT_CALL_LEASE_SECONDS))
    )


def _gateway_down(exc: GatewayUnavailable) -> Conflict:
    return Conflict(
        "The payment service is not answering right now. Please try again in a few minutes.",
        code="gateway_unavailable",
    )


# --- customers and saved cards -----------------------------------------------------------
def _customer_id(user, gateway: Gateway, create: bool = True) -> str | None:
    """The user's customer id at `gateway`, created there (and committed here) on first use."""
    row = db.session.scalars(
        select(GatewayCustomer).where(
            GatewayCustomer.user_id == user.id, GatewayCustomer.gateway == gateway.name
        )
    ).first()
    if row is not None or not create:
        return row.customer_id if row else None
    try:
        customer_id = gateway.ensure_customer(
            user_id=user.id, email=user.email, name=user.name, customer_id=None
        )
    except GatewayUnavailable as exc:
        raise _gateway_down(exc) from None
    begin_write()
    db.session.add(GatewayCustomer(user_id=user.id, gateway=gateway.name, customer_id=customer_id))
    try:
        db.session.commit()
    except IntegrityError:
        db.session.rollback()
    row = db.session.scalars(
        select(GatewayCustomer).where(
            GatewayCustomer.user_id == user.id, GatewayCustomer.gateway == gateway.name
        )
    ).one()
    return row.customer_id


def list_payment_methods(user) -> list[PaymentMethod]:
    """The user's saved cards at the current gateway, default first, then newest."""
    name = gateway_name()
    return list(
        db.session.scalars(
            select(PaymentMethod)
            .where(
                PaymentMethod.user_id == user.id,
                PaymentMethod.gateway == name,
                PaymentMethod.status != MethodStatus.REMOVED,
            )
            .order_by(
                PaymentMethod.is_default.desc(), PaymentMethod.created_at.desc(), PaymentMethod.id.desc()
            )
        )
    )


def default_payment_method(user) -> PaymentMethod | None:
    """The card to charge: the user's default if usable and unexpired, else the newest usable card."""
    now = utcnow()
    for method in list_payment_methods(user):
        if method.is_usable and not method.is_expired_at(now):
            return method
    return None


def get_payment_method(user, method_id: int) -> PaymentMethod:
    """One of the user's saved cards; NotFound for anyone else's."""
    method = db.session.get(PaymentMethod, method_id)
    if method is None or method.user_id != user.id or method.status is MethodStatus.REMOVED:
        raise NotFound("That card is not saved in your account.")
    return method


def begin_add_payment_method(user) -> SetupSession:
    """Start saving a card: what the "add a card" page needs (Stripe: a SetupIntent)."""
    gateway = get_gateway()
    customer_id = _customer_id(user, gateway)
    try:
        return gateway.begin_setup(customer_id=customer_id)
    except GatewayUnavailable as exc:
        raise _gateway_down(exc) from None


def _make_default(method: PaymentMethod) -> None:
    db.session.execute(
        update(PaymentMethod)
        .where(PaymentMethod.user_id == method.user_id, PaymentMethod.id != method.id)
        .values(is_default=False)
    )
    method.is_default = True


def save_payment_method(user, data: dict[str, str]) -> PaymentMethod:
    """Save the card the page collected (sandbox: the form; Stripe: the confirmed SetupIntent).

    A usable new card becomes the default. A card that needs authentication is saved in
    state `requires_authentication` until `authenticate_payment_method`. Raises
    ValidationError with a message for the card holder when the card is refused.
    """
    gateway = get_gateway()
    customer_id = _customer_id(user, gateway)
    try:
        card = gateway.confirm_setup(customer_id=customer_id, data=data)
    except CardError as exc:
        raise ValidationError(exc.message, code=exc.code, field=exc.field) from None
    except GatewayUnavailable as exc:
        raise _gateway_down(exc) from None
    begin_write()
    method = db.session.scalars(
        select(PaymentMethod).where(
            PaymentMethod.gateway == gateway.name, PaymentMethod.gateway_id == card.gateway_id
        )
    ).first()
    if method is not None:
        db.session.rollback()
        if method.user_id != user.id:
            raise Forbidden("That card belongs to another account.")
        return method
    method = PaymentMethod(
        user_id=user.id,
        gateway=gateway.name,
        gateway_id=card.gateway_id,
        brand=card.brand,
        last4=card.last4,
        exp_month=card.exp_month,
        exp_year=card.exp_year,
        status=MethodStatus.REQUIRES_AUTHENTICATION if card.needs_authentication else MethodStatus.USABLE,
        setup_reference=card.reference,
        is_default=False,
    )
    db.session.add(method)
    db.session.flush()
    if method.is_usable:
        _make_default(method)
    db.session.commit()
    return method


def authenticate_payment_method(user, method_id: int) -> PaymentMethod:
    """The card holder confirmed the card with their bank: it becomes usable and the default."""
    method = get_payment_method(user, method_id)
    if method.status is MethodStatus.USABLE:
        return method
    gateway = get_gateway()
    customer_id = _customer_id(user, gateway)
    try:
        gateway.complete_authentication(
            customer_id=customer_id, gateway_id=method.gateway_id, reference=method.setup_reference
        )
    except CardError as exc:
        raise ValidationError(exc.message, code=exc.code) from None
    except GatewayUnavailable as exc:
        raise _gateway_down(exc) from None
    with _rollback_on_error():
        begin_write()
        method = get_payment_method(user, method_id)
    method.status = MethodStatus.USABLE
    _make_default(method)
    db.session.commit()
    return method


def set_default_payment_method(user, method_id: int) -> PaymentMethod:
    """Make one of the user's usable cards the one charged."""
    with _rollback_on_error():
        begin_write()
        method = get_payment_method(user, method_id)
        if not method.is_usable:
            raise ValidationError("Confirm this card with your bank before making it your default.")
    _make_default(method)
    db.session.commit()
    return method


def remove_payment_method(user, method_id: int) -> None:
    """Forget a saved card; the newest other usable card becomes the default."""
    with _rollback_on_error():
        begin_write()
        method = get_payment_method(user, method_id)
    was_default = method.is_default
    method.status = MethodStatus.REMOVED
    method.is_default = False
    db.session.flush()
    if was_default:
        replacement = default_payment_method(user)
        if replacement is not None:
            _make_default(replacement)
    customer_id = _customer_id(user, get_gateway(), create=False)
    gateway_id, gateway_used = method.gateway_id, method.gateway
    db.session.commit()
    gateway = get_gateway()
    if customer_id and gateway.name == gateway_used:
        try:
            gateway.detach(customer_id=customer_id, gateway_id=gateway_id)
        except GatewayUnavailable:
            current_app.logger.warning("Could not detach card %s at the gateway", gateway_id)


# --- operations ------------------------------------------------------------------------
def find_operation(idempotency_key: str) -> PaymentOperation | None:
    return db.session.scalars(
        select(PaymentOperation).where(PaymentOperation.idempotency_key == idempotency_key)
    ).first()


def _check_key(key: str) -> str:
    key = (key or "").strip()
    if not key or len(key) > 200:
        raise ValidationError(
            "An idempotency key of 1 to 200 characters is required.", code="idempotency_key"
        )
    return key


def _check_amount(amount: Money) -> None:
    if not isinstance(amount, Money) or not amount.is_positive:
        raise ValidationError("The amount must be a positive amount of money.", code="amount")


def _clean_metadata(metadata: dict | None) -> dict[str, str]:
    return {str(k)[:40]: str(v)[:500] for k, v in (metadata or {}).items()}


def _same_request(op: PaymentOperation, kind: OperationKind, amount: Money) -> None:
    if op.kind is not kind or op.amount != amount:
        raise Conflict(
            f"The key {op.idempotency_key!r} was already used for a different {op.kind.value}.",
            code="idempotency_conflict",
        )


def _create_operation(**fields) -> tuple[PaymentOperation, bool]:
    """Insert and COMMIT a pending operation holding the call lease; (existing, False) if the key exists."""
    begin_write()
    return _insert_pending(**fields)


def _insert_pending(**fields) -> tuple[PaymentOperation, bool]:
    """`_create_operation` inside a write transaction the caller already opened (and checked under)."""
    existing = find_operation(fields["idempotency_key"])
    if existing is not None:
        db.session.rollback()
        return find_operation(fields["idempotency_key"]), False
    op = PaymentOperation(
        state=OperationState.PENDING,
        attempts=1,
        call_lease_until=utcnow() + _lease(),
        refunded_amount=0,
        **fields,
    )
    db.session.add(op)
    try:
        db.session.commit()
    except IntegrityError:  # the same key, inserted by another process just now
        db.session.rollback()
        return find_operation(fields["idempotency_key"]), False
    return op, True


def _claim_call(op: PaymentOperation) -> bool:
    """Take the call lease of a pending operation (one process at a time calls the gateway)."""
    begin_write()
    now = utcnow()
    taken = db.session.execute(
        update(PaymentOperation)
        .where(
            PaymentOperation.id == op.id,
            PaymentOperation.state == OperationState.PENDING,
            or_(PaymentOperation.call_lease_until.is_(None), PaymentOperation.call_lease_until < now),
        )
        .values(call_lease_until=now + _lease(), attempts=PaymentOperation.attempts + 1, updated_at=now)
        .execution_options(synchronize_session=False)
    ).rowcount
    db.session.commit()
    db.session.refresh(op)
    return taken == 1


def _gateway_metadata(op: PaymentOperation) -> dict[str, str]:
    meta = dict(op.details or {})
    meta[KEY_METADATA] = op.idempotency_key
    meta[OPERATION_METADATA] = str(op.id)
    if op.campaign_id is not None:
        meta.setdefault("campaign_id", str(op.campaign_id))
    return meta


def _customer_of(op: PaymentOperation, gateway: Gateway) -> str | None:
    if op.user_id is None:
        return None
    return db.session.scalar(
        select(GatewayCustomer.customer_id).where(
            GatewayCustomer.user_id == op.user_id, GatewayCustomer.gateway == gateway.name
        )
    )


def _call_gateway(op: PaymentOperation, gateway: Gateway) -> GatewayResult:
    """Make the one gateway call the operation stands for."""
    try:
        if op.kind is OperationKind.CHARGE:
            return gateway.charge(
                customer_id=_customer_of(op, gateway) or "",
                payment_method_id=op.payment_method.gateway_id,
                amount=op.amount,
                idempotency_key=op.idempotency_key,
                description=op.description,
                metadata=_gateway_metadata(op),
            )
        if op.kind is OperationKind.REFUND:
            return gateway.refund(
                charge_id=op.parent.gateway_id,
                amount=op.amount,
                idempotency_key=op.idempotency_key,
                metadata=_gateway_metadata(op),
            )
        return gateway.payout(
            destination=op.destination,
            amount=op.amount,
            idempotency_key=op.idempotency_key,
            description=op.description,
            metadata=_gateway_metadata(op),
        )
    except GatewayUnavailable as exc:
        return GatewayResult(
            exc.outcome, None, "unavailable", failure_code="gateway_unavailable", failure_message=exc.message
        )


def _look_up(op: PaymentOperation, gateway: Gateway) -> GatewayResult | None:
    """What the gateway knows of this operation, or None if it has never seen it."""
    return gateway.find(
        op.kind,
        idempotency_key=op.idempotency_key,
        gateway_id=op.gateway_id,
        customer_id=_customer_of(op, gateway),
        parent_id=op.parent.gateway_id if op.parent is not None else None,
        destination=op.destination,
    )


def _call_and_record(op: PaymentOperation, gateway: Gateway) -> PaymentOperation:
    result = _call_gateway(op, gateway)
    return record_outcome(op.id, result)


def _resume(op: PaymentOperation, gateway: Gateway) -> PaymentOperation:
    """A pending operation seen again: find out what happened before trying anything."""
    if op.state is not OperationState.PENDING:
        return op
    try:
        found = _look_up(op, gateway)
    except GatewayUnavailable:
        return op
    if found is not None and found.outcome is not ChargeOutcome.TEMPORARY:
        return record_outcome(op.id, found)
    if not _claim_call(op):
        return op  # another process is calling the gateway for it right now
    return _call_and_record(op, gateway)


# --- recording outcomes ----------------------------------------------------------------
def _lock_operation(op_id: int) -> PaymentOperation:
    return db.session.scalars(
        select(PaymentOperation)
        .where(PaymentOperation.id == op_id)
        .with_for_update()
        .execution_options(populate_existing=True)
    ).one()


def apply_result(op: PaymentOperation, result: GatewayResult) -> bool:
    """Bring a (locked) operation in line with what the gateway said; post the ledger on success.

    Flushes, never commits. Returns True when the operation's state changed. A final
    operation never changes again; a TEMPORARY answer or one still in progress leaves it
    pending for a later look.
    """
    if result.gateway_id and not op.gateway_id:
        op.gateway_id = result.gateway_id
    op.call_lease_until = None
    if op.is_final or result.outcome is None:
        db.session.flush()
        return False
    before = op.state
    outcome = result.outcome
    if outcome is ChargeOutcome.TEMPORARY:
        op.result = outcome
        op.failure_code = result.failure_code or "temporary"
        op.failure_message = result.failure_message or "The payment service is busy; this will be retried."
        db.session.flush()
        return False
    op.result = outcome
    if outcome is ChargeOutcome.SUCCEEDED:
        op.transition_to(OperationState.SUCCEEDED)
        op.failure_code = op.failure_message = None
        _on_success(op)
    elif outcome is ChargeOutcome.NEEDS_AUTHENTICATION and op.kind is OperationKind.CHARGE:
        op.transition_to(OperationState.REQUIRES_ACTION)
        op.failure_code = result.failure_code or "authentication_required"
        op.failure_message = result.failure_message
    else:
        op.transition_to(OperationState.FAILED)
        op.failure_code = result.failure_code or outcome.value
        op.failure_message = result.failure_message
    db.session.flush()
    return op.state is not before


def record_outcome(op_id: int, result: GatewayResult) -> PaymentOperation:
    """Record what the gateway said about an operation, post the ledger, commit once."""
    begin_write()
    op = _lock_operation(op_id)
    apply_result(op, result)
    db.session.commit()
    return op


def _on_success(op: PaymentOperation) -> None:
    """A money outcome: post it to the ledger (and keep the charge's refunded total)."""
    from crowdfund.campaigns.models import Campaign
    from crowdfund.ledger import service as ledger

    amount = op.amount
    clearing = ledger.clearing_account(amount.currency)
    if op.kind is OperationKind.CHARGE:
        campaign = db.session.get(Campaign, op.campaign_id)
        legs = [
            ledger.Leg.debit(clearing, amount),
            ledger.Leg.credit(ledger.escrow_account(campaign), amount),
        ]
        description = f"Card payment received (payment #{op.id})"
    elif op.kind is OperationKind.REFUND:
        parent = db.session.scalars(
            select(PaymentOperation).where(PaymentOperation.id == op.parent_id).with_for_update()
        ).one()
        parent.refunded_amount = (parent.refunded_amount or 0) + amount.amount
        campaign = db.session.get(Campaign, op.campaign_id)
        legs = [
            ledger.Leg.debit(ledger.escrow_account(campaign), amount),
            ledger.Leg.credit(clearing, amount),
        ]
        description = f"Refund of payment #{op.parent_id}"
    else:
        payable = (
            ledger.provider_payable_account(op.provider_id, amount.currency)
            if op.provider_id is not None
            else ledger.org_payable_account(op.organisation_id, amount.currency)
        )
        legs = [ledger.Leg.debit(payable, amount), ledger.Leg.credit(clearing, amount)]
        description = f"Payout #{op.id}" + (f": {op.description}" if op.description else "")
    key = ledger_key(op)
    ledger.post_transaction(key, description[:300], legs, campaign_id=op.campaign_id, kind=op.kind.value)
    op.ledger_key = key


def ledger_key(op: PaymentOperation) -> str:
    """The idempotency key of the ledger transaction an operation's success posts."""
    return f"payment:{op.id}:{op.kind.value}"


# --- charges ----------------------------------------------------------------------------
def charge(
    *,
    user,
    payment_method: PaymentMethod | None,
    amount: Money,
    idempotency_key: str,
    campaign_id: int,
    description: str,
    metadata: dict[str, str] | None = None,
) -> PaymentOperation:
    """Charge a saved card off-session, exactly once per idempotency key.

    Commits a pending operation, calls the gateway, records the outcome and on success
    posts clearing -> campaign escrow to the ledger. The same key again returns the same
    operation (a pending one is looked up at the gateway first, never blindly repeated).
    `.state`: succeeded, failed (`.failure_message` says what the backer can do),
    requires_action (the backer must confirm the card with their bank; charge again with
    a new key once they have) or pending (the gateway was busy or unreachable: call again
    later with the same key, or let `flask payments reconcile` finish it). `.result` is a
    ChargeOutcome.
    """
    key = _check_key(idempotency_key)
    _check_amount(amount)
    gateway = get_gateway()
    op = find_operation(key)
    if op is None:
        if payment_method is None or payment_method.user_id != user.id:
            raise ValidationError("Add a card to your account first.", code="no_payment_method")
        if payment_method.status is MethodStatus.REMOVED:
            raise ValidationError(
                "That card has been removed. Add a card and try again.", code="card_removed"
            )
        if payment_method.gateway != gateway.name:
            raise ValidationError(
                "That card was saved with another payment provider. Add it again.", code="card_other_gateway"
            )
        if campaign_id is None:
            raise ValidationError("A charge belongs to a campaign.", code="campaign")
        _customer_id(user, gateway)
        op, created = _create_operation(
            kind=OperationKind.CHARGE,
            idempotency_key=key,
            gateway=gateway.name,
            amount_amount=amount.amount,
            currency=amount.currency,
            user_id=user.id,
            campaign_id=campaign_id,
            payment_method_id=payment_method.id,
            description=(description or "")[:300],
            details=_clean_metadata(metadata),
        )
        if created:
            return _call_and_record(op, gateway)
    _same_request(op, OperationKind.CHARGE, amount)
    return _resume(op, gateway)


# --- refunds ---------------------------------------------------------------------------
def _reserved(kind: OperationKind, *conditions) -> int:
    """Minor units of operations of `kind` that have succeeded or may still succeed."""
    return int(
        db.session.scalar(
            select(func.coalesce(func.sum(PaymentOperation.amount_amount), 0)).where(
                PaymentOperation.kind == kind,
                PaymentOperation.state != OperationState.FAILED,
                *conditions,
            )
        )
        or 0
    )


def refund(
    *, operation: PaymentOperation, amount: Money | None, idempotency_key: str, reason: str
) -> PaymentOperation:
    """Refund all (`amount=None`) or part of a succeeded charge, exactly once per key.

    Posts campaign escrow -> clearing on success. Refused (Conflict) when the refund is
    larger than what is left of the charge or than the campaign's escrow holds.
    """
    key = _check_key(idempotency_key)
    gateway = get_gateway()
    op = find_operation(key)
    if op is None:
        with _rollback_on_error():
            op, created = _create_refund(operation.id, amount, key, reason, gateway)
        if created:
            return _call_and_record(op, gateway)
    if amount is not None:
        _same_request(op, OperationKind.REFUND, amount)
    elif op.kind is not OperationKind.REFUND:
        raise Conflict(
            f"The key {key!r} was already used for a {op.kind.value}.", code="idempotency_conflict"
        )
    return _resume(op, gateway)


def _create_refund(
    charge_id: int, amount: Money | None, key: str, reason: str, gateway: Gateway
) -> tuple[PaymentOperation, bool]:
    """Check the refund against the charge and the escrow, and commit it as pending (under locks)."""
    from crowdfund.campaigns.models import Campaign
    from crowdfund.ledger import service as ledger

    begin_write()
    charge_op = _lock_operation(charge_id)
    if charge_op.kind is not OperationKind.CHARGE or charge_op.state is not OperationState.SUCCEEDED:
        raise Conflict("Only a successful card payment can be refunded.", code="not_refundable")
    if charge_op.gateway != gateway.name:
        raise Conflict("This payment was taken by another payment provider.", code="other_gateway")
    left = charge_op.amount_amount - _reserved(
        OperationKind.REFUND, PaymentOperation.parent_id == charge_op.id
    )
    amount = amount if amount is not None else Money(max(left, 0), charge_op.currency)
    if amount.currency != charge_op.currency or amount.amount > left:
        raise Conflict(
            f"At most {Money(max(left, 0), charge_op.currency)} of this payment can still be refunded.",
            code="refund_too_large",
        )
    _check_amount(amount)
    escrow_account = ledger.escrow_account(db.session.get(Campaign, charge_op.campaign_id))
    lock(type(escrow_account), escrow_account.id)
    escrow = ledger.account_balance(escrow_account)
    in_flight = _reserved(
        OperationKind.REFUND,
        PaymentOperation.campaign_id == charge_op.campaign_id,
        PaymentOperation.state != OperationState.SUCCEEDED,
    )
    if escrow.amount - in_flight < amount.amount:
        raise Conflict(
            f"The campaign's escrow holds {escrow}; it cannot fund a refund of {amount}.",
            code="escrow_insufficient",
        )
    return _insert_pending(
        kind=OperationKind.REFUND,
        idempotency_key=key,
        gateway=gateway.name,
        amount_amount=amount.amount,
        currency=amount.currency,
        user_id=charge_op.user_id,
        campaign_id=charge_op.campaign_id,
        parent_id=charge_op.id,
        description=(reason or "")[:300],
        details=_clean_metadata({"reason": reason or "", "charge_operation": charge_op.id}),
    )


# --- payouts -----------------------------------------------------------------------------
def payout_account(organisation_id: int) -> PayoutAccount | None:
    """The organisation's payout account at the current gateway, if it has one."""
    return db.session.scalars(
        select(PayoutAccount).where(
            PayoutAccount.organisation_id == organisation_id, PayoutAccount.gateway == gateway_name()
        )
    ).first()


def payout_destination(organisation_id: int) -> str | None:
    """The account id to pass to `payout` for this organisation, once it can receive money."""
    account = payout_account(organisation_id)
    return account.account_id if account is not None and account.payouts_enabled else None


def payout(
    *,
    organisation_id: int,
    amount: Money,
    idempotency_key: str,
    destination: str,
    provider_id: int | None = None,
    campaign_id: int | None = None,
    description: str = "",
) -> PaymentOperation:
    """Send money owed to an organisation (or, with `provider_id`, to a provider) to `destination`.

    Exactly once per key. Posts ORG_PAYABLE (or PROVIDER_PAYABLE) -> clearing on success,
    so what is owed must have been credited there first (settlement releases escrow to it);
    otherwise Conflict. `destination` is `payout_destination(organisation_id)` for an
    organisation.
    """
    key = _check_key(idempotency_key)
    _check_amount(amount)
    gateway = get_gateway()
    op = find_operation(key)
    if op is None:
        if not destination:
            raise ValidationError(
                "The organisation has not set up a payout account yet.", code="no_destination"
            )
        fields = dict(
            kind=OperationKind.PAYOUT,
            idempotency_key=key,
            gateway=gateway.name,
            amount_amount=amount.amount,
            currency=amount.currency,
            organisation_id=organisation_id,
            provider_id=provider_id,
            campaign_id=campaign_id,
            destination=destination,
            description=(description or "")[:300],
            details=_clean_metadata({"organisation_id": organisation_id}),
        )
        with _rollback_on_error():
            op, created = _create_payout(fields)
        if created:
            return _call_and_record(op, gateway)
    _same_request(op, OperationKind.PAYOUT, amount)
    return _resume(op, gateway)


def _create_payout(fields: dict) -> tuple[PaymentOperation, bool]:
    """Check the payout against what is owed (minus payouts in flight) and commit it as pending."""
    from crowdfund.ledger import service as ledger

    amount = Money(fields["amount_amount"], fields["currency"])
    begin_write()
    if fields["provider_id"] is not None:
        payable = ledger.provider_payable_account(fields["provider_id"], amount.currency)
        mine = PaymentOperation.provider_id == fields["provider_id"]
    else:
        payable = ledger.org_payable_account(fields["organisation_id"], amount.currency)
        mine = (
            PaymentOperation.organisation_id == fields["organisation_id"]
        ) & PaymentOperation.provider_id.is_(None)
    lock(type(payable), payable.id)
    owed = ledger.account_balance(payable)
    in_flight = _reserved(
        OperationKind.PAYOUT,
        mine,
        PaymentOperation.currency == amount.currency,
        PaymentOperation.state != OperationState.SUCCEEDED,
    )
    available = Money(max(owed.amount - in_flight, 0), amount.currency)
    if available < amount:
        raise Conflict(
            f"Only {available} is owed and not yet paid out; cannot pay out {amount}.",
            code="payout_too_large",
        )
    return _insert_pending(**fields)


def connect_payout_account(organisation, *, email: str | None = None) -> PayoutAccount:
    """The organisation's payout account at the current gateway, created there on first use."""
    existing = payout_account(organisation.id)
    if existing is not None:
        return existing
    gateway = get_gateway()
    try:
        account_id = gateway.create_payout_account(
            organisation_id=organisation.id,
            name=organisation.legal_name,
            country=organisation.country,
            email=email,
        )
    except GatewayUnavailable as exc:
        raise _gateway_down(exc) from None
    begin_write()
    account = PayoutAccount(organisation_id=organisation.id, gateway=gateway.name, account_id=account_id)
    db.session.add(account)
    try:
        db.session.commit()
    except IntegrityError:
        db.session.rollback()
        return payout_account(organisation.id)
    return account


def start_payout_onboarding(
    organisation, *, return_url: str, refresh_url: str, email: str | None = None
) -> str | None:
    """Stripe: the Express onboarding link for the campaigner. Sandbox: None (a form instead)."""
    account = connect_payout_account(organisation, email=email)
    try:
        return get_gateway().onboarding_link(
            account_id=account.account_id, return_url=return_url, refresh_url=refresh_url
        )
    except GatewayUnavailable as exc:
        raise _gateway_down(exc) from None


def save_sandbox_bank_details(organisation, *, bank_name: str, account_number: str) -> PayoutAccount:
    """Sandbox only: where the organisation's sandbox payouts go (only the last four digits are kept)."""
    gateway = get_gateway()
    if gateway.name != "sandbox":
        raise Conflict(
            "Bank details are collected by Stripe; use the Stripe onboarding link.", code="not_sandbox"
        )
    bank_name = (bank_name or "").strip()
    digits = "".join(ch for ch in account_number or "" if ch in "0123456789")
    if not bank_name:
        raise ValidationError("Enter the bank's name.", field="bank_name")
    if not 6 <= len(digits) <= 34:
        raise ValidationError("Enter the account number (6 to 34 digits).", field="account_number")
    account = connect_payout_account(organisation)
    info = gateway.set_bank_details(account.account_id, bank_name=bank_name, account_number=digits)
    begin_write()
    account = payout_account(organisation.id)
    account.bank_name, account.last4, account.payouts_enabled = (
        info.bank_name,
        info.last4,
        info.payouts_enabled,
    )
    db.session.commit()
    return account


def refresh_payout_account(organisation_id: int) -> PayoutAccount | None:
    """Ask the gateway whether the organisation's account can receive payouts yet."""
    account = payout_account(organisation_id)
    if account is None:
        return None
    try:
        info = get_gateway().payout_account_info(account.account_id)
    except GatewayUnavailable:
        return account
    begin_write()
    account = payout_account(organisation_id)
    account.payouts_enabled = info.payouts_enabled
    if info.bank_name:
        account.bank_name, account.last4 = info.bank_name, info.last4
    db.session.commit()
    return account


# --- reconciliation --------------------------------------------------------------------
def reconcile_operation(op: PaymentOperation, *, retry: bool = True) -> PaymentOperation:
    """Settle a pending operation from the gateway's view (calling it again only if the gateway never saw it).

    With `retry=False` only looks: a pending operation the gateway does not know stays pending.
    """
    gateway = get_gateway()
    if op.gateway != gateway.name:
        return op
    if op.state is OperationState.REQUIRES_ACTION and op.gateway_id:
        return refresh_operation(op.id)
    if op.state is not OperationState.PENDING:
        return op
    if retry:
        return _resume(op, gateway)
    try:
        found = _look_up(op, gateway)
    except GatewayUnavailable:
        return op
    if found is None:
        return op
    return record_outcome(op.id, found)


def refresh_operation(op_id: int) -> PaymentOperation:
    """Re-read an operation's object at the gateway and record its current state (webhooks use this)."""
    op = db.session.get(PaymentOperation, op_id)
    gateway = get_gateway()
    if op.gateway != gateway.name:
        return op
    try:
        found = _look_up(op, gateway)
    except GatewayUnavailable as exc:
        raise _gateway_down(exc) from None
    if found is None:
        return op
    return record_outcome(op.id, found)


def operations_needing_attention(older_than: timedelta) -> list[PaymentOperation]:
    """Pending (and requires-action) operations last touched more than `older_than` ago."""
    cutoff = utcnow() - older_than
    return list(
        db.session.scalars(
            select(PaymentOperation)
            .where(
                PaymentOperation.state.in_([OperationState.PENDING, OperationState.REQUIRES_ACTION]),
                PaymentOperation.updated_at <= cutoff,
            )
            .order_by(PaymentOperation.id)
        )
    )
