"""Loan use cases: open a loan when a debt campaign settles, take repayments, split them,
reverse them, apply the late rules, and the organisation's repayment record.

Every use case is a unit of work; the card repayment is three named steps:

1. `_record_intent`: under the campaign's and the loan's locks, check the amount, the
   currency and the request's key, count repayment n and store its payments key
   ``loan:{loan_id}:repayment:{n}`` (state ``pending``) — committed before any call;
2. `_charge`: `crowdfund.payments.service.charge` with that key (the money lands in the
   campaign's escrow, as every card charge does; payments answers the same key with the
   same operation, so a crash anywhere resumes the same charge, never a second one);
3. `_record_outcome`: lock campaign → loan → repayment, and, if the charge succeeded,
   allocate and split it (`_split`) — one ledger transaction with every lender's leg,
   escrow → wallets, key ``loan_repayment:{id}:split``: all lenders are paid or none.

A bank transfer (sandbox: recorded by hand) is one unit of work: the repayment, the
transfer into escrow and the split. `resume_repayments` (job ``loans.repayments``)
finishes whatever a crash left pending. The loan row's lock guards its instalments, its
lenders and its repayments; the lock order is campaign → loan → repayment → payment
operation → ledger.

Allocation: oldest instalment first; within one, penalty → fee → interest → principal.
Split: `crowdfund.loans.split.split_repayment` on the running total (each lender stays
within one minor unit of their largest-remainder share of everything repaid, exactly on
it once the loan is repaid). Lenders are credited only with money received.
"""

from __future__ import annotations

import contextlib
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import TYPE_CHECKING

from flask import current_app
from sqlalchemy import and_, bindparam, exists, func, insert, select, update
from sqlalchemy.exc import IntegrityError

from crowdfund.campaigns.models import Campaign, CampaignKind
from crowdfund.database import lock, retry_on_lock, unit_of_work, valid_id
from crowdfund.engine.schedule import add_months, annuity_schedule
from crowdfund.errors import Conflict, DomainError, ErrorCode, NotFound, NoticeCode, ValidationError
from crowdfund.extensions import db
from crowdfund.ledger import postings
from crowdfund.ledger.service import find_transaction
from crowdfund.loans.models import (
    COMPONENTS,
    Instalment,
    Loan,
    LoanLender,
    LoanNotice,
    LoanState,
    Repayment,
    RepaymentMethod,
    RepaymentShare,
    RepaymentState,
    repayment_key,
)
from crowdfund.loans.split import split_repayment
from crowdfund.models_base import utcnow
from crowdfund.money import Money, MoneyError
from crowdfund.payments import service as payments
from crowdfund.payments.models import OperationState, PaymentMethod, error_code_for
from crowdfund.settlement.models import ItemState, Settlement, SettlementItem, SettlementState

if TYPE_CHECKING:
    from crowdfund.accounts.models import User

#: A pending repayment untouched for this long is picked up by `resume_repayments`.
RESUME_AFTER = timedelta(minutes=2)

#: Tests may set a callable taking a step name ("intent", "charge", "split"); it runs at that
#: point (and may raise to stand for the process being killed there).
STEP_HOOK: Callable[[str], None] | None = None


def _step(name: str) -> None:
    if STEP_HOOK is not None:
        STEP_HOOK(name)


# --- reading -------------------------------------------------------------------------------
def loan_for_campaign(campaign_id: int) -> Loan | None:
    if not valid_id(campaign_id):
        return None
    return db.session.scalar(select(Loan).where(Loan.campaign_id == campaign_id))


def _fresh(model: type, ident: int):
    return db.session.execute(
        select(model).where(model.id == ident).execution_options(populate_existing=True)
    ).scalar_one_or_none()


def _is_member(user: User, organisation_id: int) -> bool:
    from crowdfund.campaigns.access import is_member

    return is_member(user, organisation_id)


def loan_for_borrower(user: User, loan_id: int) -> Loan:
    """The loan, for its borrower's members and operators; NotFound for anyone else (no leak)."""
    loan = _fresh(Loan, loan_id) if valid_id(loan_id) else None
    if loan is None or not (getattr(user, "is_operator", False) or _is_member(user, loan.organisation_id)):
        raise NotFound(code=ErrorCode.LOAN_NOT_FOUND)
    return loan


