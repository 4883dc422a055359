"""The 12-month investment limit (Reg CF by default) and the fixed-rate conversion it uses."""

from __future__ import annotations

import pytest

from crowdfund import create_app
from crowdfund.config import TestConfig
from crowdfund.engine.limits import convert, investment_limit
from crowdfund.engine.models import InvestorProfile
from crowdfund.money import Money


@pytest.fixture(scope="module")
def config_app():
    """An app for its configuration only: the limit reads settings, not the database."""

    class Config(TestConfig):
        # Its own dict: the SQLite set-up writes connect_args into the options it is given.
        SQLALCHEMY_ENGINE_OPTIONS: dict = {}

    app = create_app(Config)
    with app.app_context():
        yield app


def usd(major) -> Money:
    return Money.from_major(major, "USD")


def profile(income, net_worth, currency="USD", accredited=False) -> InvestorProfile:
    return InvestorProfile(
        currency=currency,
        annual_income_amount=Money.from_major(income, currency).amount,
        net_worth_amount=Money.from_major(net_worth, currency).amount,
        accredited=accredited,
    )


@pytest.mark.parametrize(
    ("income", "net_worth", "limit"),
    [
        (0, 0, "2500"),  # the floor
        ("50000", "50000", "2500"),  # 5 % = 2,500: floor and percentage meet
        ("50000.20", "0", "2500.01"),  # 5 % of 50,000.20 = 2,500.01 (rounded down)
        ("60000", "10000", "3000"),  # 5 % of the greater
        ("10000", "60000", "3000"),
        ("123999.99", "200000", "10000"),  # income just under the threshold: 5 % of 200,000
        ("200000", "123999.99", "10000"),
        ("124000", "123999.99", "6200"),  # net worth just under: 5 % of 124,000
        ("124000", "124000", "12400"),  # both at the threshold: 10 %
        ("124000.01", "124000", "12400"),  # 10 % of 124,000.01 = 12,400.001, rounded down
        ("500000", "800000", "80000"),  # 10 % of the greater
        ("1240000", "1240000", "124000"),  # 10 % reaches the cap exactly
        ("1240000.10", "1300000", "124000"),  # above the cap: capped
        ("1000000", "50000", "50000"),  # net worth under the threshold: 5 % of 1,000,000
        ("10000000", "0", "124000"),  # 5 % would be 500,000: the overall cap still applies
    ],
)
def test_reg_cf_limit_table(config_app, income, net_worth, limit):
    assert investment_limit(profile(income, net_worth)) == usd(limit)


def test_accredited_investors_have_no_limit(config_app):
    assert investment_limit(profile(0, 0, accredited=True)) is None


@pytest.mark.parametrize(
    ("currency", "floor"),
    [("CNY", Money(1_785_714, "CNY")), ("JPY", Money(373_134, "JPY")), ("EUR", Money(231_481, "EUR"))],
)
def test_limit_in_the_profile_currency_uses_the_policy_rates(config_app, currency, floor):
    # 2,500 USD at 0.14 USD/CNY = 17,857.14 CNY; at 0.0067 USD/JPY = 373,134 JPY; at 1.08 = 2,314.81 EUR.
    assert investment_limit(profile(0, 0, currency=currency)) == floor


def test_thresholds_follow_the_settings(config_app):
    config_app.config.update(INVESTMENT_LIMIT_FLOOR_USD=2_200, INVESTMENT_LIMIT_CAP_USD=107_000)
    try:
        assert investment_limit(profile(0, 0)) == usd(2_200)
        assert investment_limit(profile("5000000", "5000000")) == usd(107_000)
    finally:
        config_app.config.update(INVESTMENT_LIMIT_FLOOR_USD=2_500, INVESTMENT_LIMIT_CAP_USD=124_000)


@pytest.mark.parametrize(
    ("amount", "currency", "expected"),
    [
        (Money(10_000, "CNY"), "USD", Money(1_400, "USD")),
        (Money(1_400, "USD"), "CNY", Money(10_000, "CNY")),
        (Money(1, "CNY"), "USD", Money(0, "USD")),  # 0.0014 USD rounds to zero cents
        (Money(4, "CNY"), "USD", Money(1, "USD")),  # 0.0056 USD rounds half up to one cent
        (Money(100, "JPY"), "JPY", Money(100, "JPY")),
    ],
)
def test_convert(config_app, amount, currency, expected):
    assert convert(amount, currency) == expected
