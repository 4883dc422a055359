"""The loan schedule against published vectors, and the cumulative split of repayments
among lenders (a Hypothesis property test)."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from crowdfund.engine.schedule import annuity_schedule, level_payment
from crowdfund.loans.split import largest_remainder, split_repayment
from crowdfund.money import Money

RATE = Decimal("0.094822")  # 9.4822 % a year


def test_vector_100_at_9_4822_percent_over_6_months_is_17_13_a_month():
    assert level_payment(Money(10_000, "CNY"), RATE, 6) == Money(1_713, "CNY")
    rows = annuity_schedule(Money(10_000, "CNY"), RATE, 6)
    assert [r.payment.amount for r in rows[:-1]] == [1_713] * 5
    assert sum(r.principal.amount for r in rows) == 10_000


def test_vector_10000_on_30_360_pays_1713_06_and_last_1713_09_with_278_39_interest():
    # The vector's figures are those of 9.4822 % a year, a month being 30/360 of a year.
    rows = annuity_schedule(Money(1_000_000, "CNY"), RATE, 6)
    assert [r.payment.amount for r in rows] == [171_306] * 5 + [171_309]
    assert sum(r.interest.amount for r in rows) == 27_839
    assert sum(r.principal.amount for r in rows) == 1_000_000
    assert rows[0].interest.amount == 7_902  # 10,000.00 × 9.4822 % × 30/360 = 79.0183 → 79.02


def test_vector_zero_interest_1000_over_4_is_250_each():
    rows = annuity_schedule(Money(100_000, "CNY"), Decimal(0), 4)
    assert [r.payment.amount for r in rows] == [25_000] * 4


def test_half_even_rounding_and_the_last_instalment_absorbs_the_residual():
    # 0.05 over 2 at 0 %: 2.5 → 2 (half-even), the last takes 3.
    assert [r.payment.amount for r in annuity_schedule(Money(5, "CNY"), Decimal(0), 2)] == [2, 3]


def test_the_split_never_hands_back_a_unit_where_plain_largest_remainder_would():
    # Largest remainder on the running total would take a unit back from the third lender
    # (3, 4, 1) -> (4, 5, 0): the Alabama paradox.
    weights = [37, 49, 5]
    assert largest_remainder(8, weights) == [3, 4, 1] and largest_remainder(9, weights) == [4, 5, 0]
    parts = split_repayment([3, 4, 1], weights, 1)
    assert min(parts) >= 0 and sum(parts) == 1


@pytest.mark.parametrize("bad", [([], [], 1), ([0], [1], -1), ([0, 0], [0, 0], 5), ([0], [1, 2], 1)])
def test_bad_split_input(bad):
    with pytest.raises(ValueError):
        split_repayment(*bad)


@st.composite
def loans_and_repayments(draw):
    weights = draw(st.lists(st.integers(min_value=1, max_value=10**7), min_size=1, max_size=40))
    total = draw(st.integers(min_value=1, max_value=10**7))
    cuts = sorted(draw(st.lists(st.integers(min_value=1, max_value=total), max_size=25, unique=True)))
    points = [c for c in cuts if c < total] + [total]
    repayments = [b - a for a, b in zip([0, *points], points, strict=False)]
    return weights, total, repayments


@settings(max_examples=400, deadline=None)
@given(loans_and_repayments())
def test_each_lenders_running_total_tracks_their_share_of_what_was_repaid(case):
    weights, total, repayments = case
    received = [0] * len(weights)
    repaid = 0
    for amount in repayments:
        parts = split_repayment(received, weights, amount, final_total=total)
        assert sum(parts) == amount
        assert min(parts) >= 0
        received = [r + p for r, p in zip(received, parts, strict=True)]
        repaid += amount
        target = largest_remainder(repaid, weights)
        assert all(abs(r - t) <= 1 for r, t in zip(received, target, strict=True))
    assert repaid == total
    assert received == largest_remainder(total, weights)  # exactly at the end


@settings(max_examples=200, deadline=None)
@given(
    weights=st.lists(st.integers(min_value=1, max_value=1000), min_size=2, max_size=12),
    steps=st.lists(st.integers(min_value=1, max_value=50), min_size=1, max_size=60),
)
def test_unit_steps_without_a_known_end_stay_within_one_unit(weights, steps):
    received = [0] * len(weights)
    for amount in steps:
        parts = split_repayment(received, weights, amount)
        assert sum(parts) == amount and min(parts) >= 0
        received = [r + p for r, p in zip(received, parts, strict=True)]
        target = largest_remainder(sum(received), weights)
        assert all(abs(r - t) <= 1 for r, t in zip(received, target, strict=True))