def lender_positions(user: User, loan_id: int) -> tuple[Loan, list[LoanLender]]:
    """The loan and `user`'s lender rows in it; NotFound if `user` did not lend to it."""
    loan = _fresh(Loan, loan_id) if valid_id(loan_id) else None
    rows = (
        list(
            db.session.scalars(
                select(LoanLender)
                .where(LoanLender.loan_id == loan_id, LoanLender.user_id == user.id)
                .order_by(LoanLender.id)
            )
        )
        if loan is not None
        else []
    )
    if not rows:
        raise NotFound(code=ErrorCode.LOAN_NOT_FOUND)
    return loan, rows


def outstanding(loan: Loan) -> Money:
    """Everything still owed on the loan (every instalment, due or not, with fees)."""
    return Money(sum(i.outstanding_amount for i in loan.instalments), loan.currency)


def next_due(loan: Loan) -> Instalment | None:
    """The oldest instalment with anything outstanding."""
    return next((i for i in loan.instalments if i.outstanding_amount > 0), None)


def repayments_of(loan_id: int) -> list[Repayment]:
    return list(
        db.session.scalars(
            select(Repayment).where(Repayment.loan_id == loan_id).order_by(Repayment.id.desc())
        )
    )


def shares_received(lender_ids: list[int]) -> list[tuple[Repayment, Money]]:
    """(repayment, part) for each repayment the given lender rows received a part of."""
    rows = db.session.execute(
        select(Repayment, func.sum(RepaymentShare.amount_amount))
        .join(RepaymentShare, RepaymentShare.repayment_id == Repayment.id)
        .where(RepaymentShare.lender_id.in_(lender_ids))
        .group_by(Repayment.id)
        .order_by(Repayment.id.desc())
    ).all()
    return [(r, Money(int(total), r.currency)) for r, total in rows]


def loans_for_pledges(pledge_ids: list[int]) -> dict[int, int]:
    """pledge id -> loan id, for the pledges that became loan shares."""
    if not pledge_ids:
        return {}
    return dict(
        db.session.execute(
            select(LoanLender.pledge_id, LoanLender.loan_id).where(LoanLender.pledge_id.in_(pledge_ids))
        ).all()
    )


def notices_for(user: User) -> list[LoanNotice]:
    return list(
        db.session.scalars(
            select(LoanNotice).where(LoanNotice.user_id == user.id).order_by(LoanNotice.id.desc()).limit(50)
        )
    )


@dataclass(frozen=True)
class RepaymentRecord:
    """An organisation's repayment history, for its credit grade: instalments paid on time
    (within the grace period), instalments late (paid late or overdue past the grace
    period), and loans that defaulted."""

    on_time: int
    late: int
    defaulted: int


def repayment_record(organisation_id: int, *, now: datetime | None = None) -> RepaymentRecord:
    """The organisation's repayment record as of `now`."""
    today = (now or utcnow()).date()
    grace = timedelta(days=current_app.config["LOAN_GRACE_DAYS"])
    on_time = late = 0
    instalments = db.session.scalars(
        select(Instalment)
        .join(Loan, Loan.id == Instalment.loan_id)
        .where(Loan.organisation_id == organisation_id)
    )
    for inst in instalments:
        if inst.paid_at is not None:
            if inst.paid_at.date() <= inst.due_on + grace:
                on_time += 1
            else:
                late += 1
        elif today > inst.due_on + grace:
            late += 1
    defaulted = db.session.scalar(
        select(func.count(Loan.id)).where(
            Loan.organisation_id == organisation_id, Loan.defaulted_at.is_not(None)
        )
    )
    return RepaymentRecord(on_time=on_time, late=late, defaulted=int(defaulted or 0))


