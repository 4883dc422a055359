"""Campaigns, the four kinds' terms, and the campaign lifecycle.

A `Campaign` holds what every kind shares; each kind's own terms live in their own
table (`RewardTier`, `EquityTerms`, `DebtTerms`, `DonationTerms`); what differs by kind
is in `crowdfund.campaigns.kinds`. The lifecycle is a table of allowed moves
(`Campaign.TRANSITIONS`); `Campaign.transition_to` refuses any other move with
`InvalidTransition`. `CampaignEvent` records every move: who, from, to, and why — a
person's comment, or for a move the system made an `EventCode` and its parameters.
"""

from __future__ import annotations

import enum
from datetime import date, datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, Boolean, CheckConstraint, Date, ForeignKey, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from crowdfund.extensions import db
from crowdfund.models_base import StateMachine, UTCDateTime, enum_column, utcnow
from crowdfund.money import Money


class CampaignKind(enum.Enum):
    REWARD = "reward"
    EQUITY = "equity"
    DEBT = "debt"
    DONATION = "donation"

    @property
    def label(self) -> str:
        return self.value.capitalize()


class HealthCategory(enum.Enum):
    MEDICAL_DEVICES = "medical_devices"
    PHARMA_BIOTECH = "pharma_biotech"
    DIGITAL_HEALTH = "digital_health"
    CLINICS_CARE = "clinics_care"
    RESEARCH = "research"
    PATIENT_AID = "patient_aid"

    @property
    def label(self) -> str:
        return CATEGORY_LABELS[self]


CATEGORY_LABELS = {
    HealthCategory.MEDICAL_DEVICES: "Medical devices",
    HealthCategory.PHARMA_BIOTECH: "Pharma & biotech",
    HealthCategory.DIGITAL_HEALTH: "Digital health",
    HealthCategory.CLINICS_CARE: "Clinics & care",
    HealthCategory.RESEARCH: "Research",
    HealthCategory.PATIENT_AID: "Patient aid",
}


class FundingModel(enum.Enum):
    ALL_OR_NOTHING = "all_or_nothing"
    KEEP_IT_ALL = "keep_it_all"


class CampaignState(enum.Enum):
    DRAFT = "draft"
    SUBMITTED = "submitted"
    CHANGES_REQUESTED = "changes_requested"
    APPROVED = "approved"
    REJECTED = "rejected"
    LIVE = "live"
    SUSPENDED = "suspended"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    SETTLING = "settling"
    SETTLED = "settled"
    CANCELLED = "cancelled"

    @property
    def label(self) -> str:
        return self.value.replace("_", " ").capitalize()


S = CampaignState
#: Every allowed move of the campaign lifecycle; anything else is an InvalidTransition.
CAMPAIGN_TRANSITIONS: dict[CampaignState, frozenset[CampaignState]] = {
    S.DRAFT: frozenset({S.SUBMITTED}),
    S.SUBMITTED: frozenset({S.APPROVED, S.CHANGES_REQUESTED, S.REJECTED}),
    S.CHANGES_REQUESTED: frozenset({S.SUBMITTED}),
    S.APPROVED: frozenset({S.LIVE, S.CANCELLED}),
    S.REJECTED: frozenset(),
    S.LIVE: frozenset({S.SUCCEEDED, S.FAILED, S.SUSPENDED}),
    S.SUSPENDED: frozenset({S.LIVE, S.CANCELLED}),
    S.SUCCEEDED: frozenset({S.SETTLING}),
    S.FAILED: frozenset({S.SETTLING}),
    S.SETTLING: frozenset({S.SETTLED}),
    S.SETTLED: frozenset(),
    S.CANCELLED: frozenset(),
}
#: States a campaigner may still edit.
EDITABLE_STATES = frozenset({S.DRAFT, S.CHANGES_REQUESTED})
#: States the public can see.
PUBLIC_STATES = frozenset({S.LIVE, S.SUCCEEDED, S.FAILED, S.SETTLING, S.SETTLED})
CLOSED_STATES = frozenset({S.SUCCEEDED, S.FAILED, S.SETTLING, S.SETTLED, S.CANCELLED})


