"""Equity forms: amend a live round's terms; state the shares issued before the round.

Every form is a FlaskForm, so every post carries the CSRF token. Amounts are typed as
text and parsed by the service in the campaign's currency.
"""

from __future__ import annotations

from flask_wtf import FlaskForm
from wtforms import SelectField, StringField
from wtforms.validators import DataRequired, Length

from crowdfund.campaigns.models import SecurityType


class AmendRoundForm(FlaskForm):
    security_type = SelectField(
        "Type of security", choices=[(s.value, s.label) for s in SecurityType], validate_choice=False
    )
    price_per_share = StringField("Price per share", validators=[Length(max=40)])
    pre_money_valuation = StringField("Pre-money valuation", validators=[Length(max=40)])
    max_target = StringField("Maximum (oversubscription cap)", validators=[Length(max=40)])
    min_investment = StringField("Minimum investment", validators=[Length(max=40)])


class PreRoundSharesForm(FlaskForm):
    shares = StringField(
        "Shares issued before the round",
        validators=[DataRequired(message="Enter a number of shares."), Length(max=20)],
        description="All shares the company had issued before its first round on HealthFund.",
    )
