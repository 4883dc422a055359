"""Payment use cases: saved cards, charges, refunds, payouts — exactly once.

Every money-moving use case is three named steps, each its own unit of work except the
gateway call, which runs outside any transaction:

1. `_record_intent`: under the use case's locks, check it and write a `PaymentOperation`
   in state *pending* with the caller's idempotency key, holding the call lease;
2. `_call_gateway`: call the gateway (off-session, with the key and metadata naming the
   operation);
3. `record_outcome`: lock the campaign (when the operation has one), then the operation,
   apply what the gateway said and, on success, post the ledger movement — one commit.

Every step locks in the global order (campaign, then payment operations, then the ledger)
and runs again on a lock conflict, so a charge the gateway made is always recorded.

If the process dies between 1 and 3, the operation stays pending. The next call with the
same key, a webhook, or `flask payments reconcile` looks it up at the gateway (by the
gateway id we stored, else by the key in its metadata) and records what really happened
instead of charging again; only when the gateway has no trace of it is the call made
again — and only by one process at a time (the call lease). This holds even when the
gateway ignores idempotency keys.

Webhooks, the CLI and the pages all go through these functions; only this package knows
which gateway is in use. The ledger's accounts are the ledger's business: a success
posts through `crowdfund.ledger.postings`.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from functools import partial
from typing import TYPE_CHECKING

from flask import current_app
from sqlalchemy import func, or_, select, update
from sqlalchemy.exc import IntegrityError

from crowdfund.database import after_commit, lock, retry_on_lock, unit_of_work
from crowdfund.errors import Conflict, DomainError, ErrorCode, Forbidden, NotFound, ValidationError
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
    PayoutAccountInfo,
    SavedCard,
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
    error_code_for,
)
from crowdfund.payments.ratelimit import limiter_for

if TYPE_CHECKING:
    from crowdfund.accounts.models import Organisation, User

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

GATEWAYS = ("sandbox", "stripe")


# --- the gateway -------------------------------------------------------------------------
def get_gateway() -> Gateway:
    """The gateway named by PAYMENT_GATEWAY ("sandbox", the default, or "stripe").

    Tests may put a ready gateway in `app.extensions["payments.gateway"]`.
    """
    override = current_app.extensions.get("payments.gateway")
    if override is not None:
        return override
    name = (current_app.config["PAYMENT_GATEWAY"] or "sandbox").lower()
    if name == "sandbox":
        from crowdfund.payments.sandbox import SandboxGateway

        return SandboxGateway()
    if name == "stripe":
        from crowdfund.payments.stripe_gateway import StripeGateway

        return StripeGateway.from_config(current_app.config)
    current_app.logger.error("PAYMENT_GATEWAY must be one of %s, not %r", GATEWAYS, name)
    raise DomainError(code=ErrorCode.GATEWAY_CONFIGURATION)


def gateway_name() -> str:
    return get_gateway().name


def _lease() -> timedelta:
    return timedelta(seconds=int(current_app.config["PAYMENT_CALL_LEASE_SECONDS"]))


def _gateway_down(exc: GatewayUnavailable) -> DomainError:
    if exc.outcome is ChargeOutcome.PERMANENT:
        current_app.logger.error("The payment gateway refused our credentials: %s", exc.message)
        return DomainError(code=ErrorCode.GATEWAY_CONFIGURATION)
    return Conflict(
        "The payment service is not answering right now. Please try again in a few minutes.",
        code=ErrorCode.GATEWAY_UNAVAILABLE,
    )


def _card_refused(exc: CardError) -> ValidationError:
    """The gateway refused a card: our code for it (its own code kept in `params`)."""
    return ValidationError(
        exc.message, code=error_code_for(exc.code), field=exc.field, params={"gateway_code": exc.code}
    )


def _lock_campaign(campaign_id: int | None) -> None:
    """The first lock of every money path that touches a campaign (see `crowdfund.database`)."""
    from crowdfund.campaigns.models import Campaign

    if campaign_id is not None:
        lock(Campaign, campaign_id)


# --- customers and saved cards -----------------------------------------------------------
def _find_customer_id(user_id: int, gateway: str) -> str | None:
    return db.session.scalar(
        select(GatewayCustomer.customer_id).where(
            GatewayCustomer.user_id == user_id, GatewayCustomer.gateway == gateway
        )
    )


def _customer_id(user: User, gateway: Gateway) -> str:
    """The user's customer id at `gateway`: created there on first use, then recorded here."""
    found = _find_customer_id(user.id, gateway.name)
    if found is not None:
        return found
    try:
        customer_id = gateway.ensure_customer(
            user_id=user.id, email=user.email, name=user.name, customer_id=None
        )
    except GatewayUnavailable as exc:
        raise _gateway_down(exc) from None
    return _record_customer(user.id, gateway.name, customer_id)


