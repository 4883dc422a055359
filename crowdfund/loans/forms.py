"""Loan forms: the borrower's repayment by card and (sandbox) a bank transfer recorded by hand.

Every form is a FlaskForm (CSRF on every post) with a hidden key made once per rendering:
the repayment's request key, so a second post of the same form is refused, not charged.
"""

from __future__ import annotations

import secrets

from flask_wtf import FlaskForm
from wtforms import HiddenField, SelectField, StringField
from wtforms.validators import DataRequired, Length


def new_request_key() -> str:
    return secrets.token_urlsafe(24)


class RepayForm(FlaskForm):
    amount = StringField("Amount", validators=[DataRequired(message="Enter an amount."), Length(max=40)])
    payment_method_id = SelectField("Card", choices=[], validate_choice=False)
    key = HiddenField()


class BankTransferForm(FlaskForm):
    amount = StringField(
        "Amount received", validators=[DataRequired(message="Enter an amount."), Length(max=40)]
    )
    reference = StringField(
        "Bank reference",
        validators=[DataRequired(message="Enter the transfer's reference."), Length(max=100)],
    )
    key = HiddenField()
