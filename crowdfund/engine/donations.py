"""Money that moves for a pledge at once: donations charged, pledges refunded, and the repair of both.

A donation is three named steps, each its own unit of work, so every commit is visible:

1. `service.record_pledge` writes the pledge as *pending* (not counted yet);
2. `charge_donation` asks payments to charge the card by the pledge's key
   (`charge_key`); payments records its own intent and outcome, exactly once per key;
3. `record_donation_outcome` locks the campaign, then the pledge, and makes the pledge
   *charged* (and counted) or *failed* from the operation's final state.

If the process stops between the steps the pledge stays pending. A replay of the same
form token or Idempotency-Key runs steps 2 and 3 again (payments looks the operation up
by key; it never charges twice), and `finish_pending_donations` — the engine's job and
`flask payments reconcile` — finishes every pending donation whose operation is final at
once, and drives the others after a grace period. `pledge_disagreements` lists what does
not match between pledges and their payment operations.

A refund goes through `refund_pledge` (payments refunds; then `record_refund`), which
lowers the pledge's counted amount and the campaign's raised amount by what was refunded
and makes a fully refunded pledge *refunded*. `record_refund` reads the charge's refunded
total, so running it again, or after a refund that settled later, changes nothing twice.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import ColumnElement, String, cast, literal, select

from crowdfund.accounts.models import User
from crowdfund.campaigns.models import Campaign, RewardTier
from crowdfund.database import lock, retry_on_lock, unit_of_work, valid_id
from crowdfund.engine.counters import count_in, has_other_counted_pledge, lock_campaign
from crowdfund.engine.models import Pledge, PledgeState
from crowdfund.errors import Conflict, DomainError, ErrorCode, Forbidden, NotFound
from crowdfund.extensions import db
from crowdfund.models_base import utcnow
from crowdfund.money import Money
from crowdfund.payments import service as payments
from crowdfund.payments.models import OperationKind, OperationState, PaymentOperation

#: How long a pending donation with no final operation is left to its own request.
DEFAULT_GRACE = timedelta(minutes=5)
#: Card failures shown to the donor as they are; anything else is "payment declined".
CARD_FAILURES = frozenset(
    {
        ErrorCode.CARD_DECLINED,
        ErrorCode.INSUFFICIENT_FUNDS,
        ErrorCode.EXPIRED_CARD,
        ErrorCode.INCORRECT_CVC,
        ErrorCode.INVALID_NUMBER,
        ErrorCode.CARD_MISSING,
        ErrorCode.CARD_REMOVED,
        ErrorCode.CARD_OTHER_GATEWAY,
        ErrorCode.NO_PAYMENT_METHOD,
        ErrorCode.PAYMENT_METHOD_REQUIRED,
        ErrorCode.GATEWAY_UNAVAILABLE,
        ErrorCode.REQUIRES_ACTION,
    }
)


class PaymentDeclined(DomainError):
    """The gateway refused a donation charge; the message says what the backer can do."""

    code = ErrorCode.PAYMENT_DECLINED

    @classmethod
    def for_pledge(cls, pledge: Pledge) -> PaymentDeclined:
        return cls(pledge.failure_message, params={"reason": pledge.failure_code})


def charge_key(pledge_id: int) -> str:
    """The payments idempotency key of a donation's charge."""
    return f"pledge:{pledge_id}:charge"


def _failure_code(operation: PaymentOperation | None, refusal: ErrorCode | None) -> ErrorCode:
    """The code a failed donation keeps: the card's reason when it is one the donor can act on."""
    code = operation.error_code if operation is not None else refusal
    return code if code in CARD_FAILURES else ErrorCode.PAYMENT_DECLINED


# --- the donation steps ----------------------------------------------------------------


def complete_donation(pledge_id: int) -> Pledge:
    """Steps 2 and 3 of a donation: charge by the pledge's key, then record the outcome."""
    refusal = charge_donation(pledge_id)
    return record_donation_outcome(pledge_id, refusal)