@retry_on_lock
def _record_customer(user_id: int, gateway: str, customer_id: str) -> str:
    try:
        with unit_of_work():
            if _find_customer_id(user_id, gateway) is None:
                db.session.add(GatewayCustomer(user_id=user_id, gateway=gateway, customer_id=customer_id))
                db.session.flush()
    except IntegrityError:
        pass  # another request recorded the customer just now
    return _find_customer_id(user_id, gateway)


def list_payment_methods(user: User) -> list[PaymentMethod]:
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


def default_payment_method(user: User) -> PaymentMethod | None:
    """The card to charge: the user's default if usable and unexpired, else the newest usable card."""
    now = utcnow()
    for method in list_payment_methods(user):
        if method.is_usable and not method.is_expired_at(now):
            return method
    return None


def _not_saved() -> NotFound:
    return NotFound("That card is not saved in your account.", code=ErrorCode.NOT_FOUND)


def get_payment_method(user: User, method_id: int) -> PaymentMethod:
    """One of the user's saved cards; NotFound for anyone else's."""
    method = db.session.get(PaymentMethod, method_id)
    if method is None or method.user_id != user.id or method.status is MethodStatus.REMOVED:
        raise _not_saved()
    return method


def _lock_method(user: User, method_id: int) -> PaymentMethod:
    method = lock(PaymentMethod, method_id)
    if method is None or method.user_id != user.id or method.status is MethodStatus.REMOVED:
        raise _not_saved()
    return method


def begin_add_payment_method(user: User) -> SetupSession:
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


def save_payment_method(user: User, data: dict[str, str]) -> PaymentMethod:
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
        raise _card_refused(exc) from None
    except GatewayUnavailable as exc:
        raise _gateway_down(exc) from None
    return _record_card(user, gateway.name, card)


