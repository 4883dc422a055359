"""The 12-month investment limit for equity and debt (US Reg CF by default).

For a non-accredited investor the limit over any 12 months is the greater of 2,500 USD
or 5 % of the greater of annual income and net worth when either is under 124,000 USD,
else 10 % of the greater of the two; never more than 124,000 USD in total. Every figure
is a setting (`INVESTMENT_LIMIT_*`). Accredited investors have no limit.

The limit is computed in the currency of the investor's profile. Thresholds stated in
US dollars, and commitments made in other currencies, are converted with the fixed rate
table `INVESTMENT_LIMIT_FX` (US dollars per major unit) — a policy table, not market
rates, used for nothing but this limit.

Only money actually invested, or still committed, uses the limit: active commitments to
a campaign that has not failed or been cancelled, and charged ones less what was
refunded. Released, dropped, refunded, cancelled and failed commitments do not.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal

from flask import current_app
from sqlalchemy import and_, func, or_, select

from crowdfund.campaigns.kinds import KINDS
from crowdfund.campaigns.models import Campaign, CampaignState
from crowdfund.engine.models import InvestorProfile, Pledge, PledgeState
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


#: Campaign states in which an active commitment no longer binds anyone (settlement releases it).
ENDED_WITHOUT_MONEY = (CampaignState.FAILED, CampaignState.CANCELLED)


def invested_within_window(user_id: int, currency: str, now: datetime) -> Money:
    """Equity and debt money invested or still committed in the last 12 months, in `currency`.

    Counts active commitments to campaigns that have not failed or been cancelled, and
    charged ones less what was refunded; nothing else.
    """
    since = now - timedelta(days=current_app.config["INVESTMENT_LIMIT_WINDOW_DAYS"])
    still_committed = and_(Pledge.state == PledgeState.ACTIVE, Campaign.state.not_in(ENDED_WITHOUT_MONEY))
    rows = db.session.execute(
        select(Pledge.currency, func.coalesce(func.sum(Pledge.amount_amount - Pledge.refunded_amount), 0))
        .join(Campaign, Campaign.id == Pledge.campaign_id)
        .where(
            Pledge.user_id == user_id,
            Pledge.kind.in_([kind for kind, rules in KINDS.items() if rules.investment]),
            or_(still_committed, Pledge.state == PledgeState.CHARGED),
            Pledge.created_at > since,
        )
        .group_by(Pledge.currency)
    ).all()
    total = Money.zero(currency)
    for cur, amount in rows:
        total = total + convert(Money(int(amount), cur), currency)
    return total
