"""Factories for the engine tests: a saved card, an investor profile, a request."""

from __future__ import annotations

from crowdfund.accounts.models import User
from crowdfund.engine.models import InvestorProfile
from crowdfund.extensions import db
from crowdfund.models_base import utcnow
from crowdfund.money import Money
from crowdfund.payments.models import PaymentMethod
from crowdfund.payments.service import save_payment_method
from tests.factories import make_user


def add_card(user: User, number: str = "4242424242424242") -> PaymentMethod:
    """Save a sandbox test card for `user` as the card form does; it becomes the default."""
    expiry = f"12/{(utcnow().year + 5) % 100:02d}"
    return save_payment_method(user, {"number": number, "expiry": expiry, "cvc": "123"})


def make_backer(card: bool = True, **kwargs) -> User:
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


def cny(major: int | str) -> Money:
    return Money.from_major(major, "CNY")


def make_backers_fast(n: int) -> list[int]:
    """`n` backers, each with a saved card row (no gateway call): for the concurrency tests.

    Charge-at-close pledges only need a usable saved card; nothing talks to the gateway.
    """
    from tests.factories import _password_hash, _seq

    users = []
    for _ in range(n):
        k = next(_seq)
        users.append(
            User(
                email=f"bulk{k}@example.org",
                name=f"Backer {k}",
                password_hash=_password_hash(),
                session_token=f"t{k}",
            )
        )
    db.session.add_all(users)
    db.session.flush()
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
