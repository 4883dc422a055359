"""Hospitals, tranches paid to them against invoices, reports on tranches, and surplus returns.

Tranche states (`TRANCHE_TRANSITIONS`): ``requested`` (the campaigner asked, with the
invoice) → ``in_notice`` (an operator approved it; the public notice runs until
`notice_ends_at`) → ``paying`` (escrow released to the hospital's payable; the payout
is at the gateway under the key ``tranche:{id}:payout``) → ``paid``. A report from the
public moves a tranche in notice to ``held`` until an operator clears it (back to
``in_notice``) or rejects the tranche. ``rejected`` is final (an operator's reason).

A `SurplusReturn` is opened once per appeal when it ends; its `SurplusRefund` rows are
the donors' pro-rata parts of what escrow held then (largest remainder, written once),
each refunded exactly once by its key ``patient_aid:surplus:{row id}``.
"""

from __future__ import annotations

import enum
from datetime import datetime

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    ForeignKey,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from crowdfund.errors import describe
from crowdfund.extensions import db
from crowdfund.models_base import StateMachine, UTCDateTime, enum_column, utcnow
from crowdfund.money import Money


class Hospital(db.Model):
    """A hospital (a provider) that tranches are paid to, with its own payout account."""

    __tablename__ = "hospitals"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    #: The medical institution licence number (unique: one record per hospital).
    licence_number: Mapped[str] = mapped_column(String(60), unique=True)
    city: Mapped[str] = mapped_column(String(100))
    country: Mapped[str] = mapped_column(String(2), default="CN")
    gateway: Mapped[str] = mapped_column(String(20))
    #: The gateway account payouts go to (Stripe Connect `acct_…` or sandbox `sbacct_…`).
    account_id: Mapped[str] = mapped_column(String(100), unique=True)
    bank_name: Mapped[str | None] = mapped_column(String(120))
    last4: Mapped[str | None] = mapped_column(String(4))
    #: True once the gateway says the account can receive transfers.
    payouts_enabled: Mapped[bool] = mapped_column(Boolean, default=False)
    #: Set when an operator verified the hospital (licence and bank checked); only verified
    #: hospitals can be chosen for a tranche.
    verified_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    verified_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    created_by_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    @property
    def is_verified(self) -> bool:
        return self.verified_at is not None and self.payouts_enabled

    def __repr__(self) -> str:
        return f"<Hospital {self.id} {self.name}>"


class TrancheState(enum.Enum):
    REQUESTED = "requested"
    IN_NOTICE = "in_notice"
    HELD = "held"
    PAYING = "paying"
    PAID = "paid"
    REJECTED = "rejected"

    @property
    def label(self) -> str:
        return TRANCHE_LABELS[self]


TRANCHE_LABELS = {
    TrancheState.REQUESTED: "Waiting for an operator",
    TrancheState.IN_NOTICE: "In public notice",
    TrancheState.HELD: "Held: a problem was reported",
    TrancheState.PAYING: "Being paid to the hospital",
    TrancheState.PAID: "Paid to the hospital",
    TrancheState.REJECTED: "Rejected",
}

T = TrancheState
#: Every allowed move of a tranche; anything else is an InvalidTransition.
TRANCHE_TRANSITIONS: dict[TrancheState, frozenset[TrancheState]] = {
    T.REQUESTED: frozenset({T.IN_NOTICE, T.REJECTED}),
    T.IN_NOTICE: frozenset({T.HELD, T.PAYING}),
    T.HELD: frozenset({T.IN_NOTICE, T.REJECTED}),
    T.PAYING: frozenset({T.PAID}),
    T.PAID: frozenset(),
    T.REJECTED: frozenset(),
}
#: Tranches that promise money still in escrow (requested, approved and not yet released).
RESERVING_STATES = frozenset({T.REQUESTED, T.IN_NOTICE, T.HELD})
#: Tranches not finished yet: an appeal cannot end while one is.
OPEN_STATES = frozenset({T.REQUESTED, T.IN_NOTICE, T.HELD, T.PAYING})
#: Tranches the public notice shows.
PUBLIC_STATES = frozenset({T.IN_NOTICE, T.HELD, T.PAYING, T.PAID})


