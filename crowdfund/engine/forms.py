"""Pledge forms, one per campaign kind, and the investor profile form.

Amounts are typed as text and parsed into Money in the campaign's currency; a form that
does not parse re-renders with the message next to the field. Every pledge form carries
a hidden per-form token so a double-click or a resubmission creates one pledge.
"""

from __future__ import annotations

import secrets

from flask_wtf import FlaskForm
from wtforms import (
    BooleanField,
    HiddenField,
    RadioField,
    SelectField,
    StringField,
    TextAreaField,
)
from wtforms.validators import InputRequired, Length, NumberRange, Optional

from crowdfund.campaigns.kinds import MAX_ADDRESS_LENGTH, MAX_MESSAGE_LENGTH
from crowdfund.engine.service import PledgeRequest
from crowdfund.money import Money, MoneyError
from crowdfund.web.converters import parse_id
from crowdfund.web.fields import WholeNumberField

NO_REWARD = "none"


def new_form_token() -> str:
    """A fresh token for one rendering of a pledge form."""
    return secrets.token_urlsafe(24)


def parse_money(field, currency: str, *, required: bool) -> Money | None:
    """The field's text as Money in `currency`, or None; appends a message to the field on error."""
    text = (field.data or "").strip()
    if not text:
        if required:
            field.errors.append("Enter an amount.")
        return None
    try:
        return Money.parse(text, currency)
    except MoneyError as exc:
        field.errors.append(str(exc))
        return None


class _PledgeForm(FlaskForm):
    token = HiddenField()
    payment_method_id = SelectField("Card", coerce=str, validate_choice=False)

    def method_id(self) -> int | None:
        return parse_id(self.payment_method_id.data)

    def ensure_token(self) -> None:
        if not (self.token.data or "").strip():
            self.token.data = new_form_token()


class RewardPledgeForm(_PledgeForm):
    tier = RadioField("Reward", validate_choice=False, validators=[InputRequired("Choose a reward.")])
    quantity = WholeNumberField("Quantity", default=1, validators=[Optional(), NumberRange(min=1, max=1000)])
    amount = StringField("Amount", description="For “no reward”: what you want to give.")
    extra = StringField("Extra on top", description="Optional: add something on top of the reward price.")
    shipping_address = TextAreaField(
        "Shipping address", validators=[Optional(), Length(max=MAX_ADDRESS_LENGTH)], render_kw={"rows": 3}
    )

    def to_request(self, currency: str) -> PledgeRequest | None:
        """The request the form describes, or None (with field messages) when it does not parse."""
        tier_value = (self.tier.data or "").strip()
        tier_id = None
        if tier_value != NO_REWARD:
            tier_id = parse_id(tier_value)
            if tier_id is None:
                self.tier.errors.append("Choose a reward.")
                return None
        amount = parse_money(self.amount, currency, required=tier_id is None)
        extra = parse_money(self.extra, currency, required=False) if tier_id is not None else None
        if self.amount.errors or self.extra.errors:
            return None
        return PledgeRequest(
            amount=amount,
            tier_id=tier_id,
            quantity=self.quantity.data or 1,
            extra=extra,
            shipping_address=self.shipping_address.data,
            payment_method_id=self.method_id(),
            idempotency_token=self.token.data,
        )


class EquityPledgeForm(_PledgeForm):
    shares = WholeNumberField(
        "Number of shares", validators=[InputRequired("Enter a whole number of shares."), NumberRange(min=1)]
    )
    risk = BooleanField(
        "I understand that investing in a young company is risky: I could lose all of this money, "
        "and the shares may be hard to sell."
    )

    def to_request(self, currency: str) -> PledgeRequest | None:
        return PledgeRequest(
            shares=self.shares.data,
            risk_acknowledged=bool(self.risk.data),
            payment_method_id=self.method_id(),
            idempotency_token=self.token.data,
        )


class DebtPledgeForm(_PledgeForm):
    amount = StringField("Amount to lend", validators=[InputRequired("Enter an amount.")])
    risk = BooleanField(
        "I understand that the borrower may repay late or not at all, and that I could lose this money."
    )

    def to_request(self, currency: str) -> PledgeRequest | None:
        amount = parse_money(self.amount, currency, required=True)
        if amount is None:
            return None
        return PledgeRequest(
            amount=amount,
            risk_acknowledged=bool(self.risk.data),
            payment_method_id=self.method_id(),
            idempotency_token=self.token.data,
        )


class DonationForm(_PledgeForm):
    amount = StringField("Amount to give", validators=[InputRequired("Enter an amount.")])
    message = TextAreaField(
        "Message", validators=[Optional(), Length(max=MAX_MESSAGE_LENGTH)], render_kw={"rows": 3}
    )
    anonymous = BooleanField("Give anonymously: the campaigner and the public see “Anonymous”.")

    def to_request(self, currency: str) -> PledgeRequest | None:
        amount = parse_money(self.amount, currency, required=True)
        if amount is None:
            return None
        return PledgeRequest(
            amount=amount,
            message=self.message.data,
            anonymous=bool(self.anonymous.data),
            payment_method_id=self.method_id(),
            idempotency_token=self.token.data,
        )


class ChangePledgeForm(RewardPledgeForm):
    """A reward pledge's new tier, quantity, extra or amount."""


class InvestorProfileForm(FlaskForm):
    currency = SelectField("Currency", validate_choice=True)
    annual_income = StringField("Annual income", validators=[InputRequired("Enter your annual income.")])
    net_worth = StringField(
        "Net worth",
        validators=[InputRequired("Enter your net worth.")],
        description="What you own minus what you owe, not counting your main home.",
    )
    accredited = BooleanField("I am an accredited investor")