# --- opening ---------------------------------------------------------------------------------
def open_due_loans(*, now: datetime | None = None) -> int:
    """Open the loan of every settled debt campaign that has none yet; how many were opened."""
    now = now or utcnow()
    due = db.session.scalars(
        select(Settlement.id)
        .join(Campaign, Campaign.id == Settlement.campaign_id)
        .where(
            Campaign.kind == CampaignKind.DEBT,
            Settlement.state == SettlementState.SETTLED,
            ~exists().where(Loan.settlement_id == Settlement.id),
        )
        .order_by(Settlement.id)
    ).all()
    return sum(1 for settlement_id in due if open_loan(settlement_id, now=now) is not None)


@retry_on_lock
def open_loan(settlement_id: int, *, now: datetime | None = None) -> Loan | None:
    """The loan of a settled debt campaign (opened once; None when nothing was collected).

    Principal: what the charged pledges hold now (net of refunds); each such pledge is a
    lender weighted by it; first instalment one month after the payout.
    """
    now = now or utcnow()
    settlement = _fresh(Settlement, settlement_id)
    if settlement is None or settlement.state is not SettlementState.SETTLED:
        return None
    try:
        with unit_of_work():
            campaign = lock(Campaign, settlement.campaign_id)
            existing = loan_for_campaign(campaign.id)
            if existing is not None:
                return existing
            terms = campaign.debt_terms
            lenders = db.session.execute(
                select(SettlementItem.pledge_id, SettlementItem.user_id, SettlementItem.charged_amount)
                .where(
                    SettlementItem.settlement_id == settlement_id,
                    SettlementItem.state == ItemState.CHARGED,
                    SettlementItem.charged_amount > 0,
                )
                .order_by(SettlementItem.pledge_id)
            ).all()
            principal = sum(row.charged_amount for row in lenders)
            if terms is None or principal <= 0:
                return None
            return _create_loan(campaign, settlement, terms, lenders, principal, now)
    except IntegrityError:
        return loan_for_campaign(settlement.campaign_id)


def _create_loan(
    campaign: Campaign, settlement: Settlement, terms, lenders, principal: int, now: datetime
) -> Loan:
    disbursed = (settlement.paid_out_at or settlement.finished_at or now).date()
    first_due = add_months(disbursed, 1)
    rate_ppm = terms.annual_rate_bp * 100
    loan = Loan(
        campaign_id=campaign.id,
        settlement_id=settlement.id,
        organisation_id=campaign.organisation_id,
        state=LoanState.REPAYING,
        currency=campaign.currency,
        principal_amount=principal,
        annual_rate_ppm=rate_ppm,
        term_months=terms.term_months,
        first_due_on=first_due,
        repaid_amount=0,
        repayment_count=0,
        lender_count=len(lenders),
        created_at=now,
    )
    db.session.add(loan)
    db.session.flush()
    for row in annuity_schedule(
        Money(principal, campaign.currency), Decimal(rate_ppm) / 1_000_000, terms.term_months, first_due
    ):
        db.session.add(
            Instalment(
                loan_id=loan.id,
                number=row.number,
                due_on=row.due,
                currency=campaign.currency,
                principal_amount=row.principal.amount,
                interest_amount=row.interest.amount,
            )
        )
    db.session.execute(
        insert(LoanLender),
        [
            {
                "loan_id": loan.id,
                "pledge_id": r.pledge_id,
                "user_id": r.user_id,
                "lent_amount": r.charged_amount,
                "received_amount": 0,
            }
            for r in lenders
        ],
    )
    postings.lender_wallets(campaign.currency, sorted({r.user_id for r in lenders}))
    db.session.flush()
    return loan


# --- repaying --------------------------------------------------------------------------------
def _check_request(loan: Loan, amount: Money, request_key: str) -> str:
    """Refuse a repayment that cannot be taken as asked (nothing written)."""
    key = (request_key or "").strip()
    if not key or len(key) > 200:
        raise ValidationError(code=ErrorCode.IDEMPOTENCY_KEY)
    if loan.state is LoanState.REPAID:
        raise Conflict(code=ErrorCode.LOAN_CLOSED)
    if not isinstance(amount, Money) or amount.currency != loan.currency:
        raise ValidationError(code=ErrorCode.REPAYMENT_CURRENCY, params={"currency": loan.currency})
    in_flight = db.session.scalar(
        select(func.coalesce(func.sum(Repayment.amount_amount), 0)).where(
            Repayment.loan_id == loan.id, Repayment.state == RepaymentState.PENDING
        )
    )
    owed = Money(outstanding(loan).amount - int(in_flight or 0), loan.currency)
    if not 0 < amount.amount <= owed.amount:
        raise ValidationError(
            code=ErrorCode.REPAYMENT_AMOUNT,
            params={"minimum": Money(1, loan.currency).format(), "outstanding": owed.format()},
            field="amount",
        )
    return key


