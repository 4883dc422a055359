"""What a campaigner sees about their backers: totals, pledges per day, tier stock, the list.

Anonymous donors are "Anonymous" everywhere here, including the CSV export; CSV cells
that a spreadsheet would read as a formula are prefixed with an apostrophe.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from datetime import date

from sqlalchemy import select
from sqlalchemy.orm import joinedload

from crowdfund.campaigns.models import Campaign
from crowdfund.engine.models import COUNTED_STATES, Pledge, PledgeState
from crowdfund.extensions import db
from crowdfund.money import Money
from crowdfund.web.csv_files import safe_cell

ANONYMOUS = "Anonymous"


@dataclass(frozen=True)
class DayTotal:
    day: date
    count: int
    amount: Money
    #: Share of the busiest day, 0–100, for the bar chart.
    percent: int


@dataclass(frozen=True)
class BackerRow:
    pledge_id: int
    name: str
    email: str
    state: PledgeState
    amount: Money
    tier: str
    quantity: int
    shares: int | None
    shipping_address: str
    message: str
    created_at: object


def campaign_pledges(campaign: Campaign) -> list[Pledge]:
    return list(
        db.session.scalars(
            select(Pledge)
            .where(Pledge.campaign_id == campaign.id)
            .options(joinedload(Pledge.user), joinedload(Pledge.tier))
            .order_by(Pledge.created_at, Pledge.id)
        )
    )


def pledges_per_day(pledges: list[Pledge], currency: str) -> list[DayTotal]:
    """Counted pledges (active or charged, less refunds) by the day they were made."""
    days: dict[date, tuple[int, int]] = {}
    for pledge in pledges:
        if pledge.state not in COUNTED_STATES:
            continue
        day = pledge.created_at.date()
        count, amount = days.get(day, (0, 0))
        days[day] = (count + 1, amount + pledge.counted_amount)
    top = max((amount for _, amount in days.values()), default=0)
    return [
        DayTotal(day, count, Money(amount, currency), (amount * 100 // top) if top else 0)
        for day, (count, amount) in sorted(days.items())
    ]


def backer_rows(pledges: list[Pledge]) -> list[BackerRow]:
    rows = []
    for pledge in pledges:
        anonymous = pledge.anonymous
        rows.append(
            BackerRow(
                pledge_id=pledge.id,
                name=ANONYMOUS if anonymous else pledge.user.name,
                email="" if anonymous else pledge.user.email,
                state=pledge.state,
                amount=pledge.amount,
                tier=pledge.tier.title if pledge.tier else "",
                quantity=pledge.quantity,
                shares=pledge.shares,
                shipping_address=pledge.shipping_address or "",
                message=pledge.message or "",
                created_at=pledge.created_at,
            )
        )
    return rows


def backers_csv(campaign: Campaign) -> str:
    """Every pledge of the campaign as CSV (anonymous donors as "Anonymous")."""
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(
        [
            "pledge",
            "date",
            "name",
            "email",
            "state",
            "amount",
            "currency",
            "tier",
            "quantity",
            "shares",
            "shipping address",
            "message",
        ]
    )
    for row in backer_rows(campaign_pledges(campaign)):
        writer.writerow(
            [
                safe_cell(value)
                for value in (
                    row.pledge_id,
                    row.created_at.strftime("%Y-%m-%d %H:%M"),
                    row.name,
                    row.email,
                    row.state.value,
                    row.amount.format_plain().replace(",", ""),
                    row.amount.currency,
                    row.tier,
                    row.quantity,
                    row.shares if row.shares is not None else "",
                    row.shipping_address,
                    row.message,
                )
            ]
        )
    return out.getvalue()
