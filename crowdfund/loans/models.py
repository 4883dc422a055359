"""Loans: one per settled debt campaign, its instalments, its lenders and its repayments.

A `Loan` is opened once per settled debt campaign (unique on `campaign_id`): the principal
is what was collected, each `LoanLender` is one collected pledge weighted by what it
paid, and the monthly schedule is stored as `Instalment` rows (integer minor units,
half-even rounding, the last instalment absorbing the residual).

A `Repayment` is one payment by the borrower (card or bank transfer). It is written
before any money moves (state ``pending``, with its payments key
``loan:{loan_id}:repayment:{n}``), then, once the money is in, allocated to the
instalments (oldest first; within one penalty → fee → interest → principal) and split
among the lenders in one ledger transaction with every lender's leg (``split``). A
charge that fails leaves it ``failed``; a repayment undone later (refund, chargeback,
returned transfer) goes ``reversing`` → ``reversed``. `RepaymentShare` keeps each
lender's part of each split.

Loan states (`LOAN_TRANSITIONS`): ``repaying`` → ``repaid`` (everything due received) or
``defaulted`` (an instalment `LOAN_DEFAULT_DAYS` overdue); a defaulted loan stays
defaulted while recoveries are split, and becomes ``repaid`` if they cover everything; a
repaid loan goes back to ``repaying`` if a repayment is reversed.
"""

from __future__ import annotations

import enum
from datetime import date, datetime

