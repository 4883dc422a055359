"""Money: an integer amount in a currency's minor unit plus its ISO 4217 code.

Every amount in HealthFund is a `Money`. It never holds a float; arithmetic between
different currencies is refused; `allocate` splits an amount by weights so that the
parts always add up to the whole (largest-remainder method).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation


@dataclass(frozen=True)
class Currency:
    code: str
    exponent: int  #: digits after the decimal point (2 for CNY: 1 yuan = 100 fen)
    symbol: str
    name: str


CURRENCIES: dict[str, Currency] = {
    c.code: c
    for c in (
        Currency("CNY", 2, "¥", "Chinese yuan"),
        Currency("USD", 2, "$", "US dollar"),
        Currency("EUR", 2, "€", "Euro"),
        Currency("GBP", 2, "£", "Pound sterling"),
        Currency("HKD", 2, "HK$", "Hong Kong dollar"),
        Currency("JPY", 0, "¥", "Japanese yen"),
    )
}

#: Largest amount accepted anywhere (in minor units): 10^15, far beyond any campaign.
MAX_MINOR = 10**15

_AMOUNT_RE = re.compile(r"^\d{1,3}(,\d{3})+(\.\d+)?$|^\d+(\.\d+)?$|^\.\d+$")


class MoneyError(ValueError):
    """An amount that cannot be used, with a message a user can act on."""


class CurrencyMismatch(MoneyError):
    pass


def get_currency(code: str) -> Currency:
    try:
        return CURRENCIES[code.upper()]
    except (KeyError, AttributeError):
        raise MoneyError(f"Unsupported currency {code!r}; use one of {', '.join(CURRENCIES)}.") from None


@dataclass(frozen=True, order=False)
class Money:
    amount: int  #: minor units (fen, cents)
    currency: str

    def __post_init__(self) -> None:
        if isinstance(self.amount, bool) or not isinstance(self.amount, int):
            raise TypeError(f"Money amount must be an int of minor units, not {type(self.amount).__name__}")
        code = get_currency(self.currency).code
        if code != self.currency:
            object.__setattr__(self, "currency", code)
        if abs(self.amount) > MAX_MINOR:
            raise MoneyError("That amount is too large.")

    # --- construction -------------------------------------------------------------
    @classmethod
    def zero(cls, currency: str) -> Money:
        return cls(0, currency)

    @classmethod
    def parse(cls, text: str | None, currency: str) -> Money:
        """Parse what a person typed ("1,234.50", "50", "¥ 50") into Money.

        Raises MoneyError with a message fit to show next to the field.
        """
        cur = get_currency(currency)
        if text is None:
            raise MoneyError("Enter an amount.")
        cleaned = str(text).strip().replace(" ", "").replace("\u00a0", "")
        for prefix in (cur.symbol, cur.code, cur.code.lower()):
            if cleaned.startswith(prefix):
                cleaned = cleaned[len(prefix) :]
        if cleaned == "":
            raise MoneyError("Enter an amount.")
        if cleaned.startswith("-"):
            raise MoneyError("The amount must be positive.")
        if not _AMOUNT_RE.match(cleaned):
            raise MoneyError(f"{text!r} is not an amount; write it like 1,234.50.")
        try:
            value = Decimal(cleaned.replace(",", ""))
        except InvalidOperation:  # pragma: no cover - the regex already guards this
            raise MoneyError(f"{text!r} is not an amount; write it like 1,234.50.") from None
        scaled = value.scaleb(cur.exponent)
        if scaled != scaled.to_integral_value():
            if cur.exponent == 0:
                raise MoneyError(f"{cur.code} amounts have no decimal places.")
            raise MoneyError(f"{cur.code} amounts have at most {cur.exponent} decimal places.")
        minor = int(scaled)
        if minor > MAX_MINOR:
            raise MoneyError("That amount is too large.")
        return cls(minor, cur.code)

    @classmethod
    def from_major(cls, major: int | str | Decimal, currency: str) -> Money:
        """Money from a whole or decimal number of major units (for code and demo data)."""
        return cls.parse(str(major), currency)

    # --- presentation -------------------------------------------------------------
    @property
    def currency_info(self) -> Currency:
        return CURRENCIES[self.currency]

    def as_decimal(self) -> Decimal:
        return Decimal(self.amount).scaleb(-self.currency_info.exponent)

    def format_plain(self) -> str:
        """'1,234.50' — the number only, as a form field shows it."""
        exp = self.currency_info.exponent
        sign = "-" if self.amount < 0 else ""
        major, minor = divmod(abs(self.amount), 10**exp) if exp else (abs(self.amount), 0)
        text = f"{major:,}"
        if exp:
            text += f".{minor:0{exp}d}"
        return sign + text

    def format(self, with_code: bool = False) -> str:
        """'¥1,234.50' (or 'CNY 1,234.50' with with_code)."""
        plain = self.format_plain()
        sign = ""
        if plain.startswith("-"):
            sign, plain = "-", plain[1:]
        if with_code:
            return f"{sign}{self.currency} {plain}"
        return f"{sign}{self.currency_info.symbol}{plain}"

    def __str__(self) -> str:
        return self.format()

    # --- arithmetic ---------------------------------------------------------------
    def _check(self, other: object) -> Money:
        if not isinstance(other, Money):
            raise TypeError(f"Cannot combine Money with {type(other).__name__}")
        if other.currency != self.currency:
            raise CurrencyMismatch(f"Cannot combine {self.currency} with {other.currency}.")
        return other

    def __add__(self, other: Money) -> Money:
        return Money(self.amount + self._check(other).amount, self.currency)

    def __sub__(self, other: Money) -> Money:
        return Money(self.amount - self._check(other).amount, self.currency)

    def __neg__(self) -> Money:
        return Money(-self.amount, self.currency)

    def __mul__(self, factor: int) -> Money:
        if isinstance(factor, bool) or not isinstance(factor, int):
            raise TypeError("Money can only be multiplied by an int; use allocate for shares.")
        return Money(self.amount * factor, self.currency)

    __rmul__ = __mul__

    def __lt__(self, other: Money) -> bool:
        return self.amount < self._check(other).amount

    def __le__(self, other: Money) -> bool:
        return self.amount <= self._check(other).amount

    def __gt__(self, other: Money) -> bool:
        return self.amount > self._check(other).amount

    def __ge__(self, other: Money) -> bool:
        return self.amount >= self._check(other).amount

    def __bool__(self) -> bool:
        return self.amount != 0

    @property
    def is_positive(self) -> bool:
        return self.amount > 0

    def allocate(self, weights: Sequence[int]) -> list[Money]:
        """Split into len(weights) parts proportional to the integer weights.

        Largest remainder: every part gets floor(amount * w / total), then the units
        left over go one each to the parts with the largest remainders (earlier parts
        win ties). The parts always sum to exactly this amount.
        """
        if not weights:
            raise ValueError("allocate needs at least one weight")
        if any(isinstance(w, bool) or not isinstance(w, int) or w < 0 for w in weights):
            raise ValueError("weights must be non-negative integers")
        total = sum(weights)
        if total == 0:
            raise ValueError("weights must not all be zero")
        sign = -1 if self.amount < 0 else 1
        amount = abs(self.amount)
        shares = [amount * w // total for w in weights]
        remainders = [amount * w % total for w in weights]
        leftover = amount - sum(shares)
        order = sorted(range(len(weights)), key=lambda i: (-remainders[i], i))
        for i in order[:leftover]:
            shares[i] += 1
        return [Money(sign * s, self.currency) for s in shares]

    def percent_bp(self, basis_points: int) -> Money:
        """This amount times basis_points / 10,000, rounded half up to a minor unit."""
        return Money((self.amount * basis_points * 2 + 10_000) // 20_000, self.currency)


def sum_money(items: Iterable[Money], currency: str) -> Money:
    total = Money.zero(currency)
    for item in items:
        total = total + item
    return total
