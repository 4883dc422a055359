"""The lender's repayment schedule: level payments whose principal adds up exactly."""

from __future__ import annotations

from datetime import date

import pytest
from hypothesis import given
from hypothesis import strategies as st

from crowdfund.engine.schedule import add_months, monthly_payment, repayment_schedule
from crowdfund.money import Money


def test_a_known_loan():
    # 10,000.00 at 8 % a year over 12 months: 869.88 a month (standard annuity).
    rows = repayment_schedule(Money(1_000_000, "CNY"), 800, 12, date(2026, 1, 31))
    assert monthly_payment(Money(1_000_000, "CNY"), 800, 12) == Money(86_988, "CNY")
    assert [r.payment.amount for r in rows[:-1]] == [86_988] * 11
    assert rows[0].interest == Money(6_667, "CNY")
    assert sum(r.principal.amount for r in rows) == 1_000_000
    assert rows[-1].balance_after == Money(0, "CNY")
    assert abs(rows[-1].payment.amount - 86_988) <= 12
    assert [r.due for r in rows[:3]] == [date(2026, 1, 31), date(2026, 2, 28), date(2026, 3, 31)]


def test_zero_interest_splits_the_principal():
    rows = repayment_schedule(Money(1_000, "CNY"), 0, 3)
    assert [r.payment.amount for r in rows] == [333, 333, 334]
    assert all(r.interest.amount == 0 for r in rows)


@pytest.mark.parametrize(("principal", "rate", "months"), [(0, 800, 12), (100, -1, 12), (100, 10_001, 12)])
def test_bad_terms(principal, rate, months):
    with pytest.raises(ValueError):
        repayment_schedule(Money(principal, "CNY"), rate, months)


def test_add_months_clamps_to_the_month_end():
    assert add_months(date(2024, 1, 31), 1) == date(2024, 2, 29)
    assert add_months(date(2025, 11, 30), 3) == date(2026, 2, 28)
    assert add_months(date(2025, 12, 15), 1) == date(2026, 1, 15)


@given(
    principal=st.integers(min_value=1, max_value=10**12),
    rate=st.integers(min_value=0, max_value=10_000),
    months=st.integers(min_value=1, max_value=120),
)
def test_schedule_properties(principal, rate, months):
    rows = repayment_schedule(Money(principal, "CNY"), rate, months)
    assert len(rows) == months
    assert sum(r.principal.amount for r in rows) == principal
    assert rows[-1].balance_after.amount == 0
    balance = principal
    for row in rows:
        assert row.principal.amount >= 0 and row.interest.amount >= 0
        assert row.payment.amount == row.principal.amount + row.interest.amount
        balance -= row.principal.amount
        assert row.balance_after.amount == balance >= 0
    level = monthly_payment(Money(principal, "CNY"), rate, months).amount
    # Every payment but the last is the level payment, unless the interest alone is more or
    # the loan is already repaid (tiny loans round the level payment up).
    for row in rows[:-1]:
        assert row.payment.amount == level or row.principal.amount == 0 or row.balance_after.amount == 0
