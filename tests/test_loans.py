"""Loans end to end: opened when a debt campaign settles, repaid by card or bank transfer,
split among the lenders, late fees and default, reversal, crash and resume, bad input."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import func, select

from crowdfund.errors import Conflict, DomainError, ErrorCode, NotFound, ValidationError
from crowdfund.extensions import db
from crowdfund.ledger import service as ledger
from crowdfund.ledger.models import AccountPurpose, LedgerTransaction, TransactionKind
from crowdfund.loans import service as loans
from crowdfund.loans.models import Loan, LoanLender, LoanNotice, LoanState, Repayment, RepaymentState
from crowdfund.loans.split import largest_remainder
from crowdfund.money import Money
from tests.factories import make_user, operator
from tests.loans_world import DAY, borrower_of, settled_loan
from tests.settlement_world import escrow, sandbox_charge_count


def cny(minor: int) -> Money:
    return Money(minor, "CNY")


def _loan(loan_id: int) -> Loan:
    db.session.expire_all()
    return db.session.get(Loan, loan_id)


def _received(loan_id: int) -> list[int]:
    return list(
        db.session.scalars(
            select(LoanLender.received_amount).where(LoanLender.loan_id == loan_id).order_by(LoanLender.id)
        )
    )


def _weights(loan_id: int) -> list[int]:
    return list(
        db.session.scalars(
            select(LoanLender.lent_amount).where(LoanLender.loan_id == loan_id).order_by(LoanLender.id)
        )
    )


def _wallets(loan_id: int) -> list[int]:
    users = db.session.scalars(
        select(LoanLender.user_id).where(LoanLender.loan_id == loan_id).order_by(LoanLender.id)
    ).all()
    return [ledger.get_account(AccountPurpose.USER_WALLET, "CNY", "user", u).balance_amount for u in users]


def _pay(user, loan, amount: int, key: str, now):
    method = user.payment_methods[0] if hasattr(user, "payment_methods") else None
    from crowdfund.payments import service as payments

    method = payments.default_payment_method(user)
    return loans.repay_by_card(
        user, loan.id, cny(amount), payment_method_id=method.id, request_key=key, now=now
    )


def test_a_settled_debt_campaign_becomes_a_loan_with_its_schedule_and_lenders(app):
    loan, paid_out = settled_loan(3, 10_000, term_months=6, rate_bp=800)
    assert loan.state is LoanState.REPAYING
    assert loan.principal == cny(30_000)
    assert loan.annual_rate_ppm == 80_000
    assert loan.lender_count == 3 and _weights(loan.id) == [10_000] * 3
    rows = loan.instalments
    assert [i.number for i in rows] == [1, 2, 3, 4, 5, 6]
    assert sum(i.principal_amount for i in rows) == 30_000
    assert rows[0].due_on.month == (paid_out.month % 12) + 1
    assert loans.open_due_loans(now=paid_out + DAY) == 0  # opened once


def test_a_card_repayment_is_split_among_the_lenders_and_credits_only_what_was_received(app):
    loan, paid_out = settled_loan(3, 10_000)
    borrower = borrower_of(loan)
    first = loan.instalments[0]
    due = first.outstanding_amount
    repayment = _pay(borrower, loan, due, "k1", paid_out + 20 * DAY)
    assert repayment.state is RepaymentState.SPLIT
    assert repayment.allocation[0][:2] == [1, "interest"]
    assert sum(_received(loan.id)) == due
    assert _received(loan.id) == largest_remainder(due, [10_000] * 3)
    assert _wallets(loan.id) == _received(loan.id)
    assert escrow(loan.campaign).amount == 0  # in through escrow, straight out to the lenders
    loan = _loan(loan.id)
    assert loan.repaid == cny(due)
    assert loan.instalments[0].paid_at is not None and loan.instalments[1].paid_at is None
    assert loans.next_due(loan).number == 2
    assert ledger.verify_ledger().ok
    splits = db.session.scalar(
        select(func.count(LedgerTransaction.id)).where(LedgerTransaction.kind == TransactionKind.REPAYMENT)
    )
    assert splits == 1


def test_repaying_everything_early_lands_each_lender_exactly_on_their_share(app):
    loan, paid_out = settled_loan(3, 10_001)
    borrower = borrower_of(loan)
    total = loans.outstanding(loan).amount
    for n, part in enumerate((1, 7_000, total - 7_001)):
        _pay(borrower, loan, part, f"k{n}", paid_out + DAY)
    loan = _loan(loan.id)
    assert loan.state is LoanState.REPAID
    assert _received(loan.id) == largest_remainder(total, _weights(loan.id))
    with pytest.raises(Conflict) as exc:
        _pay(borrower, loan, 1, "k9", paid_out + DAY)
    assert exc.value.code is ErrorCode.LOAN_CLOSED


@pytest.mark.parametrize(
    ("amount", "code"),
    [
        (cny(0), ErrorCode.REPAYMENT_AMOUNT),
        (cny(10**9), ErrorCode.REPAYMENT_AMOUNT),
        (Money(100, "USD"), ErrorCode.REPAYMENT_CURRENCY),
    ],
)
def test_a_wrong_amount_or_currency_is_refused_and_changes_nothing(app, amount, code):
    loan, paid_out = settled_loan(2)
    borrower = borrower_of(loan)
    head = ledger.chain_head()
    charges = sandbox_charge_count()
    from crowdfund.payments import service as payments

    method = payments.default_payment_method(borrower)
    with pytest.raises(ValidationError) as exc:
        loans.repay_by_card(
            borrower, loan.id, amount, payment_method_id=method.id, request_key="k", now=paid_out
        )
    assert exc.value.code is code
    assert exc.value.message  # a sentence to show
    assert db.session.scalar(select(func.count(Repayment.id))) == 0
    assert ledger.chain_head() == head and sandbox_charge_count() == charges


def test_a_second_request_with_the_same_key_is_refused_and_charges_nothing(app):
    loan, paid_out = settled_loan(2)
    borrower = borrower_of(loan)
    first = _pay(borrower, loan, 500, "same", paid_out)
    head, charges = ledger.chain_head(), sandbox_charge_count()
    with pytest.raises(Conflict) as exc:
        _pay(borrower, loan, 500, "same", paid_out)
    assert exc.value.code is ErrorCode.REPAYMENT_DUPLICATE
    assert str(first.number) in exc.value.message
    with pytest.raises(Conflict) as exc:
        _pay(borrower, loan, 700, "same", paid_out)
    assert exc.value.code is ErrorCode.IDEMPOTENCY_CONFLICT
    assert ledger.chain_head() == head and sandbox_charge_count() == charges
    assert sum(_received(loan.id)) == 500


def test_only_the_borrower_or_an_operator_may_repay(app):
    loan, paid_out = settled_loan(2)
    stranger = make_user()
    with pytest.raises(NotFound):
        loans.record_bank_transfer(stranger, loan.id, cny(100), reference="r", request_key="k", now=paid_out)
    with pytest.raises(NotFound):
        loans.loan_for_borrower(stranger, loan.id)
    assert loans.record_bank_transfer(
        operator(), loan.id, cny(100), reference="r", request_key="k"
    ).state is (RepaymentState.SPLIT)


def test_a_bank_transfer_is_recorded_in_sandbox_mode_and_split_at_once(app):
    loan, paid_out = settled_loan(3)
    borrower = borrower_of(loan, card=False)
    repayment = loans.record_bank_transfer(
        borrower, loan.id, cny(1_001), reference="BANK-REF-1", request_key="t1", now=paid_out
    )
    assert repayment.state is RepaymentState.SPLIT and repayment.reference == "BANK-REF-1"
    assert _received(loan.id) == [334, 334, 333]
    assert escrow(loan.campaign).amount == 0
    assert ledger.verify_ledger().ok


def test_a_bank_transfer_outside_the_sandbox_is_refused(app, monkeypatch):
    loan, paid_out = settled_loan(2)
    borrower = borrower_of(loan, card=False)
    monkeypatch.setattr(loans.payments, "gateway_name", lambda: "stripe")
    with pytest.raises(Conflict) as exc:
        loans.record_bank_transfer(borrower, loan.id, cny(100), reference="r", request_key="k", now=paid_out)
    assert exc.value.code is ErrorCode.BANK_TRANSFER_SANDBOX_ONLY
    assert db.session.scalar(select(func.count(Repayment.id))) == 0


class Killed(Exception):
    pass


@pytest.mark.parametrize("where", ["intent", "charge", "split"])
def test_a_repayment_that_crashes_halfway_is_resumed_and_pays_nobody_twice(app, where):
    loan, paid_out = settled_loan(5, 10_000)
    borrower = borrower_of(loan)

    def kill(step: str) -> None:
        if step == where:
            raise Killed(step)

    loans.STEP_HOOK = kill
    try:
        with pytest.raises(Killed):
            _pay(borrower, loan, 2_503, "k", paid_out)
    finally:
        loans.STEP_HOOK = None
    db.session.rollback()
    assert sum(_received(loan.id)) == 0  # nobody paid yet: all lenders' legs or none
    assert db.session.scalar(select(Repayment.state)) is RepaymentState.PENDING
    assert loans.resume_repayments(now=paid_out, stale_after=timedelta(0)) == 1
    assert loans.resume_repayments(now=paid_out, stale_after=timedelta(0)) == 0
    assert db.session.scalar(select(Repayment.state)) is RepaymentState.SPLIT
    assert sandbox_charge_count() == 5 + 1  # the lenders' pledges and one repayment charge
    assert sum(_received(loan.id)) == 2_503 and _wallets(loan.id) == _received(loan.id)
    assert ledger.verify_ledger().ok


def test_late_fee_after_grace_then_default_then_recoveries_split_the_same_way(app):
    app.config["LOAN_LATE_FEE"] = "5.00"
    loan, paid_out = settled_loan(3, 10_000)
    borrower = borrower_of(loan)
    first = loan.instalments[0]
    due_on = first.due_on
    from datetime import UTC, datetime

    day0 = datetime(due_on.year, due_on.month, due_on.day, 12, tzinfo=UTC)
    assert loans.apply_late_rules(now=day0 + 15 * DAY) == 0  # still in the grace period
    assert loans.apply_late_rules(now=day0 + 16 * DAY) == 1
    assert loans.apply_late_rules(now=day0 + 17 * DAY) == 0  # charged once
    loan = _loan(loan.id)
    assert loan.instalments[0].fee_amount == 500
    assert loans.repayment_record(loan.organisation_id, now=day0 + 17 * DAY).late == 1

    # a partial repayment pays the fee first, then interest, then principal
    repayment = _pay(borrower, loan, 600, "late-1", day0 + 20 * DAY)
    assert repayment.allocation == [[1, "fee", 500], [1, "interest", 100]]

    loans.apply_late_rules(now=day0 + 121 * DAY)
    loan = _loan(loan.id)
    assert loan.state is LoanState.DEFAULTED
    notices = db.session.scalars(select(LoanNotice).where(LoanNotice.loan_id == loan.id)).all()
    assert len(notices) == 3 and {n.code for n in notices} == {"loan_defaulted"}
    assert "default" in notices[0].message
    assert loans.repayment_record(loan.organisation_id, now=day0 + 121 * DAY).defaulted == 1

    recovered = loans.record_bank_transfer(
        operator(), loan.id, cny(1_000), reference="recovery", request_key="rec", now=day0 + 130 * DAY
    )
    assert recovered.state is RepaymentState.SPLIT
    assert sum(_received(loan.id)) == 1_600
    assert _received(loan.id) == largest_remainder(1_600, [10_000] * 3)
    assert _loan(loan.id).state is LoanState.DEFAULTED


def test_a_reversed_repayment_takes_every_lenders_part_back_and_refunds_the_borrower(app):
    loan, paid_out = settled_loan(3)
    borrower = borrower_of(loan)
    kept = _pay(borrower, loan, 1_000, "a", paid_out)
    undone = _pay(borrower, loan, 2_000, "b", paid_out)
    assert sum(_received(loan.id)) == 3_000
    with pytest.raises(NotFound):
        loans.reverse_repayment(borrower, undone.id)
    reversed_ = loans.reverse_repayment(operator(), undone.id, now=paid_out + DAY)
    assert reversed_.state is RepaymentState.REVERSED
    assert sum(_received(loan.id)) == 1_000 and _wallets(loan.id) == _received(loan.id)
    loan = _loan(loan.id)
    assert loan.repaid == cny(1_000)
    assert loan.instalments[0].paid_total == cny(1_000)
    assert escrow(loan.campaign).amount == 0
    with pytest.raises(DomainError) as exc:
        loans.reverse_repayment(operator(), undone.id)
    assert exc.value.code is ErrorCode.REPAYMENT_NOT_REVERSIBLE
    assert db.session.get(Repayment, kept.id).state is RepaymentState.SPLIT
    assert ledger.verify_ledger().ok


def test_repayment_record_counts_on_time_and_late_instalments(app):
    loan, paid_out = settled_loan(2)
    borrower = borrower_of(loan)
    first = loan.instalments[0]
    _pay(borrower, loan, first.outstanding_amount, "on-time", paid_out)
    from datetime import UTC, datetime

    second = loan.instalments[1].due_on
    record = loans.repayment_record(
        loan.organisation_id, now=datetime(second.year, second.month, second.day, tzinfo=UTC) + 30 * DAY
    )
    assert (record.on_time, record.late, record.defaulted) == (1, 1, 0)
