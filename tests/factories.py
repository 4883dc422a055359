"""Small factory functions for tests: make_user, make_org, make_campaign, login."""

from __future__ import annotations

import itertools
from datetime import date, timedelta
from functools import lru_cache

from werkzeug.security import generate_password_hash

from crowdfund.accounts.models import Membership, Organisation, OrganisationType, Role, User
from crowdfund.campaigns.models import (
    Campaign,
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

PASSWORD = "correct horse battery"
_seq = itertools.count(1)


@lru_cache(maxsize=1)
def _password_hash() -> str:
    return generate_password_hash(PASSWORD)


def make_user(email: str | None = None, role: Role = Role.BACKER, name: str | None = None) -> User:
    n = next(_seq)
    user = User(
        email=email or f"user{n}@example.org",
        name=name or f"User {n}",
        password_hash=_password_hash(),
        role=role,
        session_token=f"token{n}",
    )
    db.session.add(user)
    db.session.commit()
    return user


def make_org(owner: User | None = None, **fields) -> Organisation:
    owner = owner or make_user()
    org = Organisation(
        type=fields.pop("type", OrganisationType.HEALTH_STARTUP),
        legal_name=fields.pop("legal_name", f"Org {next(_seq)} Ltd"),
        registration_number=fields.pop("registration_number", "91310000MA1234567X"),
        country=fields.pop("country", "CN"),
        description=fields.pop("description", "A health organisation."),
        created_by_id=owner.id,
        **fields,
    )
    db.session.add(org)
    db.session.flush()
    db.session.add(Membership(user_id=owner.id, organisation_id=org.id, role="owner"))
    db.session.commit()
    return org


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
    n = next(_seq)
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


def login(client, user: User) -> None:
    """Log `user` in on the test client without going through the form."""
    with client.session_transaction() as session:
        session["_user_id"] = user.get_id()
        session["_fresh"] = True