from sqlalchemy import (
    JSON,
    BigInteger,
    CheckConstraint,
    Date,
    ForeignKey,
    Index,
    Integer,
    String,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from crowdfund.errors import describe
from crowdfund.extensions import db
from crowdfund.models_base import StateMachine, UTCDateTime, enum_column, utcnow
from crowdfund.money import Money


class LoanState(enum.Enum):
    REPAYING = "repaying"
    REPAID = "repaid"
    DEFAULTED = "defaulted"

    @property
    def label(self) -> str:
        return self.value.capitalize()


LOAN_TRANSITIONS: dict[LoanState, frozenset[LoanState]] = {
    LoanState.REPAYING: frozenset({LoanState.REPAID, LoanState.DEFAULTED}),
    LoanState.DEFAULTED: frozenset({LoanState.REPAID}),
    #: A reversed repayment can reopen a repaid loan.
    LoanState.REPAID: frozenset({LoanState.REPAYING}),
}


class RepaymentState(enum.Enum):
    PENDING = "pending"
    SPLIT = "split"
    FAILED = "failed"
    REVERSING = "reversing"
    REVERSED = "reversed"

    @property
    def label(self) -> str:
        return REPAYMENT_LABELS[self]


REPAYMENT_LABELS = {
    RepaymentState.PENDING: "Being received",
    RepaymentState.SPLIT: "Received and shared among lenders",
    RepaymentState.FAILED: "Payment failed",
    RepaymentState.REVERSING: "Being reversed",
    RepaymentState.REVERSED: "Reversed",
}

R = RepaymentState
REPAYMENT_TRANSITIONS: dict[RepaymentState, frozenset[RepaymentState]] = {
    R.PENDING: frozenset({R.SPLIT, R.FAILED}),
    R.SPLIT: frozenset({R.REVERSING}),
    R.REVERSING: frozenset({R.REVERSED}),
    R.FAILED: frozenset(),
    R.REVERSED: frozenset(),
}


class RepaymentMethod(enum.Enum):
    CARD = "card"
    BANK_TRANSFER = "bank_transfer"

    @property
    def label(self) -> str:
        return "Card" if self is RepaymentMethod.CARD else "Bank transfer"


#: Within an instalment, what a repayment pays first.
COMPONENTS = ("penalty", "fee", "interest", "principal")


class Loan(StateMachine, db.Model):
    """A settled debt campaign's loan: principal, rate, term and what has been repaid."""

    __tablename__ = "loans"
    __table_args__ = (
        CheckConstraint("principal_amount > 0", name="loan_principal_positive"),
        CheckConstraint("annual_rate_ppm >= 0 AND annual_rate_ppm <= 1000000", name="loan_rate_range"),
        CheckConstraint("term_months > 0", name="loan_term_positive"),
        CheckConstraint("repaid_amount >= 0", name="loan_repaid_not_negative"),
    )
    TRANSITIONS = LOAN_TRANSITIONS
    STATE_MODEL_NAME = "loan"

    id: Mapped[int] = mapped_column(primary_key=True)
    campaign_id: Mapped[int] = mapped_column(ForeignKey("campaigns.id"), unique=True)
    settlement_id: Mapped[int] = mapped_column(ForeignKey("settlements.id"), unique=True)
    #: The borrower.
    organisation_id: Mapped[int] = mapped_column(ForeignKey("organisations.id"), index=True)
    state: Mapped[LoanState] = mapped_column(enum_column(LoanState, "loan_state"), index=True)
    currency: Mapped[str] = mapped_column(String(3))
    principal_amount: Mapped[int] = mapped_column(BigInteger)
    #: Annual rate in parts per million (94 822 = 9.4822 %); the campaign's basis points × 100.
    annual_rate_ppm: Mapped[int] = mapped_column(Integer)
    term_months: Mapped[int] = mapped_column(Integer)
    first_due_on: Mapped[date] = mapped_column(Date)
    #: Everything received and split so far (less reversals): the split's running total.
    repaid_amount: Mapped[int] = mapped_column(BigInteger, default=0)
    #: How many repayments were ever recorded (numbers their payments keys).
    repayment_count: Mapped[int] = mapped_column(Integer, default=0)
    lender_count: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    defaulted_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    repaid_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    campaign = relationship("Campaign")
    organisation = relationship("Organisation")
    instalments: Mapped[list[Instalment]] = relationship(
        back_populates="loan", order_by="Instalment.number", viewonly=True
    )

    @property
    def principal(self) -> Money:
        return Money(self.principal_amount, self.currency)

    @property
    def repaid(self) -> Money:
        return Money(self.repaid_amount or 0, self.currency)

    @property
    def rate_percent(self) -> str:
        return f"{self.annual_rate_ppm / 10_000:.4f}".rstrip("0").rstrip(".")

    def on_transition(self, target: LoanState, now: datetime) -> None:
        if target is LoanState.DEFAULTED:
            self.defaulted_at = now
        elif target is LoanState.REPAID:
            self.repaid_at = now

    def __repr__(self) -> str:
        return f"<Loan {self.id} campaign {self.campaign_id} {self.state.value}>"


class Instalment(db.Model):
    """One month of the schedule: what is due, when, and what of it has been paid."""

    __tablename__ = "loan_instalments"
    __table_args__ = (
        UniqueConstraint("loan_id", "number", name="uq_loan_instalment_number"),
        CheckConstraint(
            "principal_amount >= 0 AND interest_amount >= 0 AND fee_amount >= 0 AND penalty_amount >= 0",
            name="instalment_amounts_not_negative",
        ),
        CheckConstraint(
            "paid_principal_amount BETWEEN 0 AND principal_amount"
            " AND paid_interest_amount BETWEEN 0 AND interest_amount"
            " AND paid_fee_amount BETWEEN 0 AND fee_amount"
            " AND paid_penalty_amount BETWEEN 0 AND penalty_amount",
            name="instalment_paid_within_due",
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    loan_id: Mapped[int] = mapped_column(ForeignKey("loans.id"), index=True)
    number: Mapped[int] = mapped_column(Integer)
    due_on: Mapped[date] = mapped_column(Date)
    currency: Mapped[str] = mapped_column(String(3))
    principal_amount: Mapped[int] = mapped_column(BigInteger)
    interest_amount: Mapped[int] = mapped_column(BigInteger)
    #: The late fee (LOAN_LATE_FEE), once the grace period has passed unpaid.
    fee_amount: Mapped[int] = mapped_column(BigInteger, default=0)
    #: Penalty interest (LOAN_PENALTY_BP a month) on what stays overdue after the grace period.
    penalty_amount: Mapped[int] = mapped_column(BigInteger, default=0)
    #: Months of penalty interest charged so far.
    penalty_months: Mapped[int] = mapped_column(Integer, default=0)
    paid_principal_amount: Mapped[int] = mapped_column(BigInteger, default=0)
    paid_interest_amount: Mapped[int] = mapped_column(BigInteger, default=0)
    paid_fee_amount: Mapped[int] = mapped_column(BigInteger, default=0)
    paid_penalty_amount: Mapped[int] = mapped_column(BigInteger, default=0)
    late_fee_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    #: When the last unit due was received (None while anything is outstanding).
    paid_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    loan: Mapped[Loan] = relationship(back_populates="instalments")

    def due(self, component: str) -> int:
        return getattr(self, f"{component}_amount")

    def paid(self, component: str) -> int:
        return getattr(self, f"paid_{component}_amount")

    @property
    def total_amount(self) -> int:
        return sum(self.due(c) for c in COMPONENTS)

    @property
    def outstanding_amount(self) -> int:
        return sum(self.due(c) - self.paid(c) for c in COMPONENTS)

    @property
    def principal(self) -> Money:
        return Money(self.principal_amount, self.currency)

    @property
    def interest(self) -> Money:
        return Money(self.interest_amount, self.currency)

    @property
    def charges(self) -> Money:
        """The late fee and penalty interest charged on it."""
        return Money(self.fee_amount + self.penalty_amount, self.currency)

    @property
    def scheduled(self) -> Money:
        return Money(self.principal_amount + self.interest_amount, self.currency)

    @property
    def total(self) -> Money:
        return Money(self.total_amount, self.currency)

    @property
    def outstanding(self) -> Money:
        return Money(self.outstanding_amount, self.currency)

    @property
    def paid_total(self) -> Money:
        return Money(sum(self.paid(c) for c in COMPONENTS), self.currency)

    def __repr__(self) -> str:
        return f"<Instalment {self.loan_id}/{self.number} due {self.due_on}>"


class LoanLender(db.Model):
    """One collected pledge of the loan: its weight in every split and what it has received."""

    __tablename__ = "loan_lenders"
    __table_args__ = (
        CheckConstraint("lent_amount > 0", name="lender_lent_positive"),
        CheckConstraint("received_amount >= 0", name="lender_received_not_negative"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    loan_id: Mapped[int] = mapped_column(ForeignKey("loans.id"), index=True)
    pledge_id: Mapped[int] = mapped_column(ForeignKey("pledges.id"), unique=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    #: What the pledge paid in: the lender's weight.
    lent_amount: Mapped[int] = mapped_column(BigInteger)
    #: Everything this lender has received from the loan so far (less reversals).
    received_amount: Mapped[int] = mapped_column(BigInteger, default=0)

    loan: Mapped[Loan] = relationship()


class Repayment(StateMachine, db.Model):
    """One payment by the borrower: its key, how it was paid, its allocation and its split."""

    __tablename__ = "loan_repayments"
    __table_args__ = (
        UniqueConstraint("loan_id", "request_key", name="uq_loan_repayment_request_key"),
        CheckConstraint("amount_amount > 0", name="repayment_amount_positive"),
        Index("ix_loan_repayments_state", "state", "updated_at"),
    )
    TRANSITIONS = REPAYMENT_TRANSITIONS
    STATE_MODEL_NAME = "repayment"

    id: Mapped[int] = mapped_column(primary_key=True)
    loan_id: Mapped[int] = mapped_column(ForeignKey("loans.id"), index=True)
    #: n-th repayment of the loan (1, 2, …).
    number: Mapped[int] = mapped_column(Integer)
    state: Mapped[RepaymentState] = mapped_column(enum_column(RepaymentState, "loan_repayment_state"))
    method: Mapped[RepaymentMethod] = mapped_column(enum_column(RepaymentMethod, "loan_repayment_method"))
    amount_amount: Mapped[int] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(String(3))
    #: The key the request came with (a form's hidden key, an API client's key).
    request_key: Mapped[str] = mapped_column(String(200))
    #: The payments key of the card charge, ``loan:{loan_id}:repayment:{number}``.
    charge_key: Mapped[str] = mapped_column(String(200), unique=True)
    payment_operation_id: Mapped[int | None] = mapped_column(ForeignKey("payment_operations.id"))
    payment_method_id: Mapped[int | None] = mapped_column(ForeignKey("payment_methods.id"))
    #: The bank transfer's reference (bank transfers only).
    reference: Mapped[str | None] = mapped_column(String(100))
    recorded_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    #: [[instalment number, component, minor units], …] in the order it was paid.
    allocation: Mapped[list | None] = mapped_column(JSON)
    #: The loan's running total once this repayment was split.
    repaid_after_amount: Mapped[int | None] = mapped_column(BigInteger)
    failure_code: Mapped[str | None] = mapped_column(String(60))
    failure_params: Mapped[dict | None] = mapped_column(JSON)
    reversal_code: Mapped[str | None] = mapped_column(String(60))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)
    received_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    reversed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    loan: Mapped[Loan] = relationship()

    @property
    def amount(self) -> Money:
        return Money(self.amount_amount, self.currency)

    @property
    def failure_message(self) -> str | None:
        return describe(self.failure_code, self.failure_params) if self.failure_code else None

    def on_transition(self, target: RepaymentState, now: datetime) -> None:
        if target is RepaymentState.SPLIT:
            self.received_at = now
        elif target is RepaymentState.REVERSED:
            self.reversed_at = now


class RepaymentShare(db.Model):
    """A lender's part of one repayment (what their wallet was credited)."""

    __tablename__ = "loan_repayment_shares"
    __table_args__ = (
        UniqueConstraint("repayment_id", "lender_id", name="uq_loan_repayment_share"),
        CheckConstraint("amount_amount > 0", name="repayment_share_positive"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    repayment_id: Mapped[int] = mapped_column(ForeignKey("loan_repayments.id"), index=True)
    lender_id: Mapped[int] = mapped_column(ForeignKey("loan_lenders.id"), index=True)
    amount_amount: Mapped[int] = mapped_column(BigInteger)


class LoanNotice(db.Model):
    """An in-app notice to a lender about a loan: an `ErrorCode` value and its parameters."""

    __tablename__ = "loan_notices"
    __table_args__ = (UniqueConstraint("loan_id", "user_id", "code", "subject", name="uq_loan_notice"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    loan_id: Mapped[int] = mapped_column(ForeignKey("loans.id"), index=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    code: Mapped[str] = mapped_column(String(60))
    #: What the notice is about within the loan ("loan", "instalment:3", "repayment:7"): one notice each.
    subject: Mapped[str] = mapped_column(String(60), default="loan")
    params: Mapped[dict | None] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    read_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    @property
    def message(self) -> str:
        return describe(self.code, self.params)


def repayment_key(loan_id: int, number: int) -> str:
    """The payments key of the loan's `number`-th repayment."""
    return f"loan:{loan_id}:repayment:{number}"