@retry_on_lock
def charge_donation(pledge_id: int) -> ErrorCode | None:
    """Step 2: have payments charge the pending donation (exactly once by its key).

    Returns the code of a refusal that came before any operation was recorded (a card
    that was removed, a gateway that cannot be reached), else None: the operation holds
    the outcome. Safe to run again: the same key finds the same operation.
    """
    pledge = _read_pledge(pledge_id)
    if pledge is None or pledge.state is not PledgeState.PENDING:
        return None
    campaign = pledge.campaign
    try:
        payments.charge(
            user=pledge.user,
            payment_method=pledge.payment_method,
            amount=pledge.amount,
            idempotency_key=charge_key(pledge.id),
            campaign_id=campaign.id,
            description=f"Donation to {campaign.title}",
            metadata={"pledge_id": str(pledge.id), "campaign_id": str(campaign.id)},
        )
    except DomainError as exc:
        return exc.code
    return None


@retry_on_lock
def record_donation_outcome(pledge_id: int, refusal: ErrorCode | None = None) -> Pledge:
    """Step 3: under the campaign's lock, make a pending donation charged (and count it) or failed.

    The pledge follows its charge operation: succeeded → charged and counted; failed or
    requiring the card holder's action → failed with the reason's code; still pending →
    unchanged. With no operation at all, `refusal` (what payments refused before
    recording one) fails it. Locks campaign → pledge and only reads the operation (whose
    final state never changes), so it never waits on a payments step or the ledger.
    """
    campaign_id = db.session.scalar(select(Pledge.campaign_id).where(Pledge.id == pledge_id))
    with unit_of_work():
        campaign = lock_campaign(campaign_id)
        pledge = lock(Pledge, pledge_id)
        if pledge.state is not PledgeState.PENDING:
            return pledge
        operation = _charge_operation(pledge.id)
        if operation is not None:
            pledge.payment_operation_id = operation.id
        if operation is not None and operation.state is OperationState.SUCCEEDED:
            pledge.transition_to(PledgeState.CHARGED)
            count_in(campaign, pledge, None)
        elif _has_failed(operation, refusal):
            pledge.transition_to(PledgeState.FAILED)
            pledge.failure_code = _failure_code(operation, refusal).value
            pledge.failure_params = None
        else:
            return pledge
        pledge.updated_at = utcnow()
    return pledge


def _has_failed(operation: PaymentOperation | None, refusal: ErrorCode | None) -> bool:
    if operation is None:
        return refusal is not None
    return operation.state in (OperationState.FAILED, OperationState.REQUIRES_ACTION)


def _read_pledge(pledge_id: int) -> Pledge | None:
    return db.session.execute(
        select(Pledge).where(Pledge.id == pledge_id).execution_options(populate_existing=True)
    ).scalar_one_or_none()


def _charge_operation(pledge_id: int) -> PaymentOperation | None:
    """The donation's charge as committed now (found by its key: set before step 3 records it)."""
    return db.session.execute(
        select(PaymentOperation)
        .where(PaymentOperation.idempotency_key == charge_key(pledge_id))
        .execution_options(populate_existing=True)
    ).scalar_one_or_none()


# --- repair ------------------------------------------------------------------------------


def finish_pending_donations(
    *, now: datetime | None = None, grace: timedelta = DEFAULT_GRACE, retry: bool = True
) -> int:
    """Finish donations left pending; returns how many changed state.

    A pending donation whose charge operation is already final (or needs the card
    holder) is finished at once. One with no operation, or a pending one, is left to its
    own request for `grace`, then (unless `retry` is false) driven to its outcome by
    charging again by its key (payments looks the operation up at the gateway first;
    nothing is charged twice).
    """
    now = now or utcnow()
    pending = db.session.execute(
        select(Pledge.id, Pledge.created_at).where(Pledge.state == PledgeState.PENDING).order_by(Pledge.id)
    ).all()
    finals = _final_charges([pledge_id for pledge_id, _ in pending])
    db.session.rollback()  # a read: end it before the units of work
    changed = 0
    for pledge_id, created_at in pending:
        if pledge_id in finals:
            pledge = record_donation_outcome(pledge_id)
        elif retry and created_at < now - grace:
            pledge = complete_donation(pledge_id)
        else:
            continue
        changed += pledge.state is not PledgeState.PENDING
    return changed