def _check_key_unused(loan: Loan, key: str, method: RepaymentMethod, amount: Money) -> None:
    earlier = db.session.scalar(
        select(Repayment).where(Repayment.loan_id == loan.id, Repayment.request_key == key)
    )
    if earlier is None:
        return
    if earlier.method is method and earlier.amount == amount:
        raise Conflict(code=ErrorCode.REPAYMENT_DUPLICATE, params={"number": earlier.number})
    raise Conflict(code=ErrorCode.IDEMPOTENCY_CONFLICT)


def _new_repayment(
    loan: Loan, user: User, amount: Money, key: str, method: RepaymentMethod, now: datetime, **extra
):
    loan.repayment_count = (loan.repayment_count or 0) + 1
    repayment = Repayment(
        loan_id=loan.id,
        number=loan.repayment_count,
        state=RepaymentState.PENDING,
        method=method,
        amount_amount=amount.amount,
        currency=amount.currency,
        request_key=key,
        charge_key=repayment_key(loan.id, loan.repayment_count),
        recorded_by_id=user.id,
        created_at=now,
        **extra,
    )
    db.session.add(repayment)
    db.session.flush()
    return repayment


def _lock_loan(loan_id: int) -> Loan:
    """Lock the loan's campaign, then the loan (the global order)."""
    campaign_id = db.session.scalar(select(Loan.campaign_id).where(Loan.id == loan_id))
    if campaign_id is None:
        raise NotFound(code=ErrorCode.LOAN_NOT_FOUND)
    lock(Campaign, campaign_id)
    return lock(Loan, loan_id)


def repay_by_card(
    user: User,
    loan_id: int,
    amount: Money,
    *,
    payment_method_id: int,
    request_key: str,
    now: datetime | None = None,
) -> Repayment:
    """The borrower repays `amount` from a saved card, exactly once per `request_key`.

    Any amount from one minor unit up to what is still owed (early repayments pay the
    next instalments). A second request with the same key is refused and charges nothing.
    """
    now = now or utcnow()
    loan = loan_for_borrower(user, loan_id)
    method = None
    if valid_id(payment_method_id):
        with contextlib.suppress(NotFound):
            method = payments.get_payment_method(user, payment_method_id)
    if method is None:
        raise ValidationError(code=ErrorCode.NO_PAYMENT_METHOD, field="payment_method_id")
    repayment_id = _record_intent(user, loan.id, amount, request_key, method, now)
    _step("intent")
    refusal = _charge(repayment_id)
    _step("charge")
    return _record_outcome(repayment_id, refusal, now)


@retry_on_lock
def _record_intent(
    user: User, loan_id: int, amount: Money, request_key: str, method: PaymentMethod, now
) -> int:
    """Step 1: repayment n with its payments key, written before the card is charged."""
    try:
        with unit_of_work():
            loan = _lock_loan(loan_id)
            key = _check_request(loan, amount, request_key)
            _check_key_unused(loan, key, RepaymentMethod.CARD, amount)
            return _new_repayment(
                loan, user, amount, key, RepaymentMethod.CARD, now, payment_method_id=method.id
            ).id
    except IntegrityError:  # the same key, written by another request just now
        raise Conflict(code=ErrorCode.IDEMPOTENCY_CONFLICT) from None


