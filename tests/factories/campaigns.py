"""Campaigns: live campaigns built directly, drafts made through the service, form data, images."""

from __future__ import annotations

import io
from datetime import date, datetime, timedelta

from PIL import Image
from sqlalchemy import select

from crowdfund.accounts.models import Organisation, User
from crowdfund.campaigns import service
from crowdfund.campaigns.models import (
    Campaign,
    CampaignEvent,
    CampaignKind,
    CampaignState,
    DebtTerms,
    DonationTerms,
    EquityTerms,
    FundingModel,
    HealthCategory,
    RewardTier,
    SecurityType,
)
from crowdfund.extensions import db
from crowdfund.models_base import utcnow
from tests.factories.accounts import campaigner, make_org, sequence


def make_campaign(
    kind: CampaignKind = CampaignKind.REWARD,
    org: Organisation | None = None,
    state: CampaignState = CampaignState.LIVE,
    currency: str = "CNY",
    goal: int = 1_000_000,
    days: int = 30,
    tiers: list[dict] | None = None,
    **fields,
) -> Campaign:
    """A campaign of `kind` with plausible terms; live and open now unless told otherwise."""
    org = org or make_org()
    n = next(sequence)
    start = fields.pop("start_at", utcnow() - timedelta(days=1))
    campaign = Campaign(
        kind=kind,
        organisation_id=org.id,
        created_by_id=org.created_by_id,
        title=fields.pop("title", f"Campaign {n}"),
        slug=fields.pop("slug", f"campaign-{n}"),
        summary=fields.pop("summary", "A campaign for better health."),
        story=fields.pop("story", "Our story."),
        story_html=fields.pop("story_html", "<p>Our story.</p>"),
        category=fields.pop("category", HealthCategory.MEDICAL_DEVICES),
        currency=currency,
        goal_amount=goal,
        funding_model=FundingModel.KEEP_IT_ALL
        if kind is CampaignKind.DONATION
        else FundingModel.ALL_OR_NOTHING,
        start_at=start,
        end_at=fields.pop("end_at", start + timedelta(days=days)),
        state=state,
        **fields,
    )
    db.session.add(campaign)
    if kind is CampaignKind.REWARD:
        for i, tier in enumerate(
            tiers
            if tiers is not None
            else [{"title": "Early bird", "price_amount": 10_000, "quantity_limit": 100}]
        ):
            campaign.tiers.append(
                RewardTier(
                    position=i, description="", estimated_delivery=date.today() + timedelta(days=90), **tier
                )
            )
    elif kind is CampaignKind.EQUITY:
        campaign.equity_terms = EquityTerms(
            security_type=SecurityType.COMMON,
            price_per_share_amount=1_000,
            pre_money_valuation_amount=500_000_000,
            min_target_amount=goal,
            max_target_amount=goal * 5,
            min_investment_amount=10_000,
        )
    elif kind is CampaignKind.DEBT:
        campaign.debt_terms = DebtTerms(
            annual_rate_bp=800,
            term_months=12,
            min_amount=goal,
            max_amount=goal * 2,
            min_loan_share_amount=10_000,
        )
    else:
        campaign.donation_terms = DonationTerms(beneficiary_name="Li Wei", is_patient_aid=False)
    db.session.commit()
    return campaign


FORM_DATETIME = "%Y-%m-%dT%H:%M"


def image_bytes(size: tuple[int, int] = (800, 600), fmt: str = "PNG", colour=(200, 40, 60), **save) -> bytes:
    """A real image made with Pillow."""
    out = io.BytesIO()
    Image.new("RGB", size, colour).save(out, format=fmt, **save)
    return out.getvalue()


def form_time(value: datetime) -> str:
    return value.strftime(FORM_DATETIME)


def edit_form(kind: CampaignKind, start: datetime | None = None, **overrides) -> dict[str, str]:
    """Everything the edit form needs for a campaign of `kind` that is ready to submit."""
    start = start or utcnow()
    data = {
        "title": f"Portable ECG monitor ({kind.value})",
        "summary": "A pocket ECG that sends readings to your cardiologist.",
        "story": "## Why\n\nHeart disease kills **millions**.\n\n- pocket size\n- 7-day battery",
        "category": "medical_devices",
        "currency": "CNY",
        "start_at": form_time(start),
        "end_at": form_time(start + timedelta(days=30)),
    }
    if kind is CampaignKind.REWARD:
        data.update(goal="50,000", funding_model="all_or_nothing")
    elif kind is CampaignKind.EQUITY:
        data.update(
            goal="1,000,000",
            security_type="common",
            price_per_share="10",
            pre_money_valuation="20,000,000",
            min_target="1,000,000",
            max_target="3,000,000",
            min_investment="1,000",
        )
    elif kind is CampaignKind.DEBT:
        data.update(
            goal="500,000",
            annual_rate="8.5",
            term_months="24",
            min_amount="400,000",
            max_amount="600,000",
            min_loan_share="500",
        )
    else:
        data.update(
            goal="200,000",
            category="patient_aid",
            beneficiary_name="Li Wei",
            is_patient_aid="y",
            patient_name="Li Wei",
            hospital_name="Peking Union Medical College Hospital",
            diagnosis_summary="Acute leukaemia; needs six rounds of chemotherapy.",
        )
    data.update(overrides)
    return data


TIER_FORM = {
    "title": "Early bird monitor",
    "description": "One monitor, shipped in the first batch.",
    "price": "699",
    "quantity_limit": "200",
    "estimated_delivery": "2030-03-01",
    "ships": "y",
    "ships_to": "Worldwide",
}


def service_data(kind: CampaignKind, start: datetime | None = None, **overrides) -> dict:
    """`edit_form` as the service takes it (dates as datetimes)."""
    start = start or utcnow()
    data: dict = edit_form(kind, start, **overrides)
    data["start_at"] = overrides.get("start_at", start)
    data["end_at"] = overrides.get("end_at", start + timedelta(days=30))
    data["is_patient_aid"] = bool(data.get("is_patient_aid"))
    return data


def ready_draft(kind: CampaignKind, user: User, org: Organisation, start: datetime | None = None) -> Campaign:
    """A complete draft made through the service, ready to submit."""
    data = service_data(kind, start)
    campaign = service.create_draft(
        user, org, kind, {k: data[k] for k in ("title", "category", "currency", "goal")}
    )
    service.update_draft(campaign, user, data)
    if kind is CampaignKind.REWARD:
        service.add_tier(
            campaign, user, {"title": "Early bird", "price": "699", "quantity_limit": 100, "ships": False}
        )
    return campaign


def submitted_campaign(kind: CampaignKind = CampaignKind.REWARD, start: datetime | None = None):
    """(campaigner, organisation, campaign) with the campaign waiting for review."""
    user, org = campaigner()
    campaign = ready_draft(kind, user, org, start)
    service.submit_for_review(campaign, user)
    return user, org, campaign


def snapshot() -> dict[str, list[tuple]]:
    """Every campaign-related row, to prove that a refused request changed nothing."""
    db.session.expire_all()
    tables = {
        "campaigns": Campaign,
        "tiers": RewardTier,
        "equity": EquityTerms,
        "debt": DebtTerms,
        "donation": DonationTerms,
        "events": CampaignEvent,
    }
    result = {}
    for name, model in tables.items():
        rows = db.session.execute(select(model.__table__)).all()
        result[name] = sorted(tuple(row) for row in rows)
    db.session.rollback()
    return result
