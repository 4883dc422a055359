"""Engine: backers with a card, investors with a profile, amounts in CNY."""

from __future__ import annotations

from crowdfund.accounts.models import User
from crowdfund.engine.models import InvestorProfile
from crowdfund.extensions import db
from crowdfund.models_base import utcnow
from crowdfund.money import Money
from crowdfund.payments.models import PaymentMethod
from tests.factories.accounts import make_user, make_users_fast
from tests.factories.payments import add_card


def cny(major: int | str) -> Money:
    return Money.from_major(major, "CNY")


def make_backer(card: bool = True, **kwargs) -> User:
    """A user with (by default) a saved sandbox card."""
    user = make_user(**kwargs)
    if card:
        add_card(user)
    return user


def make_investor(
    user: User | None = None,
    income: int = 100_000_00,
    net_worth: int = 100_000_00,
    currency: str = "USD",
    accredited: bool = False,
) -> User:
    """A backer with a card and an investor profile (amounts in minor units of `currency`)."""
    user = user or make_backer()
    db.session.add(
        InvestorProfile(
            user_id=user.id,
            currency=currency,
            annual_income_amount=income,
            net_worth_amount=net_worth,
            accredited=accredited,
        )
    )
    db.session.commit()
    return user


def make_backers_fast(n: int) -> list[int]:
    """The ids of `n` backers, each with a saved card row (no gateway call): for concurrency tests.

    Charge-at-close pledges only need a usable saved card; nothing talks to the gateway.
    """
    users = make_users_fast(n)
    year = utcnow().year + 5
    db.session.add_all(
        PaymentMethod(
            user_id=u.id,
            gateway="sandbox",
            gateway_id=f"sbpm_bulk_{u.id}",
            brand="visa",
            last4="4242",
            exp_month=12,
            exp_year=year,
            is_default=True,
        )
        for u in users
    )
    db.session.commit()
    return [u.id for u in users]