def _charge(repayment_id: int) -> DomainError | None:
    """Step 2: charge the repayment's key (the same key again resumes the same charge)."""
    from crowdfund.accounts.models import User

    repayment = _fresh(Repayment, repayment_id)
    loan = _fresh(Loan, repayment.loan_id)
    payer = db.session.get(User, repayment.recorded_by_id)
    method = db.session.get(PaymentMethod, repayment.payment_method_id)
    try:
        payments.charge(
            user=payer,
            payment_method=method,
            amount=repayment.amount,
            idempotency_key=repayment.charge_key,
            campaign_id=loan.campaign_id,
            description=f"Repayment {repayment.number} of loan #{loan.id}",
            metadata={"loan_id": str(loan.id), "repayment_id": str(repayment.id)},
        )
    except DomainError as exc:
        return exc
    return None


@retry_on_lock
def _record_outcome(repayment_id: int, refusal: DomainError | None, now: datetime) -> Repayment:
    """Step 3: lock campaign → loan → repayment; split a received repayment, note a failed one."""
    loan_id = db.session.scalar(select(Repayment.loan_id).where(Repayment.id == repayment_id))
    with unit_of_work():
        loan = _lock_loan(loan_id)
        repayment = lock(Repayment, repayment_id)
        if repayment.state is not RepaymentState.PENDING:
            return repayment
        op = payments.find_operation(repayment.charge_key)
        if op is not None:
            repayment.payment_operation_id = op.id
        if op is not None and op.state is OperationState.SUCCEEDED:
            _split(loan, repayment, now)
        elif op is None and refusal is not None:
            repayment.failure_code, repayment.failure_params = str(refusal.code), refusal.params or None
            repayment.transition_to(RepaymentState.FAILED, now)
        elif op is not None and op.state in (OperationState.FAILED, OperationState.REQUIRES_ACTION):
            repayment.failure_code = str(error_code_for(op.failure_code))
            repayment.transition_to(RepaymentState.FAILED, now)
    return repayment


def _sandbox_only() -> None:
    if payments.gateway_name() != "sandbox":
        raise Conflict(code=ErrorCode.BANK_TRANSFER_SANDBOX_ONLY)


@retry_on_lock
def record_bank_transfer(
    user: User,
    loan_id: int,
    amount: Money,
    *,
    reference: str,
    request_key: str,
    now: datetime | None = None,
) -> Repayment:
    """Sandbox: the borrower (or an operator) records a bank transfer received for the loan;
    it is allocated and split at once. Exactly once per `request_key`."""
    now = now or utcnow()
    loan = loan_for_borrower(user, loan_id)
    _sandbox_only()
    reference = (reference or "").strip()[:100]
    if not reference:
        raise ValidationError(code=ErrorCode.REQUIRED, field="reference")
    try:
        with unit_of_work():
            loan = _lock_loan(loan.id)
            key = _check_request(loan, amount, request_key)
            _check_key_unused(loan, key, RepaymentMethod.BANK_TRANSFER, amount)
            repayment = _new_repayment(
                loan, user, amount, key, RepaymentMethod.BANK_TRANSFER, now, reference=reference
            )
            postings.bank_transfer_into_escrow(
                key=_bank_key(repayment), campaign_id=loan.campaign_id, amount=amount
            )
            _split(loan, repayment, now)
    except IntegrityError:
        raise Conflict(code=ErrorCode.IDEMPOTENCY_CONFLICT) from None
    return repayment


def _bank_key(repayment: Repayment) -> str:
    return f"{repayment.charge_key}:bank_transfer"


def _split_key(repayment: Repayment) -> str:
    return f"loan_repayment:{repayment.id}:split"


def _allocate(instalments: list[Instalment], amount: int, now: datetime) -> list[list]:
    """Pay `amount` into the instalments, oldest first, penalty → fee → interest → principal."""
    allocation: list[list] = []
    left = amount
    for inst in instalments:
        for component in COMPONENTS:
            take = min(left, inst.due(component) - inst.paid(component))
            if take > 0:
                setattr(inst, f"paid_{component}_amount", inst.paid(component) + take)
                allocation.append([inst.number, component, take])
                left -= take
        if inst.outstanding_amount == 0 and inst.paid_at is None:
            inst.paid_at = now
        if left == 0:
            break
    if left:
        currency = instalments[0].currency
        raise ValidationError(
            code=ErrorCode.REPAYMENT_AMOUNT,
            params={
                "minimum": Money(1, currency).format(),
                "outstanding": Money(amount - left, currency).format(),
            },
        )
    return allocation


