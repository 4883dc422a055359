"""Settlement use cases (see `crowdfund.settlement.models` for the states)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING

from crowdfund.money import Money
from crowdfund.settlement.models import ItemState, Settlement, SettlementItem, SettlementState

if TYPE_CHECKING:
    from crowdfund.accounts.models import User

__all__ = [
    "ItemState",
    "Settlement",
    "SettlementItem",
    "SettlementState",
    "SettlementProgress",
    "Statement",
    "campaign_statement",
    "cancel_campaign_with_refunds",
    "confirm_authentication",
    "finalise_due_settlements",
    "open_due_settlements",
    "open_settlement",
    "process_due_items",
    "refund_item",
    "retry_now",
    "settlement_for",
    "settlement_progress",
]


@dataclass(frozen=True)
class SettlementProgress:
    """Counts per item state and the totals, for the CLI and the operator's progress bar."""

    campaign_id: int
    settlement: Settlement | None
    state: SettlementState | None
    counts: dict[ItemState, int] = field(default_factory=dict)
    total: int = 0
    charged: int = 0
    failed: int = 0
    dropped: int = 0
    left: int = 0
    pledged: Money | None = None
    collected: Money | None = None
    platform_fee: Money | None = None
    processing_fee: Money | None = None
    paid_out: Money | None = None
    refunded: Money | None = None

    @property
    def percent_done(self) -> int:
        return 100 if not self.total else round(100 * (self.total - self.left) / self.total)


@dataclass(frozen=True)
class Statement:
    """The campaigner's statement: pledged at close, collected, dropped, fees, paid out, with dates."""

    campaign_id: int
    settlement: Settlement | None
    lines: list[tuple[str, datetime | None, Money]] = field(default_factory=list)

    def csv_rows(self) -> list[list[str]]:
        return [["item", "date", "amount", "currency"]] + [
            [label, when.isoformat() if when else "", str(m.amount), m.currency]
            for label, when, m in self.lines
        ]


def settlement_for(campaign_id: int) -> Settlement | None:
    raise NotImplementedError


def open_settlement(campaign_id: int, *, now: datetime | None = None) -> Settlement:
    raise NotImplementedError


def open_due_settlements(*, now: datetime | None = None) -> int:
    return 0  # being written


def process_due_items(*, now: datetime | None = None, limit: int = 200) -> int:
    return 0  # being written


def retry_now(
    user: User, pledge_id: int, payment_method_id: int | None = None, *, now: datetime | None = None
) -> SettlementItem:
    raise NotImplementedError


def confirm_authentication(user: User, pledge_id: int, *, now: datetime | None = None) -> SettlementItem:
    raise NotImplementedError


def finalise_due_settlements(*, now: datetime | None = None) -> int:
    return 0  # being written


def cancel_campaign_with_refunds(
    operator: User, campaign_id: int, reason: str, *, now: datetime | None = None
) -> Settlement:
    raise NotImplementedError


def refund_item(
    operator: User, pledge_id: int, amount: Money | None, reason: str, *, now: datetime | None = None
) -> SettlementItem:
    raise NotImplementedError


def settlement_progress(campaign_id: int) -> SettlementProgress:
    raise NotImplementedError


def campaign_statement(campaign_id: int) -> Statement:
    raise NotImplementedError
