"""Pledges and investor profiles.

A `Pledge` is one backer's commitment to one campaign: a reward tier (or "no reward"),
shares in an equity round, a loan share, or a donation. Charge-at-close pledges
(reward, equity, debt) are recorded as *active* and charged by settlement when the
campaign succeeds; donations are *pending* while the gateway is called and then
*charged* (or *failed*). A refund of the charge lowers what the pledge counts for
(`refunded_amount`); a full refund makes it *refunded*. The allowed moves between states
are `PLEDGE_TRANSITIONS`; `Pledge.transition_to` (the shared `StateMachine`) refuses any
other with `InvalidTransition`.

The campaign's stored counters (`raised_amount`, `backer_count`) and a tier's `claimed`
count only pledges in `COUNTED_STATES`, each for its `counted_amount` (the amount less
what was refunded); the engine service keeps them in step with every pledge in the same
transaction.
"""

from __future__ import annotations

import enum
from datetime import datetime

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    CheckConstraint,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from crowdfund.campaigns.kinds import kind_rules
from crowdfund.campaigns.models import Campaign, CampaignKind, CampaignState
from crowdfund.errors import describe
from crowdfund.extensions import db
from crowdfund.models_base import StateMachine, UTCDateTime, enum_column, utcnow
from crowdfund.money import Money
from crowdfund.payments.models import PaymentMethod  # noqa: F401  (pledges reference its table)


class PledgeState(enum.Enum):
    #: A donation whose charge is in progress at the gateway.
    PENDING = "pending"
    #: A charge-at-close commitment: nothing charged yet.
    ACTIVE = "active"
    CANCELLED = "cancelled"
    CHARGED = "charged"
    #: The charge was declined (donation) or failed at close (grace period, settlement).
    FAILED = "failed"
    #: The campaign failed or was cancelled: the commitment ends, nobody is charged.
    RELEASED = "released"
    REFUNDED = "refunded"

    @property
    def label(self) -> str:
        return self.value.capitalize()


P = PledgeState
#: Every allowed move of a pledge; anything else is an InvalidTransition.
PLEDGE_TRANSITIONS: dict[PledgeState, frozenset[PledgeState]] = {
    P.PENDING: frozenset({P.CHARGED, P.FAILED}),
    P.ACTIVE: frozenset({P.CANCELLED, P.CHARGED, P.FAILED, P.RELEASED}),
    P.FAILED: frozenset({P.CHARGED, P.RELEASED}),
    P.CHARGED: frozenset({P.REFUNDED}),
    P.CANCELLED: frozenset(),
    P.RELEASED: frozenset(),
    P.REFUNDED: frozenset(),
}
#: States whose amount, units and backer count the campaign's counters include.
COUNTED_STATES = frozenset({P.ACTIVE, P.CHARGED})


