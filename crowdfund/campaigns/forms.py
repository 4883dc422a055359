"""Forms for drafting a campaign. They check shape (lengths, choices, dates); the service
checks meaning (amounts, date ranges, each kind's terms) and names the field at fault."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from flask_wtf import FlaskForm
from flask_wtf.file import FileField, FileRequired
from wtforms import (
    BooleanField,
    DateField,
    DateTimeLocalField,
    RadioField,
    SelectField,
    StringField,
    TextAreaField,
)
from wtforms.fields.choices import SelectChoice
from wtforms.validators import DataRequired, InputRequired, Length, NumberRange, Optional

from crowdfund.campaigns.kinds import DebtRules, DonationRules, EquityRules
from crowdfund.campaigns.models import Campaign, CampaignKind, FundingModel, HealthCategory, SecurityType
from crowdfund.campaigns.service import (
    CAMPAIGN_CURRENCIES,
    KIND_DESCRIPTIONS,
    MAX_COMMENT_LENGTH,
    MAX_DIAGNOSIS_LENGTH,
    MAX_NAME_LENGTH,
    MAX_SHIPS_TO_LENGTH,
    MAX_STORY_LENGTH,
    MAX_SUMMARY_LENGTH,
    MAX_TERM_MONTHS,
    MAX_TIER_DESCRIPTION_LENGTH,
    MAX_TIER_QUANTITY,
    MAX_TITLE_LENGTH,
)
from crowdfund.money import Money
from crowdfund.web.fields import WholeNumberField

AMOUNT_LENGTH = 30
DATETIME_FORMAT = "%Y-%m-%dT%H:%M"

CATEGORY_CHOICES = [SelectChoice(c.value, c.label) for c in HealthCategory]
CURRENCY_CHOICES = [SelectChoice(c) for c in CAMPAIGN_CURRENCIES]
KIND_CHOICES = [SelectChoice(k.value, k.label) for k in CampaignKind]
FUNDING_MODEL_CHOICES = [
    SelectChoice(
        FundingModel.ALL_OR_NOTHING.value, "All-or-nothing: backers are charged only if the goal is reached"
    ),
    SelectChoice(FundingModel.KEEP_IT_ALL.value, "Keep-it-all: you keep what is pledged even below the goal"),
]
SECURITY_CHOICES = [SelectChoice(s.value, s.label) for s in SecurityType]


class NeededToSubmit(Optional):
    """May be empty while drafting, but the campaign cannot be submitted without it."""

    def __init__(self, strip_whitespace: bool = True):
        super().__init__(strip_whitespace)
        # Not "required" (that would stop a draft being saved), nor "optional" (it is not).
        self.field_flags = {"needed_to_submit": True}


def _amount(
    label: str, description: str = "", required: bool = False, to_submit: bool = False
) -> StringField:
    if required:
        checks = [InputRequired(message=f"Enter {label.lower()}.")]
    else:
        checks = [NeededToSubmit() if to_submit else Optional()]
    return StringField(label, [*checks, Length(max=AMOUNT_LENGTH)], description=description)


class NewCampaignForm(FlaskForm):
    organisation = SelectField("Organisation", coerce=int, validators=[InputRequired()])
    kind = RadioField(
        "Kind of campaign", choices=KIND_CHOICES, validators=[InputRequired(message="Choose a kind.")]
    )
    title = StringField("Title", [DataRequired(message="Enter a title."), Length(max=MAX_TITLE_LENGTH)])
    category = SelectField("Category", [InputRequired()], choices=CATEGORY_CHOICES)
    currency = SelectField("Currency", [InputRequired()], choices=CURRENCY_CHOICES)
    goal = _amount("Goal", "How much you need to raise, like 250,000.", required=True)

    kind_descriptions = {k.value: text for k, text in KIND_DESCRIPTIONS.items()}


class CampaignForm(FlaskForm):
    """The fields every kind shares; `campaign_form_class` adds the kind's terms."""

    title = StringField("Title", [DataRequired(message="Enter a title."), Length(max=MAX_TITLE_LENGTH)])
    summary = TextAreaField(
        "Summary",
        [NeededToSubmit(), Length(max=MAX_SUMMARY_LENGTH)],
        description="One paragraph shown on listings and at the top of the page.",
    )
    story = TextAreaField(
        "Story",
        [NeededToSubmit(), Length(max=MAX_STORY_LENGTH)],
        description="Markdown: **bold**, _italic_, lists, links, tables. Images and scripts are removed.",
    )
    category = SelectField("Category", [InputRequired()], choices=CATEGORY_CHOICES)
    currency = SelectField("Currency", [InputRequired()], choices=CURRENCY_CHOICES)
    goal = _amount("Goal", required=True)
    start_at = DateTimeLocalField(
        "Starts (UTC)", [InputRequired(message="Enter when the campaign starts.")], format=DATETIME_FORMAT
    )
    end_at = DateTimeLocalField(
        "Ends (UTC)",
        [InputRequired(message="Enter when the campaign ends.")],
        format=DATETIME_FORMAT,
        description="Between 1 and 60 days after the start.",
    )

    term_fields: tuple[str, ...] = ()

    def campaign_data(self) -> dict[str, Any]:
        """What the service needs, with dates as UTC datetimes."""
        data: dict[str, Any] = {
            name: getattr(self, name).data
            for name in ("title", "summary", "story", "category", "currency", "goal", *self.term_fields)
        }
        for name in ("start_at", "end_at"):
            value = getattr(self, name).data
            data[name] = value.replace(tzinfo=UTC) if isinstance(value, datetime) else value
        if hasattr(self, "funding_model"):
            data["funding_model"] = self.funding_model.data
        return data


