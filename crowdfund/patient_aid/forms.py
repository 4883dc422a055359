"""Patient-aid forms: an operator registers a hospital, a campaigner requests a tranche (its
invoice lines are read as lists, `item_description` / `item_amount`), an operator rejects
a tranche, and anyone logged in reports a problem. Every form is a FlaskForm (CSRF)."""

from __future__ import annotations

import secrets

from flask_wtf import FlaskForm
from flask_wtf.file import FileField
from wtforms import HiddenField, SelectField, StringField, TextAreaField
from wtforms.validators import DataRequired, Length, Optional

#: Invoice lines the request form offers.
ITEM_ROWS = 6


def new_request_key() -> str:
    return secrets.token_urlsafe(24)


class HospitalForm(FlaskForm):
    name = StringField(
        "Hospital name", validators=[DataRequired(message="Enter the hospital's name."), Length(max=200)]
    )
    licence_number = StringField(
        "Licence number",
        validators=[DataRequired(message="Enter its medical institution licence number."), Length(max=60)],
    )
    city = StringField("City", validators=[DataRequired(message="Enter its city."), Length(max=100)])
    country = StringField("Country (two letters)", default="CN", validators=[Length(max=2)])
    bank_name = StringField("Bank (sandbox)", validators=[Optional(), Length(max=120)])
    account_number = StringField("Account number (sandbox)", validators=[Optional(), Length(max=40)])
    account_id = StringField("Stripe account id (acct_…)", validators=[Optional(), Length(max=100)])


class TrancheForm(FlaskForm):
    hospital_id = SelectField("Pay to hospital", choices=[], validate_choice=False)
    invoice_hospital_id = SelectField("Invoice issued by", choices=[], validate_choice=False)
    invoice_number = StringField("Invoice number", validators=[Length(max=60)])
    purpose = StringField("What it pays for (shown publicly)", validators=[Length(max=300)])
    amount = StringField(
        "Amount to pay now (empty: the invoice's total)", validators=[Optional(), Length(max=40)]
    )
    invoice_file = FileField("Invoice (PDF or photo)")
    key = HiddenField()


class RejectForm(FlaskForm):
    reason = TextAreaField(
        "Reason (the campaigner reads it)",
        validators=[DataRequired(message="Give the reason for the rejection."), Length(max=1000)],
    )


class ReportForm(FlaskForm):
    reason = TextAreaField(
        "What is wrong?",
        validators=[DataRequired(message="Say what the problem is."), Length(max=1000)],
    )


class ConfirmForm(FlaskForm):
    """A button that only needs its CSRF token (approve, verify, clear, end the appeal)."""
