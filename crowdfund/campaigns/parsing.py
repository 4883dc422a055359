"""Reading what a campaigner typed into a draft: text, money, choices, numbers, dates.

Each parser takes the raw value, the form field's name and an `errors` dict; it returns
the parsed value, or None for a blank value or a problem (the problem's sentence is put
in `errors[field]`), so a whole form is checked in one pass and every problem shown.
"""

from __future__ import annotations

import enum
import re
from datetime import datetime
from decimal import Decimal
from typing import Any, TypeVar

from crowdfund.money import Money, MoneyError

E = TypeVar("E", bound=enum.Enum)

#: Largest goal, target or price: one billion in major units.
MAX_AMOUNT_MINOR = 100_000_000_000
MAX_ANNUAL_RATE_BP = 3_600

_RATE = re.compile(r"\d{1,3}(\.\d{1,2})?")


def blank(value: Any) -> bool:
    return value is None or (isinstance(value, str) and value.strip() == "")


def text(value: Any, field: str, max_length: int, errors: dict[str, str], label: str) -> str | None:
    if blank(value):
        return None
    result = str(value).strip()
    if "\x00" in result:  # PostgreSQL cannot store it, and no one types it
        errors[field] = f"{label} contains a NUL character; remove it."
        return None
    if len(result) > max_length:
        errors[field] = f"{label} can be at most {max_length:,} characters (it has {len(result):,})."
        return None
    return result


def money(value: Any, currency: str, field: str, errors: dict[str, str], label: str) -> Money | None:
    if blank(value):
        return None
    try:
        if isinstance(value, Money):
            if value.currency != currency:
                raise MoneyError(f"{label} must be in {currency}.")
            amount = value
        else:
            amount = Money.parse(str(value), currency)
    except MoneyError as exc:
        errors[field] = f"{label}: {exc}"
        return None
    if not amount.is_positive:
        errors[field] = f"{label} must be more than zero."
        return None
    if amount.amount > MAX_AMOUNT_MINOR:
        errors[field] = f"{label} can be at most {Money(MAX_AMOUNT_MINOR, currency).format()}."
        return None
    return amount


def choice(enum_cls: type[E], value: Any, field: str, errors: dict[str, str], label: str) -> E | None:
    if blank(value):
        return None
    if isinstance(value, enum_cls):
        return value
    try:
        return enum_cls(str(value))
    except ValueError:
        errors[field] = f"Choose {label} from the list."
        return None


def whole_number(
    value: Any, field: str, errors: dict[str, str], label: str, low: int, high: int
) -> int | None:
    if blank(value):
        return None
    if isinstance(value, bool):
        errors[field] = f"{label} must be a whole number."
        return None
    try:
        number = int(str(value).strip()) if not isinstance(value, int) else value
    except ValueError:
        errors[field] = f"{label} must be a whole number."
        return None
    if not low <= number <= high:
        errors[field] = f"{label} must be between {low:,} and {high:,}."
        return None
    return number


def rate_bp(value: Any, field: str, errors: dict[str, str]) -> int | None:
    """An annual percentage ("8.5", "8.50 %") as basis points."""
    if blank(value):
        return None
    typed = str(value).strip().rstrip("%").strip()
    if not _RATE.fullmatch(typed):
        errors[field] = "Write the interest rate as a percentage with at most two decimals, like 8.25."
        return None
    bp = int(Decimal(typed) * 100)
    if bp > MAX_ANNUAL_RATE_BP:
        errors[field] = f"The interest rate must be between 0 and {MAX_ANNUAL_RATE_BP // 100} %."
        return None
    return bp


def aware_datetime(value: Any, field: str, errors: dict[str, str], label: str) -> datetime | None:
    if blank(value):
        return None
    if not isinstance(value, datetime) or value.tzinfo is None:
        errors[field] = f"{label} must be a date and time in UTC."
        return None
    return value
