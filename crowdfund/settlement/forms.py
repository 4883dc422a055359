"""Settlement forms: an operator's refund and cancellation, a backer's retry and bank confirmation.

Every form is a FlaskForm, so every post carries the CSRF token. Amounts are typed as
text and parsed into Money in the pledge's currency by the view (`parse_money`).
"""

from __future__ import annotations

import re
import secrets

from flask_wtf import FlaskForm
from wtforms import HiddenField, SelectField, StringField, TextAreaField
from wtforms.validators import DataRequired, Length

from crowdfund.web.converters import parse_id

#: How long an operator's reason may be (it is kept with the refund and the campaign's events).
MAX_REASON_LENGTH = 500
_TOKEN = re.compile(r"[A-Za-z0-9_-]{16,64}")


def new_form_token() -> str:
    """A fresh token for one rendering of a refund form: it makes the refund's key."""
    return secrets.token_urlsafe(24)


class RefundForm(FlaskForm):
    """Refund all of a charged pledge (amount left empty) or part of it."""

    amount = StringField(
        "Amount to refund",
        validators=[Length(max=40)],
        description="Leave empty to refund everything that is left.",
    )
    reason = TextAreaField(
        "Reason",
        validators=[
            DataRequired(message="Write the reason for the refund: it is kept with it."),
            Length(max=MAX_REASON_LENGTH),
        ],
        render_kw={"rows": 3},
    )
    token = HiddenField()

    def ensure_token(self) -> None:
        if not self.valid_token():
            self.token.data = new_form_token()

    def valid_token(self) -> str | None:
        """The form's token when it is one we could have made, else None."""
        value = (self.token.data or "").strip()
        return value if _TOKEN.fullmatch(value) else None


class CancelCampaignForm(FlaskForm):
    """Cancel a campaign and refund everyone: a reason, and the campaign's address typed again."""

    reason = TextAreaField(
        "Reason",
        validators=[
            DataRequired(message="Write the reason: backers and the campaigner are told."),
            Length(max=MAX_REASON_LENGTH),
        ],
        render_kw={"rows": 3},
    )
    confirm_slug = StringField(
        "Type the campaign's address to confirm",
        validators=[DataRequired(message="Type the campaign's address to confirm."), Length(max=200)],
        render_kw={"autocomplete": "off"},
    )


class RetryForm(FlaskForm):
    """A backer picks a card for a failed payment and has it charged at once."""

    payment_method_id = SelectField("Card", coerce=str, validate_choice=False)

    def method_id(self) -> int | None:
        return parse_id(self.payment_method_id.data)


class ConfirmPaymentForm(FlaskForm):
    """The bank's confirmation step (the sandbox plays the bank): only the CSRF token."""
