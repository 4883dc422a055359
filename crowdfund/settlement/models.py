"""Settlements: what happens to a campaign's money once it has closed.

A `Settlement` is opened once per closed campaign (unique on `campaign_id`) and a
`SettlementItem` once per pledge the campaign counted at close (unique on `pledge_id`).
Both are rows with a state machine (`TRANSITIONS`), so any worker can pick up where a
stopped one left off and the pages can show exactly where each pledge stands.

Settlement (`SETTLEMENT_TRANSITIONS`):

- success: ``collecting`` (items are charged, grace period running) → ``paying_out``
  (every item resolved, the payout delay has passed: fees posted, the rest released and
  paid out) → ``settled``;
- an all-or-nothing campaign that missed its target: ``releasing`` → ``released``
  (nothing is charged; every pledge is released at once);
- a cancelled campaign, or an equity/debt round that fell below its minimum after
  drops: ``refunding`` → ``refunded`` (every charged item is refunded, the rest released).

Item (`ITEM_TRANSITIONS`): ``pending`` (due at `next_attempt_at`) → ``charging`` (attempt
`attempt` recorded with its key ``pledge:{id}:charge:{n}`` before the gateway call) →
``charged`` / ``failed`` (soft decline: waits for `next_attempt_at`) / ``action_required``
(the bank wants the backer: never retried off-session) / ``hard_declined`` (lost, stolen,
do not try again: waits for the backer) / ``unknown`` (the gateway timed out: the same key
is looked up again, never charged anew). After the grace period an unpaid item is
``dropped``; a released campaign's items are ``released``; a refunded item ``refunding``
→ ``refunded``.
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
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from crowdfund.errors import describe
from crowdfund.extensions import db
from crowdfund.models_base import StateMachine, UTCDateTime, enum_column, utcnow
from crowdfund.money import Money


class SettlementState(enum.Enum):
    COLLECTING = "collecting"
    PAYING_OUT = "paying_out"
    SETTLED = "settled"
    RELEASING = "releasing"
    RELEASED = "released"
    REFUNDING = "refunding"
    REFUNDED = "refunded"

    @property
    def label(self) -> str:
        return self.value.replace("_", " ").capitalize()


S = SettlementState
#: Every allowed move of a settlement; anything else is an InvalidTransition.
SETTLEMENT_TRANSITIONS: dict[SettlementState, frozenset[SettlementState]] = {
    S.COLLECTING: frozenset({S.PAYING_OUT, S.REFUNDING}),
    S.PAYING_OUT: frozenset({S.SETTLED}),
    S.SETTLED: frozenset(),
    S.RELEASING: frozenset({S.RELEASED}),
    S.RELEASED: frozenset(),
    S.REFUNDING: frozenset({S.REFUNDED}),
    S.REFUNDED: frozenset(),
}


class ItemState(enum.Enum):
    PENDING = "pending"
    CHARGING = "charging"
    CHARGED = "charged"
    FAILED = "failed"
    ACTION_REQUIRED = "action_required"
    HARD_DECLINED = "hard_declined"
    UNKNOWN = "unknown"
    DROPPED = "dropped"
    RELEASED = "released"
    REFUNDING = "refunding"
    REFUNDED = "refunded"

    @property
    def label(self) -> str:
        return ITEM_LABELS[self]


ITEM_LABELS = {
    ItemState.PENDING: "Waiting to be charged",
    ItemState.CHARGING: "Being charged",
    ItemState.CHARGED: "Charged",
    ItemState.FAILED: "Payment failed",
    ItemState.ACTION_REQUIRED: "Needs your confirmation",
    ItemState.HARD_DECLINED: "Card refused",
    ItemState.UNKNOWN: "Being confirmed",
    ItemState.DROPPED: "Dropped (not charged)",
    ItemState.RELEASED: "Released (not charged)",
    ItemState.REFUNDING: "Being refunded",
    ItemState.REFUNDED: "Refunded",
}

I = ItemState  # noqa: E741
#: Every allowed move of a settlement item; anything else is an InvalidTransition.
ITEM_TRANSITIONS: dict[ItemState, frozenset[ItemState]] = {
    I.PENDING: frozenset({I.CHARGING, I.DROPPED, I.RELEASED}),
    I.CHARGING: frozenset({I.CHARGED, I.FAILED, I.ACTION_REQUIRED, I.HARD_DECLINED, I.UNKNOWN}),
    I.UNKNOWN: frozenset({I.CHARGED, I.FAILED, I.ACTION_REQUIRED, I.HARD_DECLINED}),
    I.FAILED: frozenset({I.CHARGING, I.DROPPED, I.RELEASED}),
    I.ACTION_REQUIRED: frozenset({I.CHARGING, I.DROPPED, I.RELEASED}),
    I.HARD_DECLINED: frozenset({I.CHARGING, I.DROPPED, I.RELEASED}),
    I.CHARGED: frozenset({I.REFUNDING}),
    I.REFUNDING: frozenset({I.REFUNDED}),
    I.DROPPED: frozenset(),
    I.RELEASED: frozenset(),
    I.REFUNDED: frozenset(),
}
#: Items a worker may charge (off-session) once `next_attempt_at` has come.
DUE_STATES = frozenset({I.PENDING, I.FAILED})
#: Items still waiting for an answer or the backer: the settlement cannot be finalised.
OPEN_STATES = frozenset({I.PENDING, I.CHARGING, I.FAILED, I.ACTION_REQUIRED, I.HARD_DECLINED, I.UNKNOWN})
#: Items that end the grace period with nothing collected.
UNPAID_STATES = frozenset({I.PENDING, I.FAILED, I.ACTION_REQUIRED, I.HARD_DECLINED})
#: Items whose money is in escrow (counted in `collected`).
COLLECTED_STATES = frozenset({I.CHARGED})


class Settlement(StateMachine, db.Model):
    """One closed campaign's settlement: its state, its dates and the totals it posted."""

    __tablename__ = "settlements"
    __table_args__ = (
        CheckConstraint("platform_fee_amount >= 0", name="platform_fee_not_negative"),
        CheckConstraint("processing_fee_amount >= 0", name="processing_fee_not_negative"),
        CheckConstraint("paid_out_amount >= 0", name="paid_out_not_negative"),
    )
    TRANSITIONS = SETTLEMENT_TRANSITIONS
    STATE_MODEL_NAME = "settlement"

    id: Mapped[int] = mapped_column(primary_key=True)
    campaign_id: Mapped[int] = mapped_column(ForeignKey("campaigns.id"), unique=True)
    organisation_id: Mapped[int] = mapped_column(ForeignKey("organisations.id"), index=True)
    state: Mapped[SettlementState] = mapped_column(
        enum_column(SettlementState, "settlement_state"), index=True
    )
    currency: Mapped[str] = mapped_column(String(3))
    #: What the counted pledges added up to when the settlement opened.
    pledged_amount: Mapped[int] = mapped_column(BigInteger, default=0)
    item_count: Mapped[int] = mapped_column(Integer, default=0)
    #: Filled in when the settlement is finalised (collected = sum of charged items then).
    collected_amount: Mapped[int] = mapped_column(BigInteger, default=0)
    platform_fee_amount: Mapped[int] = mapped_column(BigInteger, default=0)
    processing_fee_amount: Mapped[int] = mapped_column(BigInteger, default=0)
    released_amount: Mapped[int] = mapped_column(BigInteger, default=0)
    paid_out_amount: Mapped[int] = mapped_column(BigInteger, default=0)
    #: Refunds after the release taken back out of what the organisation was owed (not paid out yet).
    recovered_amount: Mapped[int] = mapped_column(BigInteger, default=0)
    #: Refunds after the payout the organisation owes the platform (its receivable).
    owed_by_organisation_amount: Mapped[int] = mapped_column(BigInteger, default=0)
    #: When the campaign closed (the grace period and payout delay count from it).
    closed_at: Mapped[datetime] = mapped_column(UTCDateTime)
    opened_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    #: After it, unpaid items are dropped.
    grace_ends_at: Mapped[datetime] = mapped_column(UTCDateTime)
    #: Not paid out before it.
    payout_due_at: Mapped[datetime] = mapped_column(UTCDateTime)
    fees_posted_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    paid_out_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    #: The payout's payment operation, once recorded.
    payout_operation_id: Mapped[int | None] = mapped_column(ForeignKey("payment_operations.id"))
    #: Why the settlement waits or what it did, as an `ErrorCode` value (+ params), e.g.
    #: `no_destination` while the organisation has no payout account.
    status_code: Mapped[str | None] = mapped_column(String(60))
    status_params: Mapped[dict | None] = mapped_column(JSON)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)

    campaign = relationship("Campaign")
    items: Mapped[list[SettlementItem]] = relationship(
        back_populates="settlement", order_by="SettlementItem.id", lazy="select", viewonly=True
    )

    def money(self, attr: str) -> Money:
        """`money("collected")` → the `collected_amount` column as Money."""
        return Money(getattr(self, f"{attr}_amount") or 0, self.currency)

    @property
    def collected(self) -> Money:
        return self.money("collected")

    @property
    def pledged(self) -> Money:
        return self.money("pledged")

    @property
    def platform_fee(self) -> Money:
        return self.money("platform_fee")

    @property
    def processing_fee(self) -> Money:
        return self.money("processing_fee")

    @property
    def paid_out(self) -> Money:
        return self.money("paid_out")

    @property
    def status_message(self) -> str | None:
        return describe(self.status_code, self.status_params) if self.status_code else None

    def on_transition(self, target: SettlementState, now: datetime) -> None:
        if self.is_final:
            self.finished_at = now

    def __repr__(self) -> str:
        return f"<Settlement {self.id} campaign {self.campaign_id} {self.state.value}>"