class RewardCampaignForm(CampaignForm):
    funding_model = RadioField(
        "Funding model", choices=FUNDING_MODEL_CHOICES, default=FundingModel.ALL_OR_NOTHING.value
    )


class EquityCampaignForm(CampaignForm):
    term_fields = EquityRules.term_fields
    security_type = SelectField(
        "Security offered", [NeededToSubmit()], choices=[SelectChoice("", "Choose…"), *SECURITY_CHOICES]
    )
    price_per_share = _amount("Price per share", to_submit=True)
    pre_money_valuation = _amount("Pre-money valuation", to_submit=True)
    min_target = _amount(
        "Minimum target",
        "The campaign succeeds only if investors commit at least this; equals the goal.",
        to_submit=True,
    )
    max_target = _amount(
        "Maximum target", "Oversubscription cap: commitments never exceed it.", to_submit=True
    )
    min_investment = _amount("Minimum investment", to_submit=True)


class DebtCampaignForm(CampaignForm):
    term_fields = DebtRules.term_fields
    annual_rate = StringField(
        "Annual interest rate (%)", [NeededToSubmit(), Length(max=10)], description="Like 8.5"
    )
    term_months = WholeNumberField(
        "Term (months)",
        [NeededToSubmit(), NumberRange(min=1, max=MAX_TERM_MONTHS)],
        description="Repaid monthly.",
    )
    min_amount = _amount(
        "Minimum loan amount", "The loan happens only if lenders commit at least this.", to_submit=True
    )
    max_amount = _amount("Maximum loan amount", to_submit=True)
    min_loan_share = _amount("Smallest loan share", "The least one lender can lend.", to_submit=True)


class DonationCampaignForm(CampaignForm):
    term_fields = DonationRules.term_fields
    beneficiary_name = StringField(
        "Beneficiary",
        [NeededToSubmit(), Length(max=MAX_NAME_LENGTH)],
        description="Who the donations are for, as the public sees it.",
    )
    is_patient_aid = BooleanField("This is patient aid (money for one patient's treatment)")
    patient_name = StringField(
        "Patient's full name",
        [Optional(), Length(max=MAX_NAME_LENGTH)],
        description="As on the hospital's documents.",
    )
    hospital_name = StringField(
        "Hospital",
        [Optional(), Length(max=MAX_NAME_LENGTH)],
        description="Payouts go straight to the hospital.",
    )
    diagnosis_summary = TextAreaField(
        "Diagnosis summary",
        [Optional(), Length(max=MAX_DIAGNOSIS_LENGTH)],
        description="A short public summary; no documents.",
    )


