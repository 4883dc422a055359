"""Shares issued by equity rounds, the organisation's cap table, and reconfirmations.

When a round's settlement is *settled*, `ShareIssue` records the issue once per campaign
(unique on `campaign_id`: the issuing job is safe to run twice) and a `ShareHolding` per
investor's pledge whose money was collected: whole shares = collected amount // price,
with a certificate number and the ledger transaction of the charge it ties to.

The founders' shares held before the round are not known to the platform: an
organisation may state them (`PreRoundShares`); until it does, the cap table shows each
holding as a part of the shares issued on the platform only.

A material change to a live round (price, maximum, terms) after the first commitment is a
`RoundAmendment`; each committed investor gets a `Reconfirmation` (`pending` →
`confirmed` | `declined` | `lapsed` | `superseded`) due in EQUITY_RECONFIRM_BUSINESS_DAYS
business days; a lapsed one cancels the commitment and nothing is issued for it.
`InvestorNotice` is the in-app record of what an investor was told (a code + params,
rendered when shown).
"""

from __future__ import annotations

import enum
from datetime import datetime

from sqlalchemy import (
    JSON,
    BigInteger,
    CheckConstraint,
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


class ShareIssue(db.Model):
    """One equity round's issue of shares: done once, when its settlement is settled."""

    __tablename__ = "share_issues"
    __table_args__ = (
        CheckConstraint("shares_issued >= 0", name="shares_issued_not_negative"),
        CheckConstraint("price_amount > 0", name="issue_price_positive"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    campaign_id: Mapped[int] = mapped_column(ForeignKey("campaigns.id"), unique=True)
    organisation_id: Mapped[int] = mapped_column(ForeignKey("organisations.id"), index=True)
    settlement_id: Mapped[int] = mapped_column(ForeignKey("settlements.id"), unique=True)
    #: The price per share at which the round was issued.
    price_amount: Mapped[int] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(String(3))
    shares_issued: Mapped[int] = mapped_column(BigInteger, default=0)
    holder_count: Mapped[int] = mapped_column(Integer, default=0)
    issued_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    campaign = relationship("Campaign")

    @property
    def price(self) -> Money:
        return Money(self.price_amount, self.currency)


class ShareHolding(db.Model):
    """Shares issued to one investor for one pledge: the subscription certificate's content."""

    __tablename__ = "share_holdings"
    __table_args__ = (
        CheckConstraint("shares > 0", name="holding_shares_positive"),
        CheckConstraint("price_amount > 0", name="holding_price_positive"),
        Index("ix_share_holdings_org_issued", "organisation_id", "issued_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    issue_id: Mapped[int] = mapped_column(ForeignKey("share_issues.id"), index=True)
    organisation_id: Mapped[int] = mapped_column(ForeignKey("organisations.id"))
    campaign_id: Mapped[int] = mapped_column(ForeignKey("campaigns.id"), index=True)
    pledge_id: Mapped[int] = mapped_column(ForeignKey("pledges.id"), unique=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    #: "EQ-{campaign id}-{n:05d}", n counting the round's holdings in pledge order.
    certificate_number: Mapped[str] = mapped_column(String(40), unique=True)
    #: The holder's name as it stood when the shares were issued.
    holder_name: Mapped[str] = mapped_column(String(200))
    shares: Mapped[int] = mapped_column(BigInteger)
    price_amount: Mapped[int] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(String(3))
    #: What was collected for the shares (shares x price; any remainder was never charged).
    paid_amount: Mapped[int] = mapped_column(BigInteger)
    #: The charge's ledger transaction (key payment:{id}:charge) the certificate ties to.
    ledger_transaction_id: Mapped[int | None] = mapped_column(ForeignKey("ledger_transactions.id"))
    issued_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    issue: Mapped[ShareIssue] = relationship()
    campaign = relationship("Campaign")
    organisation = relationship("Organisation")
    ledger_transaction = relationship("LedgerTransaction")

    @property
    def price(self) -> Money:
        return Money(self.price_amount, self.currency)

    @property
    def paid(self) -> Money:
        return Money(self.paid_amount, self.currency)


class PreRoundShares(db.Model):
    """What an organisation states it had issued before its first round on the platform."""

    __tablename__ = "pre_round_shares"
    __table_args__ = (CheckConstraint("shares > 0", name="pre_round_shares_positive"),)

    organisation_id: Mapped[int] = mapped_column(ForeignKey("organisations.id"), primary_key=True)
    shares: Mapped[int] = mapped_column(BigInteger)
    set_by_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    set_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class RoundAmendment(db.Model):
    """A material change to a live equity round's terms: what they were and what they became."""

    __tablename__ = "round_amendments"

    id: Mapped[int] = mapped_column(primary_key=True)
    campaign_id: Mapped[int] = mapped_column(ForeignKey("campaigns.id"), index=True)
    amended_by_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    #: The terms before and after, as {field: value} (amounts in minor units).
    before: Mapped[dict] = mapped_column(JSON)
    after: Mapped[dict] = mapped_column(JSON)
    #: When investors committed before the change must have reconfirmed.
    reconfirm_by: Mapped[datetime] = mapped_column(UTCDateTime)
    #: How many commitments were asked to reconfirm.
    asked: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    def changes(self, currency: str) -> list[tuple[str, str, str]]:
        """(term, before, after) for each term that changed, for people."""
        out = []
        for name, label in CHANGE_LABELS.items():
            old, new = self.before.get(name), self.after.get(name)
            if old != new:
                if name == "security_type":
                    old, new = str(old).replace("_", " "), str(new).replace("_", " ")
                else:
                    old, new = Money(old, currency).format(), Money(new, currency).format()
                out.append((label, old, new))
        return out


CHANGE_LABELS = {
    "price_per_share": "Price per share",
    "max_target": "Maximum",
    "min_investment": "Minimum investment",
    "pre_money_valuation": "Pre-money valuation",
    "security_type": "Type of security",
}


class ReconfirmationState(enum.Enum):
    PENDING = "pending"
    CONFIRMED = "confirmed"
    DECLINED = "declined"
    LAPSED = "lapsed"
    #: A later amendment asked again.
    SUPERSEDED = "superseded"

    @property
    def label(self) -> str:
        return self.value.capitalize()


R = ReconfirmationState
RECONFIRMATION_TRANSITIONS: dict[ReconfirmationState, frozenset[ReconfirmationState]] = {
    R.PENDING: frozenset({R.CONFIRMED, R.DECLINED, R.LAPSED, R.SUPERSEDED}),
    R.CONFIRMED: frozenset({R.SUPERSEDED}),
    R.DECLINED: frozenset(),
    R.LAPSED: frozenset(),
    R.SUPERSEDED: frozenset(),
}
#: States in which nothing may be issued for the pledge.
BLOCKING_STATES = frozenset({R.PENDING, R.DECLINED, R.LAPSED})


class Reconfirmation(StateMachine, db.Model):
    """One committed investor's answer to one amendment."""

    __tablename__ = "reconfirmations"
    __table_args__ = (
        UniqueConstraint("amendment_id", "pledge_id"),
        Index("ix_reconfirmations_due", "state", "deadline"),
    )
    TRANSITIONS = RECONFIRMATION_TRANSITIONS
    STATE_MODEL_NAME = "reconfirmation"

    id: Mapped[int] = mapped_column(primary_key=True)
    amendment_id: Mapped[int] = mapped_column(ForeignKey("round_amendments.id"))
    campaign_id: Mapped[int] = mapped_column(ForeignKey("campaigns.id"), index=True)
    pledge_id: Mapped[int] = mapped_column(ForeignKey("pledges.id"), index=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    state: Mapped[ReconfirmationState] = mapped_column(
        enum_column(ReconfirmationState, "reconfirmation_state")
    )
    deadline: Mapped[datetime] = mapped_column(UTCDateTime)
    answered_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    amendment: Mapped[RoundAmendment] = relationship()
    pledge = relationship("Pledge")

    def on_transition(self, target: ReconfirmationState, now: datetime) -> None:
        self.answered_at = now


class InvestorNotice(db.Model):
    """Something an investor was told in the app, as a code and its parameters."""

    __tablename__ = "investor_notices"

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    campaign_id: Mapped[int] = mapped_column(ForeignKey("campaigns.id"))
    pledge_id: Mapped[int | None] = mapped_column(ForeignKey("pledges.id"))
    #: An `ErrorCode` value: reconfirm_requested, not_reconfirmed, reconfirm_declined, shares_issued.
    code: Mapped[str] = mapped_column(String(60))
    params: Mapped[dict | None] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    @property
    def message(self) -> str:
        return describe(self.code, self.params)
