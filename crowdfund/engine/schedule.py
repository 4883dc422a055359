"""A lender's expected repayment schedule: equal monthly payments (an annuity).

The monthly payment is the annuity on the principal at the annual rate / 12 over the
term (a 30/360 day count: every month is a twelfth of a year), rounded half-even to a
minor unit. Each month's interest is the outstanding balance times the monthly rate,
rounded half-even; the rest of the payment repays principal. The last payment repays
whatever principal is left (it absorbs the rounding residual), so the principal parts
always add up to exactly the amount lent — no minor unit is lost or invented.

`repayment_schedule` takes the rate in basis points (campaign terms);
`annuity_schedule` takes any exact annual rate as a Decimal fraction (0.094822 = 9.4822 %).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from decimal import ROUND_HALF_EVEN, Decimal

from crowdfund.money import Money


@dataclass(frozen=True)
class Installment:
    number: int
    due: date | None
    payment: Money
    principal: Money
    interest: Money
    balance_after: Money


def _round(value: Decimal) -> int:
    return int(value.quantize(Decimal(1), rounding=ROUND_HALF_EVEN))


def add_months(start: date, months: int) -> date:
    """The same day `months` later, clamped to the month's last day (31 Jan + 1 = 28/29 Feb)."""
    month_index = start.month - 1 + months
    year, month = start.year + month_index // 12, month_index % 12 + 1
    for day in (start.day, 30, 29, 28):
        try:
            return date(year, month, min(start.day, day))
        except ValueError:
            continue
    raise AssertionError("unreachable")  # pragma: no cover


def _check_terms(annual_rate: Decimal, months: int) -> None:
    if months < 1:
        raise ValueError("the term must be at least one month")
    if not 0 <= annual_rate <= 1:
        raise ValueError("the rate must be between 0 and 100 %")


def level_payment(principal: Money, annual_rate: Decimal, months: int) -> Money:
    """The level monthly payment that repays `principal` at `annual_rate` (a fraction) over `months`."""
    _check_terms(annual_rate, months)
    if annual_rate == 0:
        return Money(_round(Decimal(principal.amount) / months), principal.currency)
    rate = annual_rate / 12
    factor = (1 + rate) ** months
    return Money(_round(Decimal(principal.amount) * rate * factor / (factor - 1)), principal.currency)


def monthly_payment(principal: Money, annual_rate_bp: int, months: int) -> Money:
    """The level monthly payment that repays `principal` with interest over `months`."""
    return level_payment(principal, Decimal(annual_rate_bp) / 10_000, months)


def annuity_schedule(
    principal: Money, annual_rate: Decimal, months: int, first_due: date | None = None
) -> list[Installment]:
    """The installments of `principal` lent at `annual_rate` (a fraction), month by month."""
    if principal.amount <= 0:
        raise ValueError("the principal must be positive")
    _check_terms(annual_rate, months)
    currency = principal.currency
    rate = annual_rate / 12
    level = level_payment(principal, annual_rate, months).amount
    balance = principal.amount
    rows: list[Installment] = []
    for number in range(1, months + 1):
        interest = _round(Decimal(balance) * rate)
        repaid = balance if number == months else min(max(level - interest, 0), balance)
        balance -= repaid
        rows.append(
            Installment(
                number=number,
                due=add_months(first_due, number - 1) if first_due else None,
                payment=Money(repaid + interest, currency),
                principal=Money(repaid, currency),
                interest=Money(interest, currency),
                balance_after=Money(balance, currency),
            )
        )
    return rows


def repayment_schedule(
    principal: Money, annual_rate_bp: int, months: int, first_due: date | None = None
) -> list[Installment]:
    """The installments a lender of `principal` should expect, month by month (rate in basis points)."""
    return annuity_schedule(principal, Decimal(annual_rate_bp) / 10_000, months, first_due)