@retry_on_lock
def _record_card(user: User, gateway: str, card: SavedCard) -> PaymentMethod:
    with unit_of_work():
        method = db.session.scalars(
            select(PaymentMethod).where(
                PaymentMethod.gateway == gateway, PaymentMethod.gateway_id == card.gateway_id
            )
        ).first()
        if method is not None:
            if method.user_id != user.id:
                raise Forbidden("That card belongs to another account.", code=ErrorCode.FORBIDDEN)
            return method
        method = PaymentMethod(
            user_id=user.id,
            gateway=gateway,
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
    return method


def authenticate_payment_method(user: User, method_id: int) -> PaymentMethod:
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
        raise _card_refused(exc) from None
    except GatewayUnavailable as exc:
        raise _gateway_down(exc) from None
    return _mark_usable(user, method_id)


@retry_on_lock
def _mark_usable(user: User, method_id: int) -> PaymentMethod:
    with unit_of_work():
        method = _lock_method(user, method_id)
        method.status = MethodStatus.USABLE
        _make_default(method)
    return method


@retry_on_lock
def set_default_payment_method(user: User, method_id: int) -> PaymentMethod:
    """Make one of the user's usable cards the one charged."""
    with unit_of_work():
        method = _lock_method(user, method_id)
        if not method.is_usable:
            raise ValidationError(
                "Confirm this card with your bank before making it your default.",
                code=ErrorCode.VALIDATION_ERROR,
            )
        _make_default(method)
    return method


@retry_on_lock
def remove_payment_method(user: User, method_id: int) -> None:
    """Forget a saved card; the newest other usable card becomes the default.

    The card is detached at the gateway once the removal is committed.
    """
    gateway = get_gateway()
    with unit_of_work():
        method = _lock_method(user, method_id)
        was_default = method.is_default
        method.status = MethodStatus.REMOVED
        method.is_default = False
        db.session.flush()
        if was_default:
            replacement = default_payment_method(user)
            if replacement is not None:
                _make_default(replacement)
        customer_id = _find_customer_id(user.id, method.gateway)
        if customer_id and gateway.name == method.gateway:
            after_commit(partial(_detach, gateway, customer_id, method.gateway_id))


def _detach(gateway: Gateway, customer_id: str, gateway_id: str) -> None:
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
            "An idempotency key of 1 to 200 characters is required.", code=ErrorCode.IDEMPOTENCY_KEY
        )
    return key


def _check_amount(amount: Money) -> None:
    if not isinstance(amount, Money) or not amount.is_positive:
        raise ValidationError("The amount must be a positive amount of money.", code=ErrorCode.AMOUNT)


def _clean_metadata(metadata: dict | None) -> dict[str, str]:
    return {str(k)[:40]: str(v)[:500] for k, v in (metadata or {}).items()}


def _same_request(op: PaymentOperation, kind: OperationKind, amount: Money | None) -> None:
    if op.kind is not kind or (amount is not None and op.amount != amount):
        raise Conflict(
            f"The key {op.idempotency_key!r} was already used for a different {op.kind.value}.",
            code=ErrorCode.IDEMPOTENCY_CONFLICT,
        )


@retry_on_lock
def _record_intent(key: str, fields: Callable[[], dict]) -> tuple[PaymentOperation, bool]:
    """Step 1: write the pending operation, holding the call lease; (existing, False) if the key is taken.

    `fields()` takes the use case's locks, checks it (raising to refuse) and returns the
    operation's columns.
    """
    try:
        with unit_of_work():
            existing = find_operation(key)
            if existing is not None:
                return existing, False
            op = PaymentOperation(
                state=OperationState.PENDING,
                attempts=1,
                call_lease_until=utcnow() + _lease(),
                refunded_amount=0,
                idempotency_key=key,
                **fields(),
            )
            db.session.add(op)
            db.session.flush()
    except IntegrityError:
        existing = find_operation(key)  # the same key, written by another process just now
        if existing is None:
            raise
        return existing, False
    return op, True


@retry_on_lock
def _take_call_lease(op_id: int) -> bool:
    """Take the call lease of a pending operation (one process at a time calls the gateway)."""
    now = utcnow()
    with unit_of_work():
        taken = db.session.execute(
            update(PaymentOperation)
            .where(
                PaymentOperation.id == op_id,
                PaymentOperation.state == OperationState.PENDING,
                or_(PaymentOperation.call_lease_until.is_(None), PaymentOperation.call_lease_until < now),
            )
            .values(call_lease_until=now + _lease(), attempts=PaymentOperation.attempts + 1, updated_at=now)
            .execution_options(synchronize_session=False)
        ).rowcount
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
    return _find_customer_id(op.user_id, gateway.name)


def _call_gateway(op: PaymentOperation, gateway: Gateway) -> GatewayResult:
    """Step 2: make the one gateway call the operation stands for (outside any unit of work),
    at the pace the gateway allows (`crowdfund.payments.ratelimit`)."""
    return limiter_for(gateway).call(partial(_make_call, op, gateway))