def _instalments(loan_id: int) -> list[Instalment]:
    return list(
        db.session.scalars(
            select(Instalment)
            .where(Instalment.loan_id == loan_id)
            .order_by(Instalment.number)
            .execution_options(populate_existing=True)
        )
    )


def _split(loan: Loan, repayment: Repayment, now: datetime) -> None:
    """Allocate a received repayment and credit every lender's part, in one ledger transaction."""
    _step("split")
    instalments = _instalments(loan.id)
    repayment.allocation = _allocate(instalments, repayment.amount_amount, now)
    lenders = db.session.execute(
        select(LoanLender.id, LoanLender.user_id, LoanLender.lent_amount, LoanLender.received_amount)
        .where(LoanLender.loan_id == loan.id)
        .order_by(LoanLender.id)
    ).all()
    final_total = sum(i.total_amount for i in instalments)
    parts = split_repayment(
        [r.received_amount for r in lenders],
        [r.lent_amount for r in lenders],
        repayment.amount_amount,
        final_total,
    )
    paid = [(row, part) for row, part in zip(lenders, parts, strict=True) if part]
    db.session.execute(
        update(LoanLender),
        [{"id": row.id, "received_amount": row.received_amount + part} for row, part in paid],
    )
    db.session.execute(
        insert(RepaymentShare),
        [{"repayment_id": repayment.id, "lender_id": row.id, "amount_amount": part} for row, part in paid],
    )
    per_user: dict[int, int] = defaultdict(int)
    for row, part in paid:
        per_user[row.user_id] += part
    postings.repayment_from_escrow(
        key=_split_key(repayment),
        campaign_id=loan.campaign_id,
        shares={uid: Money(v, loan.currency) for uid, v in per_user.items()},
    )
    loan.repaid_amount = (loan.repaid_amount or 0) + repayment.amount_amount
    repayment.repaid_after_amount = loan.repaid_amount
    repayment.failure_code = repayment.failure_params = None
    repayment.transition_to(RepaymentState.SPLIT, now)
    if all(i.outstanding_amount == 0 for i in instalments):
        loan.transition_to(LoanState.REPAID, now)


# --- resuming and reversing ------------------------------------------------------------------
def resume_repayments(*, now: datetime | None = None, stale_after: timedelta = RESUME_AFTER) -> int:
    """Finish card repayments a crash left pending (untouched for `stale_after`, wall clock) and
    reversals left half done; how many moved."""
    now = now or utcnow()
    stale = utcnow() - stale_after
    rows = db.session.execute(
        select(Repayment.id, Repayment.state)
        .where(
            Repayment.state.in_([RepaymentState.PENDING, RepaymentState.REVERSING]),
            Repayment.updated_at < stale,
        )
        .order_by(Repayment.id)
        .limit(200)
    ).all()
    moved = 0
    for repayment_id, state in rows:
        if state is RepaymentState.PENDING:
            done = _record_outcome(repayment_id, _charge(repayment_id), now)
        else:
            done = _finish_reversal(repayment_id, now)
        moved += done.state is not state
    return moved


def reverse_repayment(operator: User, repayment_id: int, *, now: datetime | None = None) -> Repayment:
    """A repayment that failed after it was split (refunded, charged back, transfer returned):
    take every lender's part back and return the money, in named steps.

    Step 1 undoes the allocation and the split in one unit of work (every lender's part
    back into escrow, or none); step 2 refunds the card charge (or posts the returned
    transfer) out of escrow; the same call again finishes what is left.
    """
    now = now or utcnow()
    if not getattr(operator, "is_operator", False):
        raise NotFound(code=ErrorCode.NOT_FOUND)
    repayment = _fresh(Repayment, repayment_id) if valid_id(repayment_id) else None
    if repayment is None:
        raise NotFound(code=ErrorCode.NOT_FOUND)
    if repayment.state is RepaymentState.SPLIT:
        _undo_split(repayment_id, now)
    elif repayment.state is not RepaymentState.REVERSING:
        raise Conflict(code=ErrorCode.REPAYMENT_NOT_REVERSIBLE)
    return _finish_reversal(repayment_id, now)


