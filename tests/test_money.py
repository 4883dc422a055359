"""Money: parsing, formatting, arithmetic rules and allocate, with property tests."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from crowdfund.money import CURRENCIES, MAX_MINOR, CurrencyMismatch, Money, MoneyError, sum_money

currencies = st.sampled_from(sorted(CURRENCIES))
amounts = st.integers(min_value=0, max_value=MAX_MINOR)


@pytest.mark.parametrize(
    ("text", "currency", "minor"),
    [
        ("1,234.50", "CNY", 123450),
        ("50", "CNY", 5000),
        ("¥ 50", "CNY", 5000),
        ("$0.99", "USD", 99),
        ("USD 12.3", "USD", 1230),
        (".5", "EUR", 50),
        ("1,000,000", "JPY", 1000000),
        ("  7  ", "CNY", 700),
    ],
)
def test_parse_accepts_what_people_type(text, currency, minor):
    assert Money.parse(text, currency) == Money(minor, currency)


@pytest.mark.parametrize(
    ("text", "currency", "message"),
    [
        ("", "CNY", "Enter an amount"),
        (None, "CNY", "Enter an amount"),
        ("abc", "CNY", "not an amount"),
        ("-5", "CNY", "must be positive"),
        ("1.234", "CNY", "at most 2 decimal places"),
        ("1.5", "JPY", "no decimal places"),
        ("1,23.4", "CNY", "not an amount"),
        ("1e5", "CNY", "not an amount"),
        ("NaN", "USD", "not an amount"),
        ("9" * 30, "CNY", "too large"),
        ("10", "XYZ", "Unsupported currency"),
    ],
)
def test_parse_refuses_bad_input_with_a_clear_message(text, currency, message):
    with pytest.raises(MoneyError, match=message):
        Money.parse(text, currency)


def test_format_per_currency():
    assert Money(123450, "CNY").format() == "¥1,234.50"
    assert Money(99, "USD").format() == "$0.99"
    assert Money(-1050, "EUR").format() == "-€10.50"
    assert Money(1000, "JPY").format() == "¥1,000"
    assert Money(123450, "CNY").format(with_code=True) == "CNY 1,234.50"


def test_arithmetic_refuses_mixed_currencies():
    with pytest.raises(CurrencyMismatch):
        Money(100, "CNY") + Money(100, "USD")
    with pytest.raises(CurrencyMismatch):
        _ = Money(100, "CNY") < Money(100, "USD")


def test_money_refuses_floats_and_bools():
    with pytest.raises(TypeError):
        Money(1.5, "CNY")
    with pytest.raises(TypeError):
        Money(True, "CNY")
    with pytest.raises(TypeError):
        Money(100, "CNY") * 1.5


def test_arithmetic_and_sum():
    a, b = Money(150, "CNY"), Money(50, "CNY")
    assert a + b == Money(200, "CNY")
    assert a - b == Money(100, "CNY")
    assert b * 3 == Money(150, "CNY")
    assert sum_money([a, b, b], "CNY") == Money(250, "CNY")
    assert a > b and b <= a


def test_percent_bp_rounds_half_up():
    assert Money(100, "CNY").percent_bp(500) == Money(5, "CNY")
    assert Money(10, "CNY").percent_bp(500) == Money(1, "CNY")  # 0.5 -> 1
    assert Money(9, "CNY").percent_bp(500) == Money(0, "CNY")  # 0.45 -> 0


def test_allocate_largest_remainder_example():
    parts = Money(100, "CNY").allocate([1, 1, 1])
    assert [p.amount for p in parts] == [34, 33, 33]
    assert [p.amount for p in Money(5, "USD").allocate([3, 7])] == [2, 3]


def test_allocate_refuses_bad_weights():
    for weights in ([], [0, 0], [-1, 2], [1.5]):
        with pytest.raises(ValueError):
            Money(100, "CNY").allocate(weights)


@given(amount=amounts, currency=currencies, weights=st.lists(st.integers(0, 10**6), min_size=1, max_size=30))
def test_allocate_parts_always_sum_to_the_whole(amount, currency, weights):
    if sum(weights) == 0:
        weights = [*weights[:-1], 1]
    parts = Money(amount, currency).allocate(weights)
    assert len(parts) == len(weights)
    assert sum(p.amount for p in parts) == amount
    total = sum(weights)
    for part, w in zip(parts, weights, strict=True):
        exact = amount * w / total
        assert abs(part.amount - exact) < 1 + 1e-9  # each part within one unit of its exact share
        if w == 0:
            assert part.amount == 0


@given(amount=amounts, currency=currencies)
def test_format_then_parse_round_trips(amount, currency):
    m = Money(amount, currency)
    assert Money.parse(m.format_plain(), currency) == m
    assert Money.parse(m.format(), currency) == m
    assert Money.parse(m.format(with_code=True), currency) == m
