"""URL converters shared by every blueprint.

`IdConverter` replaces Flask's `int` converter: ids in URLs are ASCII digits and fit a
PostgreSQL INTEGER (every primary key is one), so `/pledges/99999999999999999999` is a
plain 404 instead of an integer overflow in the database driver, and `/studio/１２`
(full-width digits, which Python's `int` would accept) matches nothing.
"""

from __future__ import annotations

import builtins

from werkzeug.routing import IntegerConverter, Map

#: Largest id a URL can name: a PostgreSQL INTEGER (and every table's primary key).
MAX_ID = 2**31 - 1


class IdConverter(IntegerConverter):
    """`<int:…>` as ASCII digits up to 2**31-1; anything else does not match the rule (404)."""

    regex = r"[0-9]{1,10}"

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