@retry_on_lock
def _undo_split(repayment_id: int, now: datetime) -> None:
    loan_id = db.session.scalar(select(Repayment.loan_id).where(Repayment.id == repayment_id))
    with unit_of_work():
        loan = _lock_loan(loan_id)
        repayment = lock(Repayment, repayment_id)
        if repayment.state is not RepaymentState.SPLIT:
            return
        by_number = {i.number: i for i in _instalments(loan.id)}
        for number, component, take in repayment.allocation or []:
            inst = by_number[number]
            setattr(inst, f"paid_{component}_amount", inst.paid(component) - take)
            inst.paid_at = None
        shares = db.session.execute(
            select(RepaymentShare.lender_id, RepaymentShare.amount_amount, LoanLender.user_id)
            .join(LoanLender, LoanLender.id == RepaymentShare.lender_id)
            .where(RepaymentShare.repayment_id == repayment.id)
        ).all()
        lenders = LoanLender.__table__
        db.session.execute(
            update(lenders)
            .where(lenders.c.id == bindparam("lender"))
            .values(received_amount=lenders.c.received_amount - bindparam("taken")),
            [{"lender": s.lender_id, "taken": s.amount_amount} for s in shares],
        )
        postings.reverse_transaction(
            find_transaction(_split_key(repayment)),
            f"{_split_key(repayment)}:reversal",
            f"repayment {repayment.number} of loan #{loan.id} reversed",
        )
        if repayment.method is RepaymentMethod.BANK_TRANSFER:
            postings.reverse_transaction(
                find_transaction(_bank_key(repayment)),
                f"{_bank_key(repayment)}:returned",
                f"bank transfer of repayment {repayment.number} of loan #{loan.id} returned",
            )
        loan.repaid_amount -= repayment.amount_amount
        if loan.state is LoanState.REPAID:
            loan.transition_to(LoanState.REPAYING, now)
        repayment.reversal_code = NoticeCode.REPAYMENT_REVERSED.value
        repayment.transition_to(RepaymentState.REVERSING, now)
        if repayment.method is RepaymentMethod.BANK_TRANSFER:
            repayment.transition_to(RepaymentState.REVERSED, now)
        _notify(
            loan,
            sorted({s.user_id for s in shares}),
            NoticeCode.REPAYMENT_REVERSED,
            f"repayment:{repayment.id}",
            {"amount": repayment.amount.format(), "borrower": loan.organisation.legal_name},
            now,
        )


def _finish_reversal(repayment_id: int, now: datetime) -> Repayment:
    """Step 2: refund the card charge out of escrow (same key again resumes it), then mark it reversed."""
    repayment = _fresh(Repayment, repayment_id)
    if repayment.state is not RepaymentState.REVERSING:
        return repayment
    charge_op = payments.find_operation(repayment.charge_key)
    try:
        refund = payments.refund(
            operation=charge_op,
            amount=None,
            idempotency_key=f"{repayment.charge_key}:refund",
            reason=f"repayment {repayment.number} reversed",
        )
    except DomainError as exc:
        current_app.logger.warning("repayment %s: refund refused (%s)", repayment_id, exc.code)
        return repayment
    if refund.state is OperationState.SUCCEEDED:
        return _mark_reversed(repayment_id, now)
    return repayment


@retry_on_lock
def _mark_reversed(repayment_id: int, now: datetime) -> Repayment:
    loan_id = db.session.scalar(select(Repayment.loan_id).where(Repayment.id == repayment_id))
    with unit_of_work():
        _lock_loan(loan_id)
        repayment = lock(Repayment, repayment_id)
        if repayment.state is RepaymentState.REVERSING:
            repayment.transition_to(RepaymentState.REVERSED, now)
    return repayment


def _notify(
    loan: Loan, user_ids: list[int], code: ErrorCode | NoticeCode, subject: str, params: dict, now: datetime
) -> None:
    """One in-app notice per lender (a code and its parameters); notifications deliver them later."""
    if user_ids:
        db.session.execute(
            insert(LoanNotice),
            [
                {
                    "loan_id": loan.id,
                    "user_id": uid,
                    "code": code.value,
                    "subject": subject,
                    "params": params,
                    "created_at": now,
                }
                for uid in user_ids
            ],
        )


