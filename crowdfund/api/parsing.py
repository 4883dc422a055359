"""Turn API request bodies into service arguments, or a ValidationError naming the field.

Bodies are JSON objects. Unknown fields are refused (a typo must not pass silently),
every value has exactly one accepted type, and money is always an object of integer
minor units and a currency: `{"amount": 30000, "currency": "CNY"}` is ¥300.00. Text
goes through the site's one cleaning rule (`crowdfund.web.text`): a lone surrogate
anywhere in the body is refused with 422, control and invisible characters are removed.
"""

from __future__ import annotations

import json
from typing import Any

from flask import Request

from crowdfund.database import MAX_ID
from crowdfund.errors import ErrorCode, ValidationError
from crowdfund.money import MAX_MINOR, Money, MoneyError
from crowdfund.web.text import SURROGATE_MESSAGE, UnsafeText, clean_text, has_surrogate

MAX_TEXT_LENGTH = 2000
#: Longest Idempotency-Key header accepted.
MAX_IDEMPOTENCY_KEY_LENGTH = 96


class BadJson(ValidationError):
    """The body is not JSON at all."""

    code = ErrorCode.BAD_JSON


def _reject_constant(name: str) -> None:
    raise ValueError(f"{name} is not a number")


def json_object(request: Request) -> dict[str, Any]:
    """The request body as a JSON object (any Content-Type is read as JSON)."""
    raw = request.get_data(cache=True)
    if not raw.strip():
        raise ValidationError("Send a JSON object as the request body.")
    try:
        data = json.loads(raw, parse_constant=_reject_constant)
    except (ValueError, RecursionError):
        raise BadJson("The request body is not valid JSON.") from None
    if not isinstance(data, dict):
        raise ValidationError("The request body must be a JSON object.")
    _refuse_surrogates(data)
    return data


def _refuse_surrogates(data: dict[str, Any]) -> None:
    """422 naming the first field whose name or value holds a lone surrogate (`"\\ud800"`)."""
    for key, value in data.items():
        if has_surrogate(json.dumps({key: value}, ensure_ascii=False)):
            if has_surrogate(key):
                raise ValidationError(SURROGATE_MESSAGE)
            raise ValidationError(f"{key}: {SURROGATE_MESSAGE}", field=key)


def refuse_unknown(data: dict[str, Any], allowed: set[str]) -> None:
    unknown = sorted(set(data) - allowed)
    if unknown:
        raise ValidationError(
            f"Unknown field {unknown[0]!r}; the accepted fields are {', '.join(sorted(allowed))}.",
            field=unknown[0],
        )


def integer(data: dict[str, Any], key: str, *, minimum: int = 1, required: bool = False) -> int | None:
    """A JSON integer (not a string, float or boolean) between `minimum` and MAX_ID (2^31-1)."""
    value = data.get(key)
    if value is None:
        if required:
            raise ValidationError(f"{key} is required.", field=key)
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValidationError(f"{key} must be a whole number.", field=key)
    if value < minimum:
        raise ValidationError(f"{key} must be at least {minimum}.", field=key)
    if value > MAX_ID:
        raise ValidationError(f"{key} is too large.", field=key)
    return value


def boolean(data: dict[str, Any], key: str) -> bool | None:
    value = data.get(key)
    if value is None:
        return None
    if not isinstance(value, bool):
        raise ValidationError(f"{key} must be true or false.", field=key)
    return value


def text(
    data: dict[str, Any], key: str, *, max_length: int = MAX_TEXT_LENGTH, multiline: bool = False
) -> str | None:
    """A JSON string under the cleaning rule (`crowdfund.web.text`), at most `max_length` long."""
    value = data.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        raise ValidationError(f"{key} must be a string.", field=key)
    try:
        value = clean_text(value, multiline=multiline)
    except UnsafeText as exc:
        raise ValidationError(f"{key}: {exc}", field=key) from None
    if len(value) > max_length:
        raise ValidationError(f"{key} is at most {max_length} characters.", field=key)
    return value


def money(data: dict[str, Any], key: str, currency: str, *, allow_zero: bool = False) -> Money | None:
    """A money object `{"amount": <int minor units>, "currency": "<ISO code>"}` in `currency`."""
    value = data.get(key)
    if value is None:
        return None
    example = f'{{"amount": 30000, "currency": "{currency}"}}'
    if not isinstance(value, dict) or set(value) - {"amount", "currency", "display"}:
        raise ValidationError(f"{key} must be an object like {example} (minor units).", field=key)
    amount, code = value.get("amount"), value.get("currency")
    if isinstance(amount, bool) or not isinstance(amount, int):
        raise ValidationError(
            f"{key}.amount must be a whole number of minor units, like {example}.", field=key
        )
    if not isinstance(code, str):
        raise ValidationError(f"{key}.currency is required, like {example}.", field=key)
    if code.upper() != currency:
        raise ValidationError(f"This campaign takes {currency}, not {code[:10]!r}.", field=key)
    if amount < 0 or (amount == 0 and not allow_zero):
        raise ValidationError(f"{key} must be more than zero.", field=key)
    if amount > MAX_MINOR:
        raise ValidationError(f"{key} is too large.", field=key)
    try:
        return Money(amount, currency)
    except MoneyError as exc:
        raise ValidationError(str(exc), field=key) from None


def campaign_ref(data: dict[str, Any]) -> int | str:
    """`campaign` (an id or a slug) or `campaign_id` (an id): which campaign to pledge to."""
    if "campaign" in data and "campaign_id" in data:
        raise ValidationError("Give campaign or campaign_id, not both.", field="campaign")
    if "campaign_id" in data:
        return integer(data, "campaign_id", required=True)  # type: ignore[return-value]
    value = data.get("campaign")
    if value is None:
        raise ValidationError("campaign is required (its id or its slug).", field="campaign")
    if isinstance(value, str):
        slug = value.strip()
        if not slug or len(slug) > 140 or "\x00" in slug:
            raise ValidationError("campaign must be a campaign's id or slug.", field="campaign")
        return slug
    return integer(data, "campaign", required=True)  # type: ignore[return-value]


def idempotency_key(header: str | None) -> str | None:
    """The Idempotency-Key header, checked: printable ASCII, at most 96 characters."""
    if header is None:
        return None
    key = header.strip()
    if not key:
        return None
    if len(key) > MAX_IDEMPOTENCY_KEY_LENGTH or not (key.isascii() and key.isprintable()):
        raise ValidationError(
            f"Idempotency-Key must be printable ASCII of at most {MAX_IDEMPOTENCY_KEY_LENGTH} characters.",
            field="Idempotency-Key",
        )
    return key
