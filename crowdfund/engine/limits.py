"""The 12-month investment limit for equity and debt (US Reg CF by default).

For a non-accredited investor the limit over any 12 months is the greater of 2,500 USD
or 5 % of the greater of annual income and net worth when either is under 124,000 USD,
else 10 % of the greater of the two; never more than 124,000 USD in total. Every figure
is a setting (`INVESTMENT_LIMIT_*`). Accredited investors have no limit.

The limit is computed in the currency of the investor's profile. Thresholds stated in
US dollars, and commitments made in other currencies, are converted with the fixed rate
table `INVESTMENT_LIMIT_FX` (US dollars per major unit) — a policy table, not market
rates, used for nothing but this limit.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal

from flask import current_app
from sqlalchemy import func, select

from crowdfund.engine.models import COUNTED_STATES, INVESTMENT_KINDS, InvestorProfile, Pledge
from crowdfund.extensions import db
from crowdfund.money import Money, MoneyError, get_currency


def _rate(currency: str) -> Decimal:
    table = current_app.config["INVESTMENT_LIMIT_FX"]
    try:
        return Decimal(str(table[currency]))
    except KeyError:
        raise MoneyError(f"No investment-limit rate is configured for {currency}.") from None


def convert(money: Money, currency: str) -> Money:
    """`money` in `currency` at the fixed policy rates, rounded half up to a minor unit."""
    if money.currency == currency:
        return money
    usd = money.as_decimal() * _rate(money.currency)
    target = (usd / _rate(currency)).scaleb(get_currency(currency).exponent)
    return Money(int(target.quantize(Decimal(1), rounding=ROUND_HALF_UP)), currency)


def _usd(setting: str, currency: str) -> Money:
    return convert(Money.from_major(current_app.config[setting], "USD"), currency)


def investment_limit(profile: InvestorProfile) -> Money | None:
    """The most this investor may commit over 12 months, in the profile's currency; None = no limit."""
    if profile.accredited:
        return None
    currency = profile.currency
    cfg = current_app.config
    floor = _usd("INVESTMENT_LIMIT_FLOOR_USD", currency)
    threshold = _usd("INVESTMENT_LIMIT_THRESHOLD_USD", currency)
    cap = _usd("INVESTMENT_LIMIT_CAP_USD", currency)
    income, net_worth = profile.annual_income, profile.net_worth
    greater = max(income.amount, net_worth.amount)
    if income < threshold or net_worth < threshold:
        limit = max(floor.amount, greater * cfg["INVESTMENT_LIMIT_LOW_BP"] // 10_000)
    else:
        limit = greater * cfg["INVESTMENT_LIMIT_HIGH_BP"] // 10_000
    return Money(min(limit, cap.amount), currency)


def invested_within_window(user_id: int, currency: str, now: datetime) -> Money:
    """Active and charged equity and debt commitments of the last 12 months, in `currency`."""
    since = now - timedelta(days=current_app.config["INVESTMENT_LIMIT_WINDOW_DAYS"])
    rows = db.session.execute(
        select(Pledge.currency, func.coalesce(func.sum(Pledge.amount_amount), 0))
        .where(
            Pledge.user_id == user_id,
            Pledge.kind.in_(INVESTMENT_KINDS),
            Pledge.state.in_(COUNTED_STATES),
            Pledge.created_at > since,
        )
        .group_by(Pledge.currency)
    ).all()
    total = Money.zero(currency)
    for cur, amount in rows:
        total = total + convert(Money(int(amount), cur), currency)
    return total