class Pledge(StateMachine, db.Model):
    __tablename__ = "pledges"
    __table_args__ = (
        UniqueConstraint("user_id", "idempotency_token"),
        CheckConstraint("amount_amount > 0", name="amount_positive"),
        CheckConstraint("quantity > 0", name="quantity_positive"),
        CheckConstraint("extra_amount >= 0", name="extra_not_negative"),
        CheckConstraint("shares IS NULL OR shares > 0", name="shares_positive"),
        CheckConstraint(
            "refunded_amount >= 0 AND refunded_amount <= amount_amount", name="refunded_within_amount"
        ),
        Index("ix_pledges_campaign_state", "campaign_id", "state"),
    )
    TRANSITIONS = PLEDGE_TRANSITIONS
    STATE_MODEL_NAME = "pledge"

    id: Mapped[int] = mapped_column(primary_key=True)
    campaign_id: Mapped[int] = mapped_column(ForeignKey("campaigns.id"), index=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    #: Copied from the campaign so reports and limits need no join.
    kind: Mapped[CampaignKind] = mapped_column(enum_column(CampaignKind, "pledge_kind"))
    state: Mapped[PledgeState] = mapped_column(enum_column(PledgeState, "pledge_state"), index=True)
    #: Everything the backer commits: tier price x quantity + extra, shares x price, the loan or the gift.
    amount_amount: Mapped[int] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(String(3))
    #: Reward: the tier chosen; None for "no reward".
    tier_id: Mapped[int | None] = mapped_column(ForeignKey("reward_tiers.id"), index=True)
    quantity: Mapped[int] = mapped_column(Integer, default=1)
    #: Reward: what the backer adds on top of the tier price (included in amount).
    extra_amount: Mapped[int] = mapped_column(BigInteger, default=0)
    #: Equity: whole shares bought at the campaign's price per share.
    shares: Mapped[int | None] = mapped_column(Integer)
    shipping_address: Mapped[str | None] = mapped_column(Text)
    #: Donation: a public message from the donor.
    message: Mapped[str | None] = mapped_column(Text)
    #: Donation: shown as "Anonymous" to the public and to the campaigner.
    anonymous: Mapped[bool] = mapped_column(Boolean, default=False)
    risk_acknowledged_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    payment_method_id: Mapped[int | None] = mapped_column(ForeignKey("payment_methods.id"))
    #: Per-form token (or API Idempotency-Key): a resubmitted form finds this pledge again.
    idempotency_token: Mapped[str | None] = mapped_column(String(100))
    #: Donation: the charge at the gateway.
    payment_operation_id: Mapped[int | None] = mapped_column(ForeignKey("payment_operations.id"))
    #: Donation: why the charge failed, as an `ErrorCode` value (see `failure_message`).
    failure_code: Mapped[str | None] = mapped_column(String(60))
    #: Values the failure's sentence is built from.
    failure_params: Mapped[dict | None] = mapped_column(JSON)
    #: Minor units of the charge given back by refunds; no longer counted in the totals.
    refunded_amount: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    #: Digest of the request that created the pledge: a replayed token must bring the same one.
    request_digest: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)
    cancelled_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    campaign: Mapped[Campaign] = relationship()
    user = relationship("User")
    tier = relationship("RewardTier")
    payment_method = relationship("PaymentMethod")

    # --- money views ----------------------------------------------------------------
    @property
    def amount(self) -> Money:
        return Money(self.amount_amount, self.currency)

    @property
    def extra(self) -> Money:
        return Money(self.extra_amount, self.currency)

    @property
    def refunded(self) -> Money:
        return Money(self.refunded_amount or 0, self.currency)

    @property
    def counted_amount(self) -> int:
        """Minor units this pledge adds to the campaign's raised amount while counted."""
        return self.amount_amount - (self.refunded_amount or 0)

    @property
    def is_partly_refunded(self) -> bool:
        return self.state is PledgeState.CHARGED and bool(self.refunded_amount)

    @property
    def is_counted(self) -> bool:
        return self.state in COUNTED_STATES

    @property
    def failure_message(self) -> str | None:
        """Why the charge failed, as a sentence for the backer (rendered from the stored code)."""
        return describe(self.failure_code, self.failure_params) if self.failure_code else None

    # --- lifecycle ------------------------------------------------------------------
    def on_transition(self, target: PledgeState, now: datetime) -> None:
        if target is PledgeState.CANCELLED:
            self.cancelled_at = now

    @property
    def cancellation_deadline(self) -> datetime | None:
        """The last moment the backer may cancel; None when they never may (donations)."""
        return kind_rules(self.kind).cancellation_deadline(self.campaign)

    def can_cancel_at(self, now: datetime) -> bool:
        deadline = self.cancellation_deadline
        return (
            deadline is not None
            and self.state is PledgeState.ACTIVE
            and self.campaign.state in (CampaignState.LIVE, CampaignState.SUSPENDED)
            and now < deadline
        )

    def can_change_at(self, now: datetime) -> bool:
        """Pledges of a kind with tiers (reward) can move tier or amount while the campaign is open."""
        return (
            kind_rules(self.kind).has_tiers
            and self.state is PledgeState.ACTIVE
            and self.campaign.is_open_at(now)
        )

    def __repr__(self) -> str:
        return f"<Pledge {self.id} {self.kind.value} {self.state.value} {self.amount}>"


class InvestorProfile(db.Model):
    """What an investor states once: income, net worth, accreditation (12-month limit)."""

    __tablename__ = "investor_profiles"
    __table_args__ = (
        CheckConstraint("annual_income_amount >= 0", name="income_not_negative"),
        CheckConstraint("net_worth_amount >= 0", name="net_worth_not_negative"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), unique=True)
    #: The currency income, net worth and the computed limit are stated in.
    currency: Mapped[str] = mapped_column(String(3), default="USD")
    annual_income_amount: Mapped[int] = mapped_column(BigInteger, default=0)
    net_worth_amount: Mapped[int] = mapped_column(BigInteger, default=0)
    #: An accredited investor has no 12-month limit.
    accredited: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)

    user = relationship("User")

    @property
    def annual_income(self) -> Money:
        return Money(self.annual_income_amount, self.currency)

    @property
    def net_worth(self) -> Money:
        return Money(self.net_worth_amount, self.currency)
