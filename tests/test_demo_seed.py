"""`flask demo seed`: idempotent, every kind live twice, and the printed log-ins work."""

from __future__ import annotations

from collections import Counter
from datetime import timedelta
from pathlib import Path

import pytest
from PIL import Image
from sqlalchemy import func, select

from crowdfund.accounts.models import Membership, Organisation, Role, User, VerificationStatus
from crowdfund.accounts.passwords import verify_password
from crowdfund.campaigns.models import (
    Campaign,
    CampaignEvent,
    CampaignKind,
    CampaignState,
    DebtTerms,
    DonationTerms,
    EquityTerms,
    HealthCategory,
    RewardTier,
)
from crowdfund.extensions import db
from crowdfund.models_base import utcnow
from crowdfund.web.demo import DEMO_PASSWORD, USERS

MAIN_LOGINS = {
    "admin@healthfund.test": Role.ADMIN,
    "operator@healthfund.test": Role.OPERATOR,
    "campaigner@healthfund.test": Role.BACKER,
    "backer@healthfund.test": Role.BACKER,
}
TABLES = (
    User,
    Organisation,
    Membership,
    Campaign,
    RewardTier,
    EquityTerms,
    DebtTerms,
    DonationTerms,
    CampaignEvent,
)


def _seed(app) -> str:
    result = app.test_cli_runner().invoke(args=["demo", "seed"])
    assert result.exit_code == 0, result.output
    return result.output


def _counts() -> dict[str, int]:
    return {
        table.__tablename__: db.session.scalar(select(func.count()).select_from(table)) for table in TABLES
    }


@pytest.fixture
def seeded(app):
    output = _seed(app)
    db.session.expire_all()
    return output


def test_seed_twice_gives_the_same_rows(app, seeded):
    first = _counts()
    assert first["campaigns"] >= 11 and first["users"] >= 4
    second_output = _seed(app)
    db.session.expire_all()
    assert _counts() == first
    assert "0 users, 0 organisations and 0 campaigns created" in second_output


def test_seed_prints_the_log_ins(seeded):
    assert DEMO_PASSWORD in seeded
    for email in MAIN_LOGINS:
        assert email in seeded


def test_two_open_campaigns_of_each_kind_in_cny_and_usd(seeded):
    now = utcnow()
    live = [c for c in db.session.scalars(select(Campaign)) if c.is_open_at(now)]
    by_kind = Counter(c.kind for c in live)
    assert all(by_kind[kind] >= 2 for kind in CampaignKind), by_kind
    for kind in CampaignKind:
        assert {c.currency for c in live if c.kind is kind} == {"CNY", "USD"}, kind
    for c in live:
        assert c.start_at < now
        assert now + timedelta(days=9) < c.end_at <= now + timedelta(days=46), c.slug


def test_one_campaign_in_review_one_draft_one_closed(seeded):
    states = Counter(db.session.scalars(select(Campaign.state)))
    assert states[CampaignState.SUBMITTED] == 1
    assert states[CampaignState.DRAFT] == 1
    assert states[CampaignState.SUCCEEDED] == 1


def test_counters_are_left_to_real_pledges(seeded):
    assert db.session.scalar(select(func.max(Campaign.raised_amount))) == 0
    assert db.session.scalar(select(func.max(Campaign.backer_count))) == 0
    assert db.session.scalar(select(func.max(RewardTier.claimed))) == 0


