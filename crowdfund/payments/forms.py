"""Forms for saved cards and payout accounts.

The sandbox card form carries test card numbers only; the gateway checks them and has
the last word. In Stripe mode the card is typed into Stripe.js and only the SetupIntent
id comes back to us.
"""

from __future__ import annotations

from flask_wtf import FlaskForm
from wtforms import HiddenField, StringField
from wtforms.validators import DataRequired, Length


class SandboxCardForm(FlaskForm):
    number = StringField(
        "Card number",
        validators=[DataRequired(message="Enter the card number."), Length(max=30)],
        render_kw={"autocomplete": "off", "inputmode": "numeric", "placeholder": "4242 4242 4242 4242"},
    )
    expiry = StringField(
        "Expiry (MM/YY)",
        validators=[DataRequired(message="Enter the expiry date."), Length(max=9)],
        render_kw={"autocomplete": "off", "placeholder": "12/30"},
    )
    cvc = StringField(
        "Security code (CVC)",
        validators=[DataRequired(message="Enter the 3 or 4 digit security code."), Length(max=4)],
        render_kw={"autocomplete": "off", "inputmode": "numeric", "placeholder": "123"},
    )
    name = StringField(
        "Name on card",
        validators=[DataRequired(message="Enter the name on the card."), Length(max=120)],
        render_kw={"autocomplete": "off"},
    )


class StripeSetupForm(FlaskForm):
    """Posted by the Stripe.js page once the SetupIntent is confirmed in the browser."""

    setup_intent = HiddenField(validators=[DataRequired(), Length(max=100)])


class ActionForm(FlaskForm):
    """A button that changes something (set default, remove, confirm): CSRF token only."""


class SandboxBankForm(FlaskForm):
    bank_name = StringField(
        "Bank name", validators=[DataRequired(message="Enter the bank's name."), Length(max=120)]
    )
    account_number = StringField(
        "Account number",
        validators=[DataRequired(message="Enter the account number."), Length(max=40)],
        description="Sandbox only: no money is sent. We keep the last four digits.",
        render_kw={"autocomplete": "off", "inputmode": "numeric"},
    )
