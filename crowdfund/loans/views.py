"""Loan pages: the borrower's loan (schedule, next due, repay by card, sandbox bank transfer)
and each lender's share (their part of the schedule and the repayments they received).

The borrower's page is for the organisation's members and operators; a lender's page for
that lender (and operators). Anyone else gets 404. `loan_shares_for_backer` is a template
global for My pledges, so the engine never imports this package.
"""

from __future__ import annotations

from collections.abc import Iterable
from decimal import Decimal

from flask import Blueprint, abort, flash, redirect, render_template, url_for
from flask_login import current_user, login_required

from crowdfund.errors import DomainError
from crowdfund.loans import service
from crowdfund.loans.forms import BankTransferForm, RepayForm, new_request_key
from crowdfund.loans.models import Loan
from crowdfund.models_base import utcnow
from crowdfund.money import Money, MoneyError
from crowdfund.payments import service as payments
from crowdfund.web.converters import parse_id

bp = Blueprint("loans", __name__)


@bp.app_template_global()
def loan_shares_for_backer(pledges: Iterable) -> dict[int, int]:
    """pledge id -> loan id for the current user's pledges that are loan shares."""
    return service.loans_for_pledges([p.id for p in pledges])


def _borrower_loan(loan_id: int) -> Loan:
    try:
        return service.loan_for_borrower(current_user, loan_id)
    except DomainError:
        abort(404)


def _usable_cards() -> list:
    now = utcnow()
    return [
        m for m in payments.list_payment_methods(current_user) if m.is_usable and not m.is_expired_at(now)
    ]


def _forms(loan: Loan, repay: RepayForm | None = None, transfer: BankTransferForm | None = None):
    repay = repay or RepayForm(formdata=None)
    transfer = transfer or BankTransferForm(formdata=None, prefix="transfer")
    repay.payment_method_id.choices = [
        (str(m.id), f"{m.brand.title()} •••• {m.last4}") for m in _usable_cards()
    ]
    nxt = service.next_due(loan)
    for form in (repay, transfer):
        if not form.key.data:
            form.key.data = new_request_key()
        if not form.amount.data and nxt is not None:
            form.amount.data = nxt.outstanding.format_plain()
    return repay, transfer


def _render_borrower(loan: Loan, repay=None, transfer=None, status: int = 200):
    repay, transfer = _forms(loan, repay, transfer)
    return (
        render_template(
            "loans/borrower.html",
            loan=loan,
            next_due=service.next_due(loan),
            outstanding=service.outstanding(loan),
            repayments=service.repayments_of(loan.id),
            repay_form=repay,
            transfer_form=transfer,
            sandbox=payments.gateway_name() == "sandbox",
            today=utcnow().date(),
            is_late=service.instalment_is_late,
        ),
        status,
    )


@bp.route("/loans/<int:loan_id>")
@login_required
def borrower(loan_id: int):
    return _render_borrower(_borrower_loan(loan_id))


def _amount(form, loan: Loan) -> Money | None:
    try:
        return Money.parse(form.amount.data, loan.currency)
    except MoneyError as exc:
        form.amount.errors = [*form.amount.errors, str(exc)]
        return None


def _refused(form, exc: DomainError) -> None:
    field = getattr(form, exc.field, None) if exc.field else None
    if field is not None:
        field.errors = [*field.errors, exc.message]
    else:
        form.form_errors.append(exc.message)


@bp.route("/loans/<int:loan_id>/repay", methods=["POST"])
@login_required
def repay(loan_id: int):
    loan = _borrower_loan(loan_id)
    form = RepayForm()
    amount = _amount(form, loan) if form.validate_on_submit() else None
    if amount is None:
        return _render_borrower(loan, repay=form, status=422)
    try:
        repayment = service.repay_by_card(
            current_user,
            loan.id,
            amount,
            payment_method_id=parse_id(form.payment_method_id.data) or 0,
            request_key=form.key.data or "",
        )
    except DomainError as exc:
        _refused(form, exc)
        return _render_borrower(loan, repay=form, status=exc.status if 400 <= exc.status < 500 else 409)
    if repayment.failure_code:
        flash(repayment.failure_message, "danger")
    else:
        flash(
            f"Repayment {repayment.number} of {repayment.amount.format()}: {repayment.state.label}.",
            "success",
        )
    return redirect(url_for("loans.borrower", loan_id=loan.id), 303)


@bp.route("/loans/<int:loan_id>/bank-transfer", methods=["POST"])
@login_required
def bank_transfer(loan_id: int):
    loan = _borrower_loan(loan_id)
    form = BankTransferForm(prefix="transfer")
    amount = _amount(form, loan) if form.validate_on_submit() else None
    if amount is None:
        return _render_borrower(loan, transfer=form, status=422)
    try:
        repayment = service.record_bank_transfer(
            current_user, loan.id, amount, reference=form.reference.data, request_key=form.key.data or ""
        )
    except DomainError as exc:
        _refused(form, exc)
        return _render_borrower(loan, transfer=form, status=exc.status if 400 <= exc.status < 500 else 409)
    flash(f"Bank transfer of {repayment.amount.format()} recorded and shared among the lenders.", "success")
    return redirect(url_for("loans.borrower", loan_id=loan.id), 303)


@bp.route("/loans/<int:loan_id>/my-share")
@login_required
def lender(loan_id: int):
    try:
        loan, rows = service.lender_positions(current_user, loan_id)
    except DomainError:
        abort(404)
    lent = sum(r.lent_amount for r in rows)
    fraction = Decimal(lent) / Decimal(loan.principal_amount)
    schedule = [
        (inst, Money(int((Decimal(inst.total_amount) * fraction).to_integral_value()), loan.currency))
        for inst in loan.instalments
    ]
    return render_template(
        "loans/lender.html",
        loan=loan,
        lent=Money(lent, loan.currency),
        received=Money(sum(r.received_amount for r in rows), loan.currency),
        percent=f"{fraction * 100:.2f}",
        schedule=schedule,
        received_rows=service.shares_received([r.id for r in rows]),
        notices=[n for n in service.notices_for(current_user) if n.loan_id == loan.id],
    )