class Tranche(StateMachine, db.Model):
    """One payout to a hospital against one itemised invoice of that hospital."""

    TRANSITIONS = TRANCHE_TRANSITIONS
    STATE_MODEL_NAME = "tranche"

    __tablename__ = "patient_aid_tranches"
    __table_args__ = (CheckConstraint("amount_amount > 0", name="amount_positive"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    campaign_id: Mapped[int] = mapped_column(ForeignKey("campaigns.id"), index=True)
    hospital_id: Mapped[int] = mapped_column(ForeignKey("hospitals.id"), index=True)
    #: The campaigner's request key (one per form): the same request twice is refused.
    request_key: Mapped[str] = mapped_column(String(100), unique=True)
    state: Mapped[TrancheState] = mapped_column(
        enum_column(TrancheState, "tranche_state"), default=TrancheState.REQUESTED, index=True
    )
    amount_amount: Mapped[int] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(String(3))
    #: What the money pays for, shown on the public notice ("Chemotherapy, cycles 1-2").
    purpose: Mapped[str] = mapped_column(String(300))
    invoice_number: Mapped[str] = mapped_column(String(60))
    #: The uploaded invoice under UPLOAD_DIR/invoices (random name; never under static/).
    invoice_file: Mapped[str] = mapped_column(String(100))
    invoice_content_type: Mapped[str] = mapped_column(String(40))
    requested_by_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    requested_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    decided_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    decided_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    #: The operator's reason for a rejection (a person's words).
    rejection_reason: Mapped[str | None] = mapped_column(Text)
    notice_ends_at: Mapped[datetime | None] = mapped_column(UTCDateTime, index=True)
    paid_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    payout_operation_id: Mapped[int | None] = mapped_column(ForeignKey("payment_operations.id"))
    #: Why the last payout attempt did not finish (an ErrorCode value), None when nothing is wrong.
    status_code: Mapped[str | None] = mapped_column(String(60))
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)

    hospital: Mapped[Hospital] = relationship()
    items: Mapped[list[InvoiceItem]] = relationship(
        back_populates="tranche", order_by="InvoiceItem.position", cascade="all, delete-orphan"
    )

    @property
    def amount(self) -> Money:
        return Money(self.amount_amount, self.currency)

    @property
    def invoice_total(self) -> Money:
        return Money(sum(i.amount_amount for i in self.items), self.currency)

    @property
    def status_message(self) -> str | None:
        return describe(self.status_code) if self.status_code else None

    def __repr__(self) -> str:
        return f"<Tranche {self.id} {self.state.value} {self.amount}>"


class InvoiceItem(db.Model):
    """One line of a tranche's invoice: what was done and what it costs."""

    __tablename__ = "patient_aid_invoice_items"
    __table_args__ = (CheckConstraint("amount_amount > 0", name="amount_positive"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    tranche_id: Mapped[int] = mapped_column(ForeignKey("patient_aid_tranches.id"), index=True)
    position: Mapped[int] = mapped_column(Integer)
    description: Mapped[str] = mapped_column(String(200))
    amount_amount: Mapped[int] = mapped_column(BigInteger)

    tranche: Mapped[Tranche] = relationship(back_populates="items")

    @property
    def amount(self) -> Money:
        return Money(self.amount_amount, self.tranche.currency)


class TrancheReport(db.Model):
    """Someone logged in reported a problem with a tranche in notice; it holds the payment
    until an operator clears it (the trust issue builds the queue)."""

    __tablename__ = "patient_aid_reports"
    __table_args__ = (UniqueConstraint("tranche_id", "user_id", name="one_report_per_user"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    tranche_id: Mapped[int] = mapped_column(ForeignKey("patient_aid_tranches.id"), index=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    reason: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    #: Set when an operator looked at it and let the tranche go on.
    cleared_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    cleared_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))

    @property
    def is_open(self) -> bool:
        return self.cleared_at is None


class SurplusReason(enum.Enum):
    TREATMENT_FINISHED = "treatment_finished"
    PERIOD_OVER = "period_over"

    @property
    def label(self) -> str:
        return {
            "treatment_finished": "Treatment finished",
            "period_over": "The appeal's period after close ended",
        }[self.value]


class SurplusReturn(db.Model):
    """An appeal that ended: what escrow still held, returned to the donors pro rata."""

    __tablename__ = "patient_aid_surplus_returns"

    id: Mapped[int] = mapped_column(primary_key=True)
    campaign_id: Mapped[int] = mapped_column(ForeignKey("campaigns.id"), unique=True)
    reason: Mapped[SurplusReason] = mapped_column(enum_column(SurplusReason, "surplus_reason"))
    #: Who ended the appeal (None: the job, once the period after close was over).
    ended_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    surplus_amount: Mapped[int] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(String(3))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    #: Set once every donor's part has been refunded.
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    refunds: Mapped[list[SurplusRefund]] = relationship(order_by="SurplusRefund.id")

    @property
    def surplus(self) -> Money:
        return Money(self.surplus_amount, self.currency)


class SurplusRefund(db.Model):
    """One donation's pro-rata part of a surplus, refunded to its card exactly once."""

    __tablename__ = "patient_aid_surplus_refunds"
    __table_args__ = (
        CheckConstraint("amount_amount > 0", name="amount_positive"),
        UniqueConstraint("surplus_return_id", "pledge_id", name="one_part_per_pledge"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    surplus_return_id: Mapped[int] = mapped_column(ForeignKey("patient_aid_surplus_returns.id"), index=True)
    pledge_id: Mapped[int] = mapped_column(ForeignKey("pledges.id"), index=True)
    amount_amount: Mapped[int] = mapped_column(BigInteger)
    refund_operation_id: Mapped[int | None] = mapped_column(ForeignKey("payment_operations.id"))
    refunded_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    #: Why the last refund attempt did not finish (an ErrorCode value).
    status_code: Mapped[str | None] = mapped_column(String(60))

    @property
    def key(self) -> str:
        return f"patient_aid:surplus:{self.id}"