class SettlementItem(StateMachine, db.Model):
    """One pledge in a settlement: where its charge stands, its attempts and its key."""

    __tablename__ = "settlement_items"
    __table_args__ = (
        CheckConstraint("amount_amount > 0", name="item_amount_positive"),
        CheckConstraint("attempt >= 0", name="attempt_not_negative"),
        CheckConstraint("charged_amount >= 0", name="charged_not_negative"),
        CheckConstraint("refunded_amount >= 0", name="item_refunded_not_negative"),
        Index("ix_settlement_items_due", "state", "next_attempt_at"),
        Index("ix_settlement_items_settlement_state", "settlement_id", "state"),
    )
    TRANSITIONS = ITEM_TRANSITIONS
    STATE_MODEL_NAME = "settlement item"

    id: Mapped[int] = mapped_column(primary_key=True)
    settlement_id: Mapped[int] = mapped_column(ForeignKey("settlements.id"))
    campaign_id: Mapped[int] = mapped_column(ForeignKey("campaigns.id"), index=True)
    pledge_id: Mapped[int] = mapped_column(ForeignKey("pledges.id"), unique=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    state: Mapped[ItemState] = mapped_column(enum_column(ItemState, "settlement_item_state"))
    #: What the pledge was worth at close.
    amount_amount: Mapped[int] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(String(3))
    #: What is in escrow for this pledge (0 until charged; less refunds afterwards).
    charged_amount: Mapped[int] = mapped_column(BigInteger, default=0)
    refunded_amount: Mapped[int] = mapped_column(BigInteger, default=0)
    #: Attempt number n of the current (or last) charge; 0 before the first.
    attempt: Mapped[int] = mapped_column(Integer, default=0)
    #: The key of attempt n, `pledge:{pledge_id}:charge:{n}`, stored before the gateway call.
    charge_key: Mapped[str | None] = mapped_column(String(200))
    #: Attempt n's payment operation, once recorded.
    payment_operation_id: Mapped[int | None] = mapped_column(ForeignKey("payment_operations.id"))
    #: True when attempt n is made with the backer present (retry now / bank confirmation).
    on_session: Mapped[bool] = mapped_column(default=False)
    #: When a worker may charge it next (pending and failed items).
    next_attempt_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_attempt_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    #: Wall-clock time until which the worker that claimed the item has it to itself.
    lease_until: Mapped[datetime | None] = mapped_column(UTCDateTime)
    #: Why the last attempt failed, as an `ErrorCode` value (+ params); the gateway's own code.
    failure_code: Mapped[str | None] = mapped_column(String(60))
    failure_params: Mapped[dict | None] = mapped_column(JSON)
    gateway_code: Mapped[str | None] = mapped_column(String(60))
    resolved_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)

    settlement: Mapped[Settlement] = relationship(back_populates="items")
    pledge = relationship("Pledge")

    @property
    def amount(self) -> Money:
        return Money(self.amount_amount, self.currency)

    @property
    def charged(self) -> Money:
        return Money(self.charged_amount or 0, self.currency)

    @property
    def failure_message(self) -> str | None:
        return describe(self.failure_code, self.failure_params) if self.failure_code else None

    @property
    def is_open(self) -> bool:
        return self.state in OPEN_STATES

    def on_transition(self, target: ItemState, now: datetime) -> None:
        self.updated_at = now
        if target not in OPEN_STATES and target is not ItemState.REFUNDING:
            self.resolved_at = now

    def __repr__(self) -> str:
        return f"<SettlementItem {self.id} pledge {self.pledge_id} {self.state.value}>"


def charge_key(pledge_id: int, attempt: int) -> str:
    """The idempotency key of attempt `attempt` to charge pledge `pledge_id`."""
    return f"pledge:{pledge_id}:charge:{attempt}"