def _make_call(op: PaymentOperation, gateway: Gateway) -> GatewayResult:
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
    find = partial(
        gateway.find,
        op.kind,
        idempotency_key=op.idempotency_key,
        gateway_id=op.gateway_id,
        customer_id=_customer_of(op, gateway),
        parent_id=op.parent.gateway_id if op.parent is not None else None,
        destination=op.destination,
    )
    return limiter_for(gateway).call(find)


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
    if not _take_call_lease(op.id):
        return op  # another process is calling the gateway for it right now
    return _call_and_record(op, gateway)


# --- recording outcomes ----------------------------------------------------------------
def apply_result(op: PaymentOperation, result: GatewayResult) -> bool:
    """Bring a (locked) operation in line with what the gateway said; post the ledger on success.

    Flushes, never commits. Returns True when the operation's state changed. A final
    operation never changes again; a TEMPORARY answer or one still in progress leaves it
    pending for a later look.
    """
    if result.gateway_id and not op.gateway_id:
        op.gateway_id = result.gateway_id
    op.call_lease_until = None
    outcome = result.outcome
    if op.is_final or outcome is None:
        db.session.flush()
        return False
    op.result = outcome
    before = op.state
    if outcome is ChargeOutcome.SUCCEEDED:
        op.transition_to(OperationState.SUCCEEDED)
        op.failure_code = op.gateway_message = None
        _post_success(op)
    elif outcome is ChargeOutcome.TEMPORARY:
        _note_failure(op, result, "temporary")
    elif outcome is ChargeOutcome.NEEDS_AUTHENTICATION and op.kind is OperationKind.CHARGE:
        op.transition_to(OperationState.REQUIRES_ACTION)
        _note_failure(op, result, "authentication_required")
    else:
        op.transition_to(OperationState.FAILED)
        _note_failure(op, result, outcome.value)
    db.session.flush()
    return op.state is not before


def _note_failure(op: PaymentOperation, result: GatewayResult, default_code: str) -> None:
    """Keep the gateway's code (ours is derived from it) and its words, for operators."""
    op.failure_code = (result.failure_code or default_code)[:60]
    op.gateway_message = (result.failure_message or "")[:500] or None


@retry_on_lock
def record_outcome(op_id: int, result: GatewayResult) -> PaymentOperation:
    """Step 3: lock the campaign (if any), then the operation; record what the gateway said,
    post the ledger on success, commit once."""
    with unit_of_work():
        campaign_id = db.session.scalar(
            select(PaymentOperation.campaign_id).where(PaymentOperation.id == op_id)
        )
        _lock_campaign(campaign_id)
        op = lock(PaymentOperation, op_id)
        apply_result(op, result)
    return op


def _post_success(op: PaymentOperation) -> None:
    """A money outcome: post it to the ledger (and keep the charge's refunded total)."""
    from crowdfund.ledger import postings

    if op.kind is OperationKind.CHARGE:
        txn = postings.charge_into_escrow(payment_id=op.id, campaign_id=op.campaign_id, amount=op.amount)
    elif op.kind is OperationKind.REFUND:
        parent = lock(PaymentOperation, op.parent_id)
        parent.refunded_amount = (parent.refunded_amount or 0) + op.amount_amount
        txn = postings.refund_from_escrow(
            payment_id=op.id, charge_payment_id=parent.id, campaign_id=op.campaign_id, amount=op.amount
        )
    else:
        txn = postings.payout(
            payment_id=op.id,
            amount=op.amount,
            organisation_id=op.organisation_id,
            provider_id=op.provider_id,
            campaign_id=op.campaign_id,
            description=op.description,
        )
    op.ledger_key = txn.key


def ledger_key(op: PaymentOperation) -> str:
    """The idempotency key of the ledger transaction an operation's success posts."""
    from crowdfund.ledger.postings import TransactionKind, payment_key

    return payment_key(op.id, TransactionKind(op.kind.value))