FORM_CLASSES: dict[CampaignKind, type[CampaignForm]] = {
    CampaignKind.REWARD: RewardCampaignForm,
    CampaignKind.EQUITY: EquityCampaignForm,
    CampaignKind.DEBT: DebtCampaignForm,
    CampaignKind.DONATION: DonationCampaignForm,
}


def campaign_form(campaign: Campaign, formdata=None) -> CampaignForm:
    """The edit form for the campaign's kind: filled from the request, or from the campaign."""
    cls = FORM_CLASSES[campaign.kind]
    if formdata is not None:
        return cls(formdata=formdata)
    return cls(formdata=None, data=campaign_initial_data(campaign))


def campaign_initial_data(campaign: Campaign) -> dict[str, Any]:
    """The campaign as form values (amounts as typed text, dates as naive UTC)."""
    cur = campaign.currency
    data: dict[str, Any] = {
        "title": campaign.title,
        "summary": campaign.summary,
        "story": campaign.story,
        "category": campaign.category.value,
        "currency": cur,
        "goal": campaign.goal.format_plain(),
        "start_at": campaign.start_at.replace(tzinfo=None),
        "end_at": campaign.end_at.replace(tzinfo=None),
        "funding_model": campaign.funding_model.value,
    }
    if campaign.equity_terms is not None:
        t = campaign.equity_terms
        data["security_type"] = t.security_type.value
        for name in ("price_per_share", "pre_money_valuation", "min_target", "max_target", "min_investment"):
            data[name] = t.money(name).format_plain()
    if campaign.debt_terms is not None:
        t = campaign.debt_terms
        data.update(
            annual_rate=t.rate_percent,
            term_months=t.term_months,
            min_amount=_plain(t.min_amount, cur),
            max_amount=_plain(t.max_amount, cur),
            min_loan_share=_plain(t.min_loan_share_amount, cur),
        )
    if campaign.donation_terms is not None:
        t = campaign.donation_terms
        data.update(
            beneficiary_name=t.beneficiary_name,
            is_patient_aid=t.is_patient_aid,
            patient_name=t.patient_name,
            hospital_name=t.hospital_name,
            diagnosis_summary=t.diagnosis_summary,
        )
    return data


def _plain(amount: int, currency: str) -> str:
    return Money(amount, currency).format_plain()


class TierForm(FlaskForm):
    #: Its own id: the draft page shows this form next to the campaign's, which has a `title` too.
    title = StringField(
        "Reward",
        [DataRequired(message="Give the reward a title."), Length(max=MAX_TITLE_LENGTH)],
        id="tier-title",
    )
    description = TextAreaField("What backers get", [Optional(), Length(max=MAX_TIER_DESCRIPTION_LENGTH)])
    price = _amount("Price", required=True)
    quantity_limit = WholeNumberField(
        "Quantity available",
        [Optional(), NumberRange(min=1, max=MAX_TIER_QUANTITY)],
        description="Leave empty for no limit.",
    )
    estimated_delivery = DateField("Estimated delivery", [Optional()])
    ships = BooleanField("This reward is shipped")
    ships_to = StringField(
        "Ships to", [Optional(), Length(max=MAX_SHIPS_TO_LENGTH)], description="e.g. Worldwide, or China"
    )

    FIELDS = ("title", "description", "price", "quantity_limit", "estimated_delivery", "ships", "ships_to")

    def tier_data(self) -> dict[str, Any]:
        return {name: getattr(self, name).data for name in self.FIELDS}


class CoverForm(FlaskForm):
    #: Its own id: the draft page's cover section is `#image`.
    image = FileField(
        "Cover image",
        [FileRequired(message="Choose an image file to upload.")],
        description="JPEG, PNG or WebP; shown at 16:9, ideally 1600×900 pixels.",
        id="cover-image",
    )


class SubmitForm(FlaskForm):
    note = TextAreaField("Note for the reviewer", [Optional(), Length(max=MAX_COMMENT_LENGTH)])


class ActionForm(FlaskForm):
    """A button that changes something: only the CSRF token."""
