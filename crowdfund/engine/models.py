"""Pledges and investor profiles.

A `Pledge` is one backer's commitment to one campaign: a reward tier (or "no reward"),
shares in an equity round, a loan share, or a donation. Charge-at-close pledges
(reward, equity, debt) are recorded as *active* and charged by settlement when the
campaign succeeds; donations are *pending* while the gateway is called and then
*charged* (or *failed*). The allowed moves between states are `PLEDGE_TRANSITIONS`;
`Pledge.transition_to` refuses any other with `InvalidPledgeTransition`.

The campaign's stored counters (`raised_amount`, `backer_count`) and a tier's `claimed`
count only pledges in `COUNTED_STATES`; the engine service keeps them in step with
every pledge in the same transaction.
"""

from __future__ import annotations

import enum
from datetime import datetime, timedelta

from sqlalchemy import (
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

from crowdfund.campaigns.models import Campaign, CampaignKind, CampaignState
from crowdfund.extensions import db
from crowdfund.models_base import UTCDateTime, enum_column, utcnow
from crowdfund.money import Money
from crowdfund.payments.models import PaymentMethod  # noqa: F401  (pledges reference its table)

#: Equity and debt commitments can be cancelled until this long before the deadline.
INVESTMENT_CANCELLATION_CUTOFF = timedelta(hours=48)


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
#: Every allowed move of a pledge; anything else is an InvalidPledgeTransition.
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
#: Kinds that are recorded now and charged when the campaign closes successfully.
CHARGE_AT_CLOSE_KINDS = frozenset({CampaignKind.REWARD, CampaignKind.EQUITY, CampaignKind.DEBT})
#: Kinds bound by the investor's 12-month investment limit.
INVESTMENT_KINDS = frozenset({CampaignKind.EQUITY, CampaignKind.DEBT})


class InvalidPledgeTransition(Exception):
    """A pledge move that PLEDGE_TRANSITIONS does not allow."""

    def __init__(self, current: PledgeState, target: PledgeState):
        super().__init__(f"A {current.value} pledge cannot become {target.value}.")
        self.current = current
        self.target = target


class Pledge(db.Model):
    __tablename__ = "pledges"
    __table_args__ = (
        UniqueConstraint("user_id", "idempotency_token"),
        CheckConstraint("amount_amount > 0", name="amount_positive"),
        CheckConstraint("quantity > 0", name="quantity_positive"),
        CheckConstraint("extra_amount >= 0", name="extra_not_negative"),
        CheckConstraint("shares IS NULL OR shares > 0", name="shares_positive"),
        Index("ix_pledges_campaign_state", "campaign_id", "state"),
    )

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
    #: Donation: why the charge failed, in words the backer can act on.
    failure_message: Mapped[str | None] = mapped_column(String(300))
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
    def is_counted(self) -> bool:
        return self.state in COUNTED_STATES

    # --- lifecycle ------------------------------------------------------------------
    def can_transition_to(self, target: PledgeState) -> bool:
        return target in PLEDGE_TRANSITIONS[self.state]

    def transition_to(self, target: PledgeState, now: datetime | None = None) -> None:
        if not self.can_transition_to(target):
            raise InvalidPledgeTransition(self.state, target)
        self.state = target
        if target is PledgeState.CANCELLED:
            self.cancelled_at = now or utcnow()

    @property
    def cancellation_deadline(self) -> datetime | None:
        """The last moment the backer may cancel; None when they never may (donations)."""
        if self.kind is CampaignKind.DONATION:
            return None
        if self.kind in INVESTMENT_KINDS:
            return self.campaign.end_at - INVESTMENT_CANCELLATION_CUTOFF
        return self.campaign.end_at

    def can_cancel_at(self, now: datetime) -> bool:
        deadline = self.cancellation_deadline
        return (
            deadline is not None
            and self.state is PledgeState.ACTIVE
            and self.campaign.state in (CampaignState.LIVE, CampaignState.SUSPENDED)
            and now < deadline
        )

    def can_change_at(self, now: datetime) -> bool:
        """Reward pledges can move tier or amount while the campaign is open."""
        return (
            self.kind is CampaignKind.REWARD
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