def _final_charges(pledge_ids: list[int]) -> set[int]:
    """The pledges among `pledge_ids` whose charge operation has an outcome."""
    keys = {charge_key(pledge_id): pledge_id for pledge_id in pledge_ids}
    if not keys:
        return set()
    rows = db.session.execute(
        select(PaymentOperation.idempotency_key).where(
            PaymentOperation.idempotency_key.in_(list(keys)),
            PaymentOperation.state != OperationState.PENDING,
        )
    ).scalars()
    return {keys[key] for key in rows}


def reconcile_pending_donations(*, now: datetime | None = None, older_than_seconds: int = 300) -> int:
    """The engine's job: finish pending donations and record refunds the pledges miss.

    Returns how many pledges changed.
    """
    changed = finish_pending_donations(now=now, grace=timedelta(seconds=older_than_seconds))
    return changed + record_missing_refunds()


@dataclass(frozen=True)
class Disagreement:
    """A pledge and its payment operation that tell different stories."""

    pledge_id: int | None
    operation_id: int | None
    #: "charged_but_not_recorded", "charged_without_payment" or "refund_not_recorded".
    kind: str
    detail: str

    def __str__(self) -> str:
        return self.detail


def pledge_disagreements() -> list[Disagreement]:
    """Pledges and payment operations that disagree (for `flask payments reconcile`).

    - a succeeded charge whose pledge is not charged (pending or failed);
    - a charged (or refunded) pledge without a succeeded charge;
    - a charge refunded by more or less than its pledge records.
    """
    found: list[Disagreement] = []
    found += _charges_not_on_pledges()
    found += _pledges_without_charges()
    found += _refunds_not_on_pledges()
    db.session.rollback()
    return found


def _charges_not_on_pledges() -> list[Disagreement]:
    rows = db.session.execute(
        select(PaymentOperation, Pledge)
        .join(Pledge, PaymentOperation.idempotency_key == _key_expression())
        .where(
            PaymentOperation.kind == OperationKind.CHARGE,
            PaymentOperation.state == OperationState.SUCCEEDED,
            Pledge.state.not_in([PledgeState.CHARGED, PledgeState.REFUNDED]),
        )
        .order_by(Pledge.id)
    ).all()
    return [
        Disagreement(
            pledge.id,
            op.id,
            "charged_but_not_recorded",
            f"pledge #{pledge.id}: charge #{op.id} succeeded ({op.amount.format(with_code=True)}) "
            f"but the pledge is {pledge.state.value}",
        )
        for op, pledge in rows
    ]


def _key_expression() -> ColumnElement[str]:
    """`charge_key(Pledge.id)` in SQL."""
    return literal("pledge:") + cast(Pledge.id, String) + literal(":charge")


def _pledges_without_charges() -> list[Disagreement]:
    rows = db.session.execute(
        select(Pledge, PaymentOperation)
        .outerjoin(PaymentOperation, PaymentOperation.id == Pledge.payment_operation_id)
        .where(Pledge.state.in_([PledgeState.CHARGED, PledgeState.REFUNDED]))
        .where((PaymentOperation.id.is_(None)) | (PaymentOperation.state != OperationState.SUCCEEDED))
        .order_by(Pledge.id)
    ).all()
    return [
        Disagreement(
            pledge.id,
            op.id if op else None,
            "charged_without_payment",
            f"pledge #{pledge.id} is {pledge.state.value} but "
            + (f"its charge #{op.id} is {op.state.value}" if op else "has no charge"),
        )
        for pledge, op in rows
    ]


def _refunds_not_on_pledges() -> list[Disagreement]:
    rows = db.session.execute(
        select(Pledge, PaymentOperation)
        .join(PaymentOperation, PaymentOperation.id == Pledge.payment_operation_id)
        .where(PaymentOperation.refunded_amount != Pledge.refunded_amount)
        .order_by(Pledge.id)
    ).all()
    return [
        Disagreement(
            pledge.id,
            op.id,
            "refund_not_recorded",
            f"pledge #{pledge.id}: its charge #{op.id} was refunded {op.refunded.format(with_code=True)}, "
            f"the pledge records {pledge.refunded.format(with_code=True)}",
        )
        for pledge, op in rows
    ]


# --- refunds -----------------------------------------------------------------------------


@dataclass(frozen=True)
class PledgeRefund:
    """What `refund_pledge` did: the pledge as it now is and the refund operation."""

    pledge: Pledge
    operation: PaymentOperation