# --- late rules ------------------------------------------------------------------------------
def late_fee(instalment: Instalment) -> int:
    """LOAN_LATE_FEE for one instalment, in minor units: "2%" of its scheduled payment or a fixed amount."""
    text = str(current_app.config["LOAN_LATE_FEE"]).strip()
    if text.endswith("%"):
        try:
            bp = int(Decimal(text[:-1].strip()) * 100)
        except InvalidOperation:
            raise ValueError(f"LOAN_LATE_FEE {text!r} is not a percentage like 2%") from None
        return instalment.scheduled.percent_bp(bp).amount
    try:
        return Money.parse(text, instalment.currency).amount
    except MoneyError:
        raise ValueError(f"LOAN_LATE_FEE {text!r} is not an amount like 50 or a percentage like 2%") from None


def apply_late_rules(*, now: datetime | None = None) -> int:
    """Charge late fees and penalty interest on instalments past the grace period, and put loans
    with an instalment LOAN_DEFAULT_DAYS overdue in default (lenders get a notice); how many
    instalments or loans it changed."""
    now = now or utcnow()
    today = now.date()
    grace = current_app.config["LOAN_GRACE_DAYS"]
    overdue = db.session.scalars(
        select(Loan.id)
        .where(
            Loan.state.in_([LoanState.REPAYING, LoanState.DEFAULTED]),
            exists().where(
                and_(
                    Instalment.loan_id == Loan.id,
                    Instalment.paid_at.is_(None),
                    Instalment.due_on < today - timedelta(days=grace),
                )
            ),
        )
        .order_by(Loan.id)
    ).all()
    return sum(_apply_late(loan_id, now) for loan_id in overdue)


@retry_on_lock
def _apply_late(loan_id: int, now: datetime) -> int:
    config = current_app.config
    grace, default_days, penalty_bp = (
        config["LOAN_GRACE_DAYS"],
        config["LOAN_DEFAULT_DAYS"],
        config["LOAN_PENALTY_BP"],
    )
    today = now.date()
    changed = 0
    with unit_of_work():
        loan = _lock_loan(loan_id)
        for inst in _instalments(loan.id):
            if inst.paid_at is not None or inst.outstanding_amount == 0:
                continue
            days_late = (today - inst.due_on).days
            if days_late <= grace:
                break
            changed += _charge_late(inst, days_late - grace, penalty_bp, now)
            if loan.state is LoanState.REPAYING and days_late > default_days:
                _default(loan, now)
                changed += 1
    return changed


def _charge_late(inst: Instalment, days_past_grace: int, penalty_bp: int, now: datetime) -> int:
    changed = 0
    if inst.late_fee_at is None:
        inst.fee_amount += late_fee(inst)
        inst.late_fee_at = now
        changed = 1
    months = days_past_grace // 30
    if penalty_bp and months > inst.penalty_months:
        owed = (inst.principal_amount - inst.paid_principal_amount) + (
            inst.interest_amount - inst.paid_interest_amount
        )
        inst.penalty_amount += Money(owed, inst.currency).percent_bp(penalty_bp).amount * (
            months - inst.penalty_months
        )
        inst.penalty_months = months
        changed = 1
    return changed


def _default(loan: Loan, now: datetime) -> None:
    loan.transition_to(LoanState.DEFAULTED, now)
    lenders = db.session.scalars(
        select(LoanLender.user_id)
        .where(LoanLender.loan_id == loan.id)
        .distinct()
        .order_by(LoanLender.user_id)
    ).all()
    _notify(
        loan,
        list(lenders),
        NoticeCode.LOAN_DEFAULTED,
        "loan",
        {"borrower": loan.organisation.legal_name},
        now,
    )


def instalment_is_late(inst: Instalment, today: date) -> bool:
    """Unpaid past its due date plus the grace period."""
    return inst.paid_at is None and today > inst.due_on + timedelta(
        days=current_app.config["LOAN_GRACE_DAYS"]
    )
