"""URL converters shared by every blueprint.

`IdConverter` replaces Flask's `int` converter: ids in URLs are ASCII digits from 0 to
`database.MAX_ID` (every primary key is a PostgreSQL INTEGER), so
`/pledges/99999999999999999999` is a plain 404 instead of an integer overflow in the
database driver, and `/studio/１２` (full-width digits, which Python's `int` would accept)
matches nothing.

The bound is in the converter's regular expression, not only in `to_python`: Werkzeug
checks the method before it converts, so an id that matched the pattern but failed the
conversion turned `PATCH /api/v1/pledges/2147483648` into "405 Method Not Allowed"
(the GET rule of the same path "matched"); now such a path matches no rule at all and
every method gets the same 404.
"""

from __future__ import annotations

import builtins

from werkzeug.routing import IntegerConverter, Map

from crowdfund.database import MAX_ID


def digits_up_to(limit: int) -> str:
    """A regular expression for the decimal numbers 0 … `limit`: `digits_up_to(255)` matches
    "0", "42" and "255" but not "256" or "1000"."""
    text = str(limit)
    branches = [f"[0-9]{{1,{len(text) - 1}}}"] if len(text) > 1 else []
    # Numbers as long as `limit`: share a prefix with it, then a smaller digit, then anything.
    for i, digit in enumerate(text):
        low = "1" if i == 0 and len(text) > 1 else "0"
        if int(digit) > int(low):
            rest = len(text) - i - 1
            tail = f"[0-9]{{{rest}}}" if rest else ""
            branches.append(f"{text[:i]}[{low}-{int(digit) - 1}]{tail}")
    branches.append(text)
    return "(?:" + "|".join(branches) + ")"


class IdConverter(IntegerConverter):
    """`<int:…>` as ASCII digits up to MAX_ID; anything else does not match the rule (404)."""

    regex = digits_up_to(MAX_ID)

    def __init__(
        self,
        map: Map,
        fixed_digits: int = 0,
        min: int | None = None,  # noqa: A002 - werkzeug's argument names
        max: int | None = None,  # noqa: A002
        signed: bool = False,
    ) -> None:
        ceiling = MAX_ID if max is None else builtins.min(max, MAX_ID)
        super().__init__(map, fixed_digits=fixed_digits, min=min, max=ceiling, signed=signed)


def parse_id(text: str | None) -> int | None:
    """An id typed into a form or query string ("42"), or None for anything that is not one.

    The same rule as the URL converter: ASCII digits only (Python's `int` also takes "²"
    as a digit and then fails, and "١٢" as 12) and no larger than `MAX_ID`.
    """
    value = (text or "").strip()
    if not value or len(value) > 10 or not (value.isascii() and value.isdigit()):
        return None
    number = int(value)
    return number if number <= MAX_ID else None