def refund_pledge(
    operator: User, pledge_id: int, amount: Money | None, reason: str, key: str
) -> PledgeRefund:
    """An operator refunds all (`amount=None`) or part of a charged pledge, exactly once per `key`.

    Payments refunds the card (its own steps; refused with not_refundable,
    refund_too_large or escrow_insufficient); once the refund has succeeded the pledge
    and the campaign's totals follow (`record_refund`). A refund still pending at the
    gateway is recorded on the pledge when it settles (`record_missing_refunds`).
    """
    if not getattr(operator, "is_operator", False):
        raise Forbidden("Only operators can refund a pledge.", code=ErrorCode.FORBIDDEN)
    pledge = db.session.get(Pledge, pledge_id) if valid_id(pledge_id) else None
    if pledge is None:
        raise NotFound("We could not find that pledge.", code=ErrorCode.NOT_FOUND)
    charge = _read_operation(pledge.payment_operation_id)
    replay = payments.find_operation(key) is not None  # payments answers a used key itself
    if charge is None or (pledge.state is not PledgeState.CHARGED and not replay):
        raise Conflict(
            f"This pledge is {pledge.state.value}; only a charged pledge can be refunded.",
            code=ErrorCode.NOT_REFUNDABLE,
        )
    operation = payments.refund(operation=charge, amount=amount, idempotency_key=key, reason=reason)
    if operation.state is OperationState.SUCCEEDED:
        pledge = record_refund(pledge.id)
    return PledgeRefund(pledge=pledge, operation=operation)


@retry_on_lock
def record_refund(pledge_id: int, *, now: datetime | None = None) -> Pledge:
    """Bring a charged pledge in line with what its charge has been refunded.

    Locks campaign → tier → pledge (the global order), reads the charge's refunded total
    and lowers the campaign's raised amount by what the pledge did not record yet; a
    full refund makes the pledge *refunded* and takes it out of the backer count and
    the tier's units. Idempotent.
    """
    row = db.session.execute(select(Pledge.campaign_id, Pledge.tier_id).where(Pledge.id == pledge_id)).first()
    if row is None:
        raise NotFound("We could not find that pledge.", code=ErrorCode.NOT_FOUND)
    with unit_of_work():
        campaign = lock_campaign(row.campaign_id)
        tier = lock(RewardTier, row.tier_id) if row.tier_id else None
        pledge = lock(Pledge, pledge_id)
        charge = _read_operation(pledge.payment_operation_id)
        refunded = min(charge.refunded_amount or 0, pledge.amount_amount) if charge else 0
        _apply_refund(campaign, tier, pledge, refunded, now or utcnow())
    return pledge


def _read_operation(operation_id: int | None) -> PaymentOperation | None:
    if operation_id is None:
        return None
    return db.session.execute(
        select(PaymentOperation)
        .where(PaymentOperation.id == operation_id)
        .execution_options(populate_existing=True)
    ).scalar_one_or_none()


def _apply_refund(
    campaign: Campaign, tier: RewardTier | None, pledge: Pledge, refunded: int, now: datetime
) -> None:
    if pledge.state is not PledgeState.CHARGED or refunded <= (pledge.refunded_amount or 0):
        return
    campaign.raised_amount -= refunded - (pledge.refunded_amount or 0)
    pledge.refunded_amount = refunded
    pledge.updated_at = now
    if refunded < pledge.amount_amount:
        return
    if not has_other_counted_pledge(campaign.id, pledge.user_id, pledge.id):
        campaign.backer_count -= 1
    if tier is not None:
        tier.claimed -= pledge.quantity
    pledge.transition_to(PledgeState.REFUNDED, now)


def record_missing_refunds() -> int:
    """Record on their pledges the refunds that succeeded without them (webhooks, late answers)."""
    ids = list(
        db.session.scalars(
            select(Pledge.id)
            .join(PaymentOperation, PaymentOperation.id == Pledge.payment_operation_id)
            .where(
                Pledge.state == PledgeState.CHARGED,
                PaymentOperation.refunded_amount > Pledge.refunded_amount,
            )
            .order_by(Pledge.id)
        )
    )
    db.session.rollback()
    for pledge_id in ids:
        record_refund(pledge_id)
    return len(ids)