# --- charges ----------------------------------------------------------------------------
def _check_card(user: User, method: PaymentMethod | None, gateway: Gateway) -> None:
    if method is None or method.user_id != user.id:
        raise ValidationError("Add a card to your account first.", code=ErrorCode.NO_PAYMENT_METHOD)
    if method.status is MethodStatus.REMOVED:
        raise ValidationError(
            "That card has been removed. Add a card and try again.", code=ErrorCode.CARD_REMOVED
        )
    if method.gateway != gateway.name:
        raise ValidationError(
            "That card was saved with another payment provider. Add it again.",
            code=ErrorCode.CARD_OTHER_GATEWAY,
        )


def charge(
    *,
    user: User,
    payment_method: PaymentMethod | None,
    amount: Money,
    idempotency_key: str,
    campaign_id: int,
    description: str,
    metadata: dict[str, str] | None = None,
) -> PaymentOperation:
    """Charge a saved card off-session, exactly once per idempotency key.

    Records the pending operation, calls the gateway, records the outcome and on success
    posts the charge into the campaign's escrow. The same key again returns the same
    operation (a pending one is looked up at the gateway first, never blindly repeated).
    `.state`: succeeded, failed (`.error_code` says why, `.failure_message` what the
    backer can do), requires_action (the backer must confirm the card with their bank;
    charge again with a new key once they have) or pending (the gateway was busy or
    unreachable: call again later with the same key, or let `flask payments reconcile`
    finish it). `.result` is a ChargeOutcome.
    """
    key = _check_key(idempotency_key)
    _check_amount(amount)
    gateway = get_gateway()
    op = find_operation(key)
    if op is None:
        _check_card(user, payment_method, gateway)
        if campaign_id is None:
            raise ValidationError("A charge belongs to a campaign.", code=ErrorCode.CAMPAIGN)
        _customer_id(user, gateway)
        fields = dict(
            kind=OperationKind.CHARGE,
            gateway=gateway.name,
            amount_amount=amount.amount,
            currency=amount.currency,
            user_id=user.id,
            campaign_id=campaign_id,
            payment_method_id=payment_method.id,
            description=(description or "")[:300],
            details=_clean_metadata(metadata),
        )
        op, created = _record_intent(key, lambda: fields)
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

    Posts the refund out of the campaign's escrow on success. Refused (Conflict) when the
    refund is larger than what is left of the charge or than the campaign's escrow holds.
    """
    key = _check_key(idempotency_key)
    gateway = get_gateway()
    op = find_operation(key)
    if op is None:
        op, created = _record_intent(key, partial(_refund_fields, operation.id, amount, reason, gateway.name))
        if created:
            return _call_and_record(op, gateway)
    _same_request(op, OperationKind.REFUND, amount)
    return _resume(op, gateway)


def _refund_fields(charge_id: int, amount: Money | None, reason: str, gateway: str) -> dict:
    """Lock the campaign, then the charge; check the refund against both (and the escrow)."""
    campaign_id = db.session.scalar(
        select(PaymentOperation.campaign_id).where(PaymentOperation.id == charge_id)
    )
    _lock_campaign(campaign_id)
    charge_op = lock(PaymentOperation, charge_id)
    if (
        charge_op is None
        or charge_op.kind is not OperationKind.CHARGE
        or charge_op.state is not OperationState.SUCCEEDED
    ):
        raise Conflict("Only a successful card payment can be refunded.", code=ErrorCode.NOT_REFUNDABLE)
    if charge_op.gateway != gateway:
        raise Conflict("This payment was taken by another payment provider.", code=ErrorCode.OTHER_GATEWAY)
    left = Money(
        max(
            charge_op.amount_amount
            - _reserved(OperationKind.REFUND, PaymentOperation.parent_id == charge_id),
            0,
        ),
        charge_op.currency,
    )
    amount = amount if amount is not None else left
    if amount.currency != left.currency or amount.amount > left.amount:
        raise Conflict(
            f"At most {left} of this payment can still be refunded.",
            code=ErrorCode.REFUND_TOO_LARGE,
            params={"left": left.amount, "currency": left.currency},
        )
    _check_amount(amount)
    _check_escrow_covers(charge_op.campaign_id, amount)
    return dict(
        kind=OperationKind.REFUND,
        gateway=gateway,
        amount_amount=amount.amount,
        currency=amount.currency,
        user_id=charge_op.user_id,
        campaign_id=charge_op.campaign_id,
        parent_id=charge_op.id,
        description=(reason or "")[:300],
        details=_clean_metadata({"reason": reason or "", "charge_operation": charge_op.id}),
    )


def _check_escrow_covers(campaign_id: int, amount: Money) -> None:
    """The campaign's escrow, less the refunds still in flight, must hold `amount` (campaign locked)."""
    from crowdfund.ledger import service as ledger

    escrow = ledger.balance_of_escrow(campaign_id, amount.currency)
    in_flight = _reserved(
        OperationKind.REFUND,
        PaymentOperation.campaign_id == campaign_id,
        PaymentOperation.state != OperationState.SUCCEEDED,
    )
    if escrow.amount - in_flight < amount.amount:
        raise Conflict(
            f"The campaign's escrow holds {escrow}; it cannot fund a refund of {amount}.",
            code=ErrorCode.ESCROW_INSUFFICIENT,
            params={"escrow": escrow.amount, "amount": amount.amount, "currency": amount.currency},
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

    Exactly once per key. Posts the payout out of what the ledger says is owed to them,
    so it must have been credited first (settlement releases escrow to it); otherwise
    Conflict. `destination` is `payout_destination(organisation_id)` for an organisation.
    """
    key = _check_key(idempotency_key)
    _check_amount(amount)
    gateway = get_gateway()
    op = find_operation(key)
    if op is None:
        if not destination:
            raise ValidationError(
                "The organisation has not set up a payout account yet.", code=ErrorCode.NO_DESTINATION
            )
        fields = dict(
            kind=OperationKind.PAYOUT,
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
        op, created = _record_intent(key, partial(_payout_fields, fields))
        if created:
            return _call_and_record(op, gateway)
    _same_request(op, OperationKind.PAYOUT, amount)
    return _resume(op, gateway)


def _payout_fields(fields: dict) -> dict:
    """Lock the campaign (if any), then what is owed; check the payout against it less payouts in flight."""
    from crowdfund.ledger import service as ledger

    amount = Money(fields["amount_amount"], fields["currency"])
    _lock_campaign(fields["campaign_id"])
    owed = ledger.balance_owed(
        currency=amount.currency,
        organisation_id=fields["organisation_id"],
        provider_id=fields["provider_id"],
        for_update=True,
    )
    if fields["provider_id"] is not None:
        mine = PaymentOperation.provider_id == fields["provider_id"]
    else:
        mine = (
            PaymentOperation.organisation_id == fields["organisation_id"]
        ) & PaymentOperation.provider_id.is_(None)
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
            code=ErrorCode.PAYOUT_TOO_LARGE,
            params={"available": available.amount, "currency": amount.currency},
        )
    return fields


def connect_payout_account(organisation: Organisation, *, email: str | None = None) -> PayoutAccount:
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
    return _record_payout_account(organisation.id, gateway.name, account_id)


@retry_on_lock
def _record_payout_account(organisation_id: int, gateway: str, account_id: str) -> PayoutAccount:
    try:
        with unit_of_work():
            db.session.add(
                PayoutAccount(organisation_id=organisation_id, gateway=gateway, account_id=account_id)
            )
            db.session.flush()
    except IntegrityError:
        pass  # another request connected the organisation just now
    return payout_account(organisation_id)


def start_payout_onboarding(
    organisation: Organisation, *, return_url: str, refresh_url: str, email: str | None = None
) -> str | None:
    """Stripe: the Express onboarding link for the campaigner. Sandbox: None (a form instead)."""
    account = connect_payout_account(organisation, email=email)
    try:
        return get_gateway().onboarding_link(
            account_id=account.account_id, return_url=return_url, refresh_url=refresh_url
        )
    except GatewayUnavailable as exc:
        raise _gateway_down(exc) from None


def save_sandbox_bank_details(
    organisation: Organisation, *, bank_name: str, account_number: str
) -> PayoutAccount:
    """Sandbox only: where the organisation's sandbox payouts go (only the last four digits are kept)."""
    gateway = get_gateway()
    if gateway.name != "sandbox":
        raise Conflict(
            "Bank details are collected by Stripe; use the Stripe onboarding link.",
            code=ErrorCode.NOT_SANDBOX,
        )
    bank_name = (bank_name or "").strip()
    digits = "".join(ch for ch in account_number or "" if ch in "0123456789")
    if not bank_name:
        raise ValidationError("Enter the bank's name.", code=ErrorCode.REQUIRED, field="bank_name")
    if not 6 <= len(digits) <= 34:
        raise ValidationError(
            "Enter the account number (6 to 34 digits).",
            code=ErrorCode.VALIDATION_ERROR,
            field="account_number",
        )
    account = connect_payout_account(organisation)
    info = gateway.set_bank_details(account.account_id, bank_name=bank_name, account_number=digits)
    return _record_payout_account_info(organisation.id, info)


def refresh_payout_account(organisation_id: int) -> PayoutAccount | None:
    """Ask the gateway whether the organisation's account can receive payouts yet."""
    account = payout_account(organisation_id)
    if account is None:
        return None
    try:
        info = get_gateway().payout_account_info(account.account_id)
    except GatewayUnavailable:
        return account
    return _record_payout_account_info(organisation_id, info)


@retry_on_lock
def _record_payout_account_info(organisation_id: int, info: PayoutAccountInfo) -> PayoutAccount:
    with unit_of_work():
        account = lock(PayoutAccount, payout_account(organisation_id).id)
        account.payouts_enabled = info.payouts_enabled
        if info.bank_name:
            account.bank_name, account.last4 = info.bank_name, info.last4
    return account


# --- providers' (hospitals') payout accounts ------------------------------------------
def open_provider_payout_account(
    *, name: str, country: str, bank_name: str = "", account_number: str = "", account_id: str = ""
) -> PayoutAccountInfo:
    """A payout account for a health provider (a hospital), which its owner keeps on its own row.

    Sandbox: a new sandbox bank account from the bank's name and account number (only the last
    four digits are kept). Stripe: the provider's existing Connect account `account_id`
    (acct_…), whose state is read. Raises ValidationError for missing details.
    """
    gateway = get_gateway()
    try:
        if gateway.name != "sandbox":
            account_id = (account_id or "").strip()
            if not account_id.startswith("acct_") or len(account_id) > 100:
                raise ValidationError(
                    "Enter the hospital's Stripe account id (acct_…).",
                    code=ErrorCode.VALIDATION_ERROR,
                    field="account_id",
                )
            return gateway.payout_account_info(account_id)
        bank_name = (bank_name or "").strip()
        digits = "".join(ch for ch in account_number or "" if ch in "0123456789")
        if not bank_name:
            raise ValidationError("Enter the bank's name.", code=ErrorCode.REQUIRED, field="bank_name")
        if not 6 <= len(digits) <= 34:
            raise ValidationError(
                "Enter the account number (6 to 34 digits).",
                code=ErrorCode.VALIDATION_ERROR,
                field="account_number",
            )
        new_id = gateway.create_payout_account(organisation_id=0, name=name, country=country, email=None)
        return gateway.set_bank_details(new_id, bank_name=bank_name, account_number=digits)
    except GatewayUnavailable as exc:
        raise _gateway_down(exc) from None


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