def test_terms_add_up(seeded):
    campaigns = list(db.session.scalars(select(Campaign)))
    for c in campaigns:
        if c.kind is CampaignKind.EQUITY:
            t = c.equity_terms
            assert t.min_target_amount == c.goal_amount < t.max_target_amount
            assert t.min_investment_amount % t.price_per_share_amount == 0
        elif c.kind is CampaignKind.DEBT:
            t = c.debt_terms
            assert t.min_amount == c.goal_amount < t.max_amount
            assert 0 < t.annual_rate_bp < 2_000
        elif c.kind is CampaignKind.REWARD:
            assert c.tiers and all(t.price_amount > 0 for t in c.tiers)
        else:
            assert c.donation_terms.beneficiary_name
    reward_tiers = [
        t
        for c in campaigns
        if c.kind is CampaignKind.REWARD and c.state is CampaignState.LIVE
        for t in c.tiers
    ]
    assert any(t.quantity_limit is None for t in reward_tiers)
    assert any(t.quantity_limit is not None and t.quantity_limit <= 5 for t in reward_tiers)

    aid = [c for c in campaigns if c.donation_terms and c.donation_terms.is_patient_aid]
    assert len(aid) == 1
    aid = aid[0]
    assert aid.currency == "CNY" and aid.category is HealthCategory.PATIENT_AID
    assert aid.goal_amount <= 500_000_00
    assert (
        aid.donation_terms.patient_name
        and aid.donation_terms.hospital_name
        and aid.donation_terms.diagnosis_summary
    )


def test_stories_are_rendered_markdown(seeded):
    for c in db.session.scalars(select(Campaign).where(Campaign.state == CampaignState.LIVE)):
        assert "<h2>" in c.story_html and "<li>" in c.story_html, c.slug
        assert "<script" not in c.story_html


def test_organisations_of_every_type_and_a_busy_campaigner(seeded):
    orgs = list(db.session.scalars(select(Organisation)))
    assert {o.type.value for o in orgs} >= {
        "health_startup",
        "clinic",
        "research_group",
        "patient_family",
        "nonprofit",
    }
    statuses = {o.verification_status for o in orgs}
    assert VerificationStatus.VERIFIED in statuses and VerificationStatus.UNVERIFIED in statuses
    campaigner = db.session.scalar(select(User).where(User.email == "campaigner@healthfund.test"))
    assert len(campaigner.memberships) >= 3


def test_live_campaigns_have_their_review_trail(seeded):
    live = db.session.scalars(select(Campaign).where(Campaign.state == CampaignState.LIVE)).all()
    for c in live:
        moves = [
            e.to_state
            for e in db.session.scalars(
                select(CampaignEvent).where(CampaignEvent.campaign_id == c.id).order_by(CampaignEvent.id)
            )
        ]
        assert moves == ["submitted", "approved", "live"], c.slug
        assert c.submitted_at and c.approved_at and c.launched_at


def test_covers_are_real_jpegs_served_by_the_site(app, client, seeded):
    for c in db.session.scalars(select(Campaign)):
        assert c.cover_image, c.slug
        path = Path(app.config["UPLOAD_DIR"]) / "covers" / c.cover_image
        with Image.open(path) as image:
            assert image.format == "JPEG" and image.size == (1600, 900)
    response = client.get(f"/media/covers/{c.cover_image}")
    assert response.status_code == 200 and response.mimetype == "image/jpeg"


def test_seeded_pages_render(client, seeded):
    assert client.get("/").status_code == 200
    for c in db.session.scalars(select(Campaign)):
        expected = 200 if c.is_public else 404
        assert client.get(f"/campaigns/{c.slug}").status_code == expected, c.slug


def test_demo_passwords_are_hashed(seeded):
    for spec in USERS:
        user = db.session.scalar(select(User).where(User.email == spec.email))
        assert user is not None and user.role is spec.role
        assert user.password_hash != DEMO_PASSWORD
        assert verify_password(user.password_hash, DEMO_PASSWORD)
    assert {email: role for email, role in MAIN_LOGINS.items()} == {
        u.email: u.role for u in db.session.scalars(select(User).where(User.email.in_(MAIN_LOGINS)))
    }


@pytest.mark.parametrize("email", list(MAIN_LOGINS))
def test_demo_log_ins_work_through_the_login_form(client, seeded, email):
    response = client.post("/login", data={"email": email, "password": DEMO_PASSWORD})
    assert response.status_code == 302, response.get_data(as_text=True)[:2000]
    assert client.get("/account").status_code == 200