class Campaign(StateMachine, db.Model):
    __tablename__ = "campaigns"
    TRANSITIONS = CAMPAIGN_TRANSITIONS
    STATE_MODEL_NAME = "campaign"
    __table_args__ = (
        CheckConstraint("goal_amount > 0", name="goal_positive"),
        CheckConstraint("raised_amount >= 0", name="raised_not_negative"),
        CheckConstraint("backer_count >= 0", name="backers_not_negative"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    kind: Mapped[CampaignKind] = mapped_column(enum_column(CampaignKind, "campaign_kind"), index=True)
    organisation_id: Mapped[int] = mapped_column(ForeignKey("organisations.id"), index=True)
    created_by_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    title: Mapped[str] = mapped_column(String(120))
    slug: Mapped[str] = mapped_column(String(140), unique=True)
    summary: Mapped[str] = mapped_column(String(300))
    #: Markdown as the campaigner wrote it.
    story: Mapped[str] = mapped_column(Text, default="")
    #: The story rendered to HTML and sanitised; what pages show.
    story_html: Mapped[str] = mapped_column(Text, default="")
    category: Mapped[HealthCategory] = mapped_column(
        enum_column(HealthCategory, "health_category"), index=True
    )
    #: File name under UPLOAD_DIR/covers, or None.
    cover_image: Mapped[str | None] = mapped_column(String(100))
    currency: Mapped[str] = mapped_column(String(3))
    goal_amount: Mapped[int] = mapped_column(BigInteger)
    funding_model: Mapped[FundingModel] = mapped_column(
        enum_column(FundingModel, "funding_model"), default=FundingModel.ALL_OR_NOTHING
    )
    start_at: Mapped[datetime] = mapped_column(UTCDateTime)
    end_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    state: Mapped[CampaignState] = mapped_column(
        enum_column(CampaignState, "campaign_state"), default=CampaignState.DRAFT, index=True
    )
    featured: Mapped[bool] = mapped_column(Boolean, default=False)
    #: Stored counters, updated with each pledge under a row lock; never summed at read time.
    raised_amount: Mapped[int] = mapped_column(BigInteger, default=0)
    backer_count: Mapped[int] = mapped_column(Integer, default=0)
    submitted_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    approved_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    launched_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    closed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)

    organisation = relationship("Organisation")
    created_by = relationship("User")
    tiers: Mapped[list[RewardTier]] = relationship(
        back_populates="campaign", order_by="RewardTier.position", cascade="all, delete-orphan"
    )
    equity_terms: Mapped[EquityTerms | None] = relationship(
        back_populates="campaign", uselist=False, cascade="all, delete-orphan"
    )
    debt_terms: Mapped[DebtTerms | None] = relationship(
        back_populates="campaign", uselist=False, cascade="all, delete-orphan"
    )
    donation_terms: Mapped[DonationTerms | None] = relationship(
        back_populates="campaign", uselist=False, cascade="all, delete-orphan"
    )

    # --- money views ----------------------------------------------------------------
    @property
    def goal(self) -> Money:
        return Money(self.goal_amount, self.currency)

    @property
    def raised(self) -> Money:
        return Money(self.raised_amount, self.currency)

    @property
    def percent_funded(self) -> int:
        return int(self.raised_amount * 100 // self.goal_amount) if self.goal_amount else 0

    # --- lifecycle ------------------------------------------------------------------
    def on_transition(self, target: CampaignState, now: datetime) -> None:
        """Stamp when the campaign was submitted, approved, launched or closed."""
        self.updated_at = now
        if target is CampaignState.SUBMITTED:
            self.submitted_at = now
        elif target is CampaignState.APPROVED:
            self.approved_at = now
        elif target is CampaignState.LIVE and self.launched_at is None:
            self.launched_at = now
        elif target in (CampaignState.SUCCEEDED, CampaignState.FAILED):
            self.closed_at = now

    @property
    def is_editable(self) -> bool:
        return self.state in EDITABLE_STATES

    @property
    def is_public(self) -> bool:
        return self.state in PUBLIC_STATES

    def is_open_at(self, now: datetime) -> bool:
        """Live and inside its dates: pages never show a campaign open past its end."""
        return self.state is CampaignState.LIVE and self.start_at <= now < self.end_at

    def __repr__(self) -> str:
        return f"<Campaign {self.id} {self.kind.value} {self.slug} {self.state.value}>"


class RewardTier(db.Model):
    __tablename__ = "reward_tiers"
    __table_args__ = (
        CheckConstraint("price_amount > 0", name="price_positive"),
        CheckConstraint("quantity_limit IS NULL OR quantity_limit > 0", name="limit_positive"),
        CheckConstraint("claimed >= 0", name="claimed_not_negative"),
        CheckConstraint("quantity_limit IS NULL OR claimed <= quantity_limit", name="not_oversold"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    campaign_id: Mapped[int] = mapped_column(ForeignKey("campaigns.id"), index=True)
    position: Mapped[int] = mapped_column(Integer, default=0)
    title: Mapped[str] = mapped_column(String(120))
    description: Mapped[str] = mapped_column(Text, default="")
    price_amount: Mapped[int] = mapped_column(BigInteger)
    #: None means unlimited.
    quantity_limit: Mapped[int | None] = mapped_column(Integer)
    #: Units held by active pledges; stored counter, kept with each pledge.
    claimed: Mapped[int] = mapped_column(Integer, default=0)
    estimated_delivery: Mapped[date | None] = mapped_column(Date)
    ships: Mapped[bool] = mapped_column(Boolean, default=False)
    #: Where it ships: "Worldwide" or a list of countries, as the campaigner wrote it.
    ships_to: Mapped[str] = mapped_column(String(300), default="")

    campaign: Mapped[Campaign] = relationship(back_populates="tiers")

    @property
    def price(self) -> Money:
        return Money(self.price_amount, self.campaign.currency)

    @property
    def remaining(self) -> int | None:
        return None if self.quantity_limit is None else self.quantity_limit - self.claimed

    @property
    def sold_out(self) -> bool:
        return self.quantity_limit is not None and self.claimed >= self.quantity_limit


class SecurityType(enum.Enum):
    COMMON = "common"
    PREFERRED = "preferred"
    SAFE = "safe"
    CONVERTIBLE_NOTE = "convertible_note"

    @property
    def label(self) -> str:
        return {
            "common": "Common shares",
            "preferred": "Preferred shares",
            "safe": "SAFE",
            "convertible_note": "Convertible note",
        }[self.value]


class EquityTerms(db.Model):
    __tablename__ = "equity_terms"
    __table_args__ = (
        CheckConstraint("price_per_share_amount > 0", name="price_positive"),
        CheckConstraint("min_target_amount > 0 AND max_target_amount >= min_target_amount", name="targets"),
        CheckConstraint("min_investment_amount > 0", name="min_investment_positive"),
    )

    campaign_id: Mapped[int] = mapped_column(ForeignKey("campaigns.id"), primary_key=True)
    security_type: Mapped[SecurityType] = mapped_column(enum_column(SecurityType, "security_type"))
    price_per_share_amount: Mapped[int] = mapped_column(BigInteger)
    pre_money_valuation_amount: Mapped[int] = mapped_column(BigInteger)
    min_target_amount: Mapped[int] = mapped_column(BigInteger)
    #: Oversubscription cap: commitments never exceed it.
    max_target_amount: Mapped[int] = mapped_column(BigInteger)
    min_investment_amount: Mapped[int] = mapped_column(BigInteger)
    #: Set while investors are asked to reconfirm an amendment of the live round (the latest
    #: deadline), cleared once none is left to answer (`crowdfund.equity.amendments`). While
    #: set, the round does not close early and, once closed, its settlement waits.
    reconfirm_until: Mapped[datetime | None] = mapped_column(UTCDateTime)

    campaign: Mapped[Campaign] = relationship(back_populates="equity_terms")

    def money(self, attr: str) -> Money:
        return Money(getattr(self, f"{attr}_amount"), self.campaign.currency)


class DebtTerms(db.Model):
    __tablename__ = "debt_terms"
    __table_args__ = (
        CheckConstraint("annual_rate_bp >= 0 AND annual_rate_bp <= 10000", name="rate_range"),
        CheckConstraint("term_months > 0 AND term_months <= 120", name="term_range"),
        CheckConstraint("min_amount > 0 AND max_amount >= min_amount", name="amounts"),
        CheckConstraint("min_loan_share_amount > 0", name="min_share_positive"),
    )

    campaign_id: Mapped[int] = mapped_column(ForeignKey("campaigns.id"), primary_key=True)
    #: Annual interest rate in basis points (850 = 8.50 %).
    annual_rate_bp: Mapped[int] = mapped_column(Integer)
    term_months: Mapped[int] = mapped_column(Integer)
    repayment_frequency: Mapped[str] = mapped_column(String(20), default="monthly")
    min_amount: Mapped[int] = mapped_column(BigInteger)
    max_amount: Mapped[int] = mapped_column(BigInteger)
    min_loan_share_amount: Mapped[int] = mapped_column(BigInteger)

    campaign: Mapped[Campaign] = relationship(back_populates="debt_terms")

    @property
    def rate_percent(self) -> str:
        return f"{self.annual_rate_bp / 100:.2f}"


class DonationTerms(db.Model):
    __tablename__ = "donation_terms"

    campaign_id: Mapped[int] = mapped_column(ForeignKey("campaigns.id"), primary_key=True)
    beneficiary_name: Mapped[str] = mapped_column(String(200))
    is_patient_aid: Mapped[bool] = mapped_column(Boolean, default=False)
    patient_name: Mapped[str | None] = mapped_column(String(200))
    hospital_name: Mapped[str | None] = mapped_column(String(200))
    #: A short public summary; medical documents themselves are never public.
    diagnosis_summary: Mapped[str | None] = mapped_column(Text)

    campaign: Mapped[Campaign] = relationship(back_populates="donation_terms")

    @property
    def public_patient_name(self) -> str | None:
        """The patient's name as the public sees it: "Li W." or "王**", never in full."""
        return mask_name(self.patient_name) if self.patient_name else None

    @property
    def public_beneficiary_name(self) -> str:
        """The beneficiary as the public sees it. For patient aid the beneficiary is the
        patient, whose name is never shown in full (campaigners often type it here too)."""
        if not self.is_patient_aid:
            return self.beneficiary_name
        if self.patient_name:
            return self.public_patient_name
        return mask_name(self.beneficiary_name) if self.beneficiary_name else ""


def mask_name(name: str) -> str:
    """A name shortened for the public: Li Wei -> Li W., 王小明 -> 王**."""
    parts = name.split()
    if not parts:
        return ""
    if len(parts) > 1:
        return parts[0] + " " + " ".join(f"{p[0]}." for p in parts[1:])
    return name[0] + "*" * (len(name) - 1)


class EventCode(enum.StrEnum):
    """Why the system (not a person) moved a campaign; the sentence is rendered when shown."""

    def __new__(cls, value: str, text: str):
        member = str.__new__(cls, value)
        member._value_ = value
        member.text = text
        return member

    LAUNCHED_ON_START = "launched_on_start", "The start date arrived."
    LAUNCHED_ON_APPROVAL = "launched_on_approval", "Approved after its start date: live at once."
    CLOSED_AT_DEADLINE = "closed_at_deadline", "The deadline passed. Raised {raised} of {goal}."
    CLOSED_EARLY = (
        "closed_early",
        "The maximum was reached after the minimum period; closed early. Raised {raised} of {goal}.",
    )
    SETTLEMENT_OPENED = "settlement_opened", "Closed: the pledges are being collected."
    SETTLED = "settled", "Settled: fees taken and the rest paid out (or refunded)."


class CampaignEvent(db.Model):
    """Audit trail of the campaign lifecycle: who moved it, from what, to what, and why.

    Append-only: rows are never updated or deleted. `comment` is what a person typed
    (a campaigner's note, an operator's decision); a move the system made stores an
    `EventCode` and its `params` instead, and `text` renders the sentence.
    """

    __tablename__ = "campaign_events"

    id: Mapped[int] = mapped_column(primary_key=True)
    campaign_id: Mapped[int] = mapped_column(ForeignKey("campaigns.id"), index=True)
    actor_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    from_state: Mapped[str] = mapped_column(String(32))
    to_state: Mapped[str] = mapped_column(String(32))
    #: What a person wrote with the move; empty for system moves.
    comment: Mapped[str] = mapped_column(Text, default="")
    #: An `EventCode` value for a move the system made; None for a person's move.
    code: Mapped[str | None] = mapped_column(String(64))
    #: The values the code's sentence is built from (amounts in minor units + currency).
    params: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    actor = relationship("User")

    @property
    def text(self) -> str:
        """What to show for this move: the person's comment, or the system's sentence."""
        if not self.code:
            return self.comment
        try:
            template = EventCode(self.code).text
        except ValueError:
            return self.comment
        return template.format(**_event_values(self.params or {}))


def _event_values(params: dict[str, Any]) -> dict[str, Any]:
    """Stored params as values to format: `<name>_minor` + `currency` become Money."""
    values: dict[str, Any] = {}
    currency = params.get("currency")
    for key, value in params.items():
        if key.endswith("_minor") and currency:
            values[key.removesuffix("_minor")] = Money(value, currency)
        else:
            values[key] = value
    return values
