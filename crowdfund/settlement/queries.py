"""Read-only queries for the settlement pages: lists, pages of items, a backer's items.

Nothing here writes; each function reads what is committed and returns rows or plain
values for a template. The use cases live in `service.py`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from math import ceil

from sqlalchemy import func, select
from sqlalchemy.orm import joinedload, selectinload

from crowdfund.campaigns.models import Campaign
from crowdfund.engine.models import COUNTED_STATES, Pledge, PledgeState
from crowdfund.extensions import db
from crowdfund.money import Money
from crowdfund.settlement.models import ItemState, Settlement, SettlementItem, SettlementState

#: Larger page numbers than this are treated as this (no integer overflow in SQL).
MAX_PAGE = 10**6


@dataclass
class Page:
    """One page of a list: its rows, its number and how many pages there are."""

    rows: list
    page: int
    pages: int
    total: int


@dataclass
class SettlementRow:
    settlement: Settlement
    counts: dict[ItemState, int] = field(default_factory=dict)


def clamp_page(page: int | None) -> int:
    return min(max(page or 1, 1), MAX_PAGE)


def _page(query, count_query, page: int, per_page: int) -> tuple[list, int, int, int]:
    total = db.session.scalar(count_query) or 0
    pages = max(ceil(total / per_page), 1)
    page = min(clamp_page(page), pages)
    rows = list(db.session.scalars(query.limit(per_page).offset((page - 1) * per_page)))
    return rows, page, pages, total


def item_counts(settlement_ids: list[int]) -> dict[int, dict[ItemState, int]]:
    """How many items each settlement has in each state."""
    counts: dict[int, dict[ItemState, int]] = {sid: {} for sid in settlement_ids}
    if not settlement_ids:
        return counts
    rows = db.session.execute(
        select(SettlementItem.settlement_id, SettlementItem.state, func.count(SettlementItem.id))
        .where(SettlementItem.settlement_id.in_(settlement_ids))
        .group_by(SettlementItem.settlement_id, SettlementItem.state)
    ).all()
    for settlement_id, state, count in rows:
        counts[settlement_id][state] = count
    return counts


def settlements_page(page: int, per_page: int, state: SettlementState | None = None) -> Page:
    """Settlements, the most recently opened first, with their item counts."""
    query = select(Settlement).options(joinedload(Settlement.campaign)).order_by(Settlement.id.desc())
    count = select(func.count(Settlement.id))
    if state is not None:
        query = query.where(Settlement.state == state)
        count = count.where(Settlement.state == state)
    rows, page, pages, total = _page(query, count, page, per_page)
    counts = item_counts([s.id for s in rows])
    return Page([SettlementRow(s, counts[s.id]) for s in rows], page, pages, total)


def items_page(settlement_id: int, page: int, per_page: int, state: ItemState | None = None) -> Page:
    """A settlement's items in pledge order, with their pledge and backer."""
    where = [SettlementItem.settlement_id == settlement_id]
    if state is not None:
        where.append(SettlementItem.state == state)
    query = (
        select(SettlementItem)
        .where(*where)
        .options(selectinload(SettlementItem.pledge).joinedload(Pledge.user))
        .order_by(SettlementItem.id)
    )
    rows, page, pages, total = _page(
        query, select(func.count(SettlementItem.id)).where(*where), page, per_page
    )
    return Page(rows, page, pages, total)


def items_for_pledges(pledge_ids: list[int]) -> dict[int, SettlementItem]:
    """The settlement item of each of these pledges that has one (with its settlement)."""
    if not pledge_ids:
        return {}
    items = db.session.scalars(
        select(SettlementItem)
        .where(SettlementItem.pledge_id.in_(pledge_ids))
        .options(joinedload(SettlementItem.settlement))
    )
    return {item.pledge_id: item for item in items}


def dropped_amount(settlement: Settlement) -> Money:
    """What the dropped items had pledged (never charged)."""
    total = db.session.scalar(
        select(func.coalesce(func.sum(SettlementItem.amount_amount), 0)).where(
            SettlementItem.settlement_id == settlement.id, SettlementItem.state == ItemState.DROPPED
        )
    )
    return Money(int(total or 0), settlement.currency)


@dataclass(frozen=True)
class CancelSummary:
    """What cancelling a campaign would touch: charged pledges are refunded, the others released."""

    charged_count: int
    charged: Money
    other_count: int


def cancel_summary(campaign: Campaign) -> CancelSummary:
    """What cancelling `campaign` would refund and release, from its pledges as they are now."""
    rows = db.session.execute(
        select(
            Pledge.state,
            func.count(Pledge.id),
            func.coalesce(func.sum(Pledge.amount_amount - Pledge.refunded_amount), 0),
        )
        .where(Pledge.campaign_id == campaign.id, Pledge.state.in_([*COUNTED_STATES, PledgeState.FAILED]))
        .group_by(Pledge.state)
    ).all()
    charged = [r for r in rows if r[0] is PledgeState.CHARGED]
    return CancelSummary(
        charged_count=sum(r[1] for r in charged),
        charged=Money(sum(int(r[2]) for r in charged), campaign.currency),
        other_count=sum(r[1] for r in rows if r[0] is not PledgeState.CHARGED),
    )
