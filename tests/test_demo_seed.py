"""`flask demo seed`: idempotent, every kind live twice, real pledges, and the printed log-ins work."""

from __future__ import annotations

from collections import Counter, defaultdict
from datetime import timedelta
from pathlib import Path

import pytest
from PIL import Image
from sqlalchemy import func, select

from crowdfund.accounts.models import Organisation, Role, User, VerificationStatus
from crowdfund.accounts.passwords import verify_password
from crowdfund.campaigns.models import (
    Campaign,
    CampaignEvent,
    CampaignKind,
    CampaignState,
    HealthCategory,
    RewardTier,
    mask_name,
)
from crowdfund.demo.data import (
    BACKERS,
    CAMPAIGNS,
    DEMO_PASSWORD,
    ENDING_SOON,
    EXTRA_CARDS,
    PLEDGES,
    PROFILES,
    USERS,
)
from crowdfund.engine import service as engine
from crowdfund.engine.models import COUNTED_STATES, Pledge, PledgeState
from crowdfund.extensions import db
from crowdfund.ledger import service as ledger
from crowdfund.ledger.models import LedgerTransaction
from crowdfund.models_base import utcnow
from crowdfund.money import Money
from crowdfund.patient_aid.models import Tranche, TrancheState
from crowdfund.payments import service as payments
from crowdfund.payments.models import OperationState, PaymentOperation
from crowdfund.settlement import service as settlement
from tests.factories.demo import demo_app

MAIN_LOGINS = {
    "admin@healthfund.example": Role.ADMIN,
    "operator@healthfund.example": Role.OPERATOR,
    "campaigner@healthfund.example": Role.BACKER,
    "backer@healthfund.example": Role.BACKER,
}
AID_SLUG = "help-xiaoyu-beat-leukaemia"


def _seed(app) -> str:
    result = app.test_cli_runner().invoke(args=["demo", "seed"])
    assert result.exit_code == 0, result.output
    return result.output


def _counts() -> dict[str, int]:
    """Rows in every table of the schema."""
    return {
        table.name: db.session.scalar(select(func.count()).select_from(table))
        for table in db.metadata.sorted_tables
    }


def _state() -> dict:
    """What a second seed must not change: counters, stock, pledge states and the ledger head."""
    return {
        "campaigns": sorted(
            db.session.execute(
                select(Campaign.slug, Campaign.state, Campaign.raised_amount, Campaign.backer_count)
            )
        ),
        "tiers": sorted(db.session.execute(select(RewardTier.id, RewardTier.claimed))),
        "pledges": sorted(db.session.execute(select(Pledge.id, Pledge.state, Pledge.amount_amount))),
        "head": ledger.chain_head(),
    }


@pytest.fixture(scope="module")
def app(_schema, tmp_path_factory):
    """One app for the module, seeded once by `seeded`: a seed goes through every service
    (password hashing, covers, charges), so doing it for each test would take minutes.
    The tests read; the two that seed again check the data comes out unchanged."""
    with demo_app(_schema, tmp_path_factory.mktemp("demo-uploads"), seed=False) as app:
        yield app


@pytest.fixture(scope="module")
def _first_seed(app) -> str:
    return _seed(app)


@pytest.fixture
def seeded(app, _first_seed):
    db.session.rollback()
    db.session.expire_all()
    return _first_seed


def _invoice_files(app) -> int:
    folder = Path(app.config["UPLOAD_DIR"]) / "invoices"
    return len(list(folder.iterdir())) if folder.exists() else 0


def test_seed_twice_gives_the_same_rows(app, seeded):
    first, state = _counts(), _state()
    invoice_files = _invoice_files(app)
    assert first["campaigns"] >= 11 and first["users"] >= 4 + len(BACKERS)
    assert first["pledges"] == len(PLEDGES)
    assert first["ledger_transactions"] > 0 and first["payment_operations"] > 0
    assert first["payment_methods"] == len(BACKERS) + 1 + len(EXTRA_CARDS) + 1  # + the borrower's card
    assert first["investor_profiles"] == len(PROFILES)
    assert "skipped" not in seeded
    db.session.rollback()
    second_output = _seed(app)
    db.session.expire_all()
    assert _counts() == first
    assert _state() == state
    assert "0 users, 0 organisations and 0 campaigns created" in second_output
    assert "0 sandbox cards saved, 0 investor profiles, 0 pledges placed, 0 payout accounts" in second_output
    assert "0 loan repayments made, 0 hospitals registered, 0 tranches requested" in second_output
    assert _invoice_files(app) == invoice_files > 0  # no invoice uploaded again


def test_seed_renames_what_former_seeds_called_the_patient_family(app, seeded):
    org = db.session.scalar(select(Organisation).where(Organisation.legal_name == "Chen family"))
    org.legal_name = "Chen family (for Chen Xiaoyu)"
    db.session.commit()
    before = _counts()
    _seed(app)
    db.session.expire_all()
    assert _counts() == before
    assert org.legal_name == "Chen family"
    assert org.verification_status is VerificationStatus.VERIFIED  # renamed by its owner, verified again


def test_seed_prints_the_log_ins(seeded):
    assert DEMO_PASSWORD in seeded
    for email in MAIN_LOGINS:
        assert email in seeded


def _slug(key: str) -> str:
    spec = next(c for c in CAMPAIGNS if c.key == key)
    return db.session.scalar(select(Campaign.slug).where(Campaign.title == spec.title))


def test_two_open_campaigns_of_each_kind_in_cny_and_usd(seeded):
    now = utcnow()
    live = [c for c in db.session.scalars(select(Campaign)) if c.is_open_at(now)]
    by_kind = Counter(c.kind for c in live)
    assert all(by_kind[kind] >= 2 for kind in CampaignKind), by_kind
    for kind in CampaignKind:
        assert {c.currency for c in live if c.kind is kind} == {"CNY", "USD"}, kind
    ending_soon = _slug(ENDING_SOON)
    for c in live:
        assert c.start_at < now
        if c.slug == ending_soon:  # for the newcomer to close and settle (tests/test_settlement_demo.py)
            assert now + timedelta(days=1) < c.end_at <= now + timedelta(days=2), c.slug
        else:
            assert now + timedelta(days=9) < c.end_at <= now + timedelta(days=46), c.slug


def test_one_campaign_in_review_one_draft_five_settled_one_failed(seeded):
    states = Counter(db.session.scalars(select(Campaign.state)))
    assert states[CampaignState.SUBMITTED] == 1
    assert states[CampaignState.DRAFT] == 1
    settled = Counter(
        db.session.scalars(select(Campaign.kind).where(Campaign.state == CampaignState.SETTLED))
    )
    # one campaign of each kind settled, and the patient-aid appeal paying its hospital in tranches
    assert settled == Counter(CampaignKind) + Counter({CampaignKind.DONATION: 1})
    assert states[CampaignState.FAILED] == 1
    assert states[CampaignState.SUCCEEDED] == states[CampaignState.SETTLING] == 0


def test_counters_are_the_sum_of_real_pledges(seeded):
    pledges = list(db.session.scalars(select(Pledge)))
    campaigns = list(db.session.scalars(select(Campaign)))
    assert sum(c.raised_amount for c in campaigns) > 0
    for c in campaigns:
        counted = [p for p in pledges if p.campaign_id == c.id and p.state in COUNTED_STATES]
        assert c.raised_amount == sum(p.amount_amount for p in counted), c.slug
        assert c.backer_count == len({p.user_id for p in counted}), c.slug
        for tier in c.tiers:
            units = sum(p.quantity for p in counted if p.tier_id == tier.id)
            assert tier.claimed == units, (c.slug, tier.title)
            assert tier.quantity_limit is None or tier.claimed <= tier.quantity_limit
    for c in campaigns:
        if c.state in (CampaignState.DRAFT, CampaignState.SUBMITTED):
            assert c.raised_amount == 0 and c.backer_count == 0, c.slug


def test_pledges_of_every_kind_in_the_states_they_should_be(seeded):
    pledges = list(db.session.scalars(select(Pledge)))
    by_kind = Counter(p.kind for p in pledges)
    assert all(by_kind[kind] >= 3 for kind in CampaignKind), by_kind
    for p in pledges:
        assert p.idempotency_token.startswith("demo:") and p.payment_method_id is not None
        assert p.campaign.start_at <= p.created_at < p.campaign.end_at, p
        assert p.created_at <= utcnow()
        if p.campaign.state is CampaignState.LIVE:  # closed ones: tests/test_settlement_demo.py
            expected = PledgeState.CHARGED if p.kind is CampaignKind.DONATION else PledgeState.ACTIVE
            assert p.state is expected, p
    rewards = [p for p in pledges if p.kind is CampaignKind.REWARD]
    assert any(p.tier_id is None for p in rewards) and any(p.extra_amount > 0 for p in rewards)
    assert all(p.shipping_address for p in rewards if p.tier is not None and p.tier.ships)
    equity = [p for p in pledges if p.kind is CampaignKind.EQUITY]
    assert all(p.shares * p.campaign.equity_terms.price_per_share_amount == p.amount_amount for p in equity)
    assert all(p.risk_acknowledged_at for p in pledges if p.kind in (CampaignKind.EQUITY, CampaignKind.DEBT))
    anonymous = [p for p in pledges if p.kind is CampaignKind.DONATION and p.anonymous]
    assert len(anonymous) == 1 and anonymous[0].message and anonymous[0].campaign.slug == AID_SLUG


def test_a_limited_tier_is_nearly_sold_out(seeded):
    left = [
        t.quantity_limit - t.claimed
        for t in db.session.scalars(select(RewardTier).where(RewardTier.quantity_limit.is_not(None)))
        if t.campaign.state is CampaignState.LIVE
    ]
    assert any(0 < n <= 3 for n in left), left


def test_investors_stay_within_their_limits(seeded):
    now = utcnow()
    for email in PROFILES:
        user = db.session.scalar(select(User).where(User.email == email))
        summary = engine.investment_summary(user, now=now)
        assert summary is not None and summary.used.is_positive, email
        assert summary.limit is None or summary.used <= summary.limit, email
    investors = set(
        db.session.scalars(
            select(User.email)
            .join(Pledge, Pledge.user_id == User.id)
            .where(Pledge.kind.in_([CampaignKind.EQUITY, CampaignKind.DEBT]))
        )
    )
    assert investors <= set(PROFILES)


def test_every_demo_backer_has_a_usable_sandbox_card(seeded):
    for spec in (*BACKERS, next(u for u in USERS if u.email == "backer@healthfund.example")):
        user = db.session.scalar(select(User).where(User.email == spec.email))
        card = payments.default_payment_method(user)
        assert card is not None and card.gateway == "sandbox" and card.last4 == "4242", spec.email


def test_donations_went_through_the_gateway_into_escrow_and_the_ledger_verifies(seeded):
    report = ledger.verify_ledger()
    assert report.ok, report.problems
    assert report.transactions == db.session.scalar(select(func.count()).select_from(LedgerTransaction)) > 0
    charged = defaultdict(int)
    for p in db.session.scalars(select(Pledge).where(Pledge.state == PledgeState.CHARGED)):
        op = db.session.get(PaymentOperation, p.payment_operation_id)
        assert (
            op.state is OperationState.SUCCEEDED and op.amount == p.amount and op.campaign_id == p.campaign_id
        )
        charged[p.campaign_id] += p.amount_amount
    # Two open donation campaigns, the two closed ones, and the reward, equity and debt campaigns
    # charged at their close.
    assert len(charged) == 7
    for c in db.session.scalars(select(Campaign)):
        escrow = ledger.account_balance(ledger.escrow_account(c))
        if c.state is CampaignState.SETTLED and c.donation_terms and c.donation_terms.is_patient_aid:
            # fees taken; the rest stays in escrow but for the tranche paid to the hospital
            s = settlement.settlement_for(c.id)
            paid = sum(
                t.amount_amount
                for t in db.session.scalars(select(Tranche).where(Tranche.campaign_id == c.id))
                if t.state is TrancheState.PAID
            )
            net = charged[c.id] - s.platform_fee_amount - s.processing_fee_amount
            assert escrow.amount == net - paid and 0 < paid < net, c.slug
        elif c.state is CampaignState.SETTLED:  # fees taken, the rest paid out
            assert escrow.amount == 0 < charged[c.id], c.slug
        else:
            assert escrow == Money(charged.get(c.id, 0), c.currency), c.slug
        if c.kind is not CampaignKind.DONATION and c.state is not CampaignState.SETTLED:
            assert not db.session.scalar(
                select(func.count())
                .select_from(LedgerTransaction)
                .where(LedgerTransaction.campaign_id == c.id)
            ), c.slug


def test_ledger_verify_command_passes(app, seeded):
    result = app.test_cli_runner().invoke(args=["ledger", "verify"])
    assert result.exit_code == 0, result.output
    assert "transactions: 0" not in result.output and "OK:" in result.output


def test_money_trail_of_the_patient_aid_campaign_shows_money_in(client, seeded):
    aid = db.session.scalar(select(Campaign).where(Campaign.slug == AID_SLUG))
    trail = ledger.campaign_money_trail(aid)
    assert trail.money_in == aid.raised and trail.money_in.is_positive
    assert trail.held_in_escrow == trail.money_in and trail.total_transactions == aid.backer_count
    page = client.get(f"/campaigns/{AID_SLUG}/money-trail").get_data(as_text=True)
    assert aid.raised.format() in page


def test_the_closed_donation_campaign_raised_its_money_while_it_was_open(seeded):
    closed = db.session.scalar(select(Campaign).where(Campaign.slug == _slug("sightline-retinal-screening")))
    assert closed.kind is CampaignKind.DONATION and closed.raised_amount >= closed.goal_amount
    pledges = list(db.session.scalars(select(Pledge).where(Pledge.campaign_id == closed.id)))
    assert pledges and all(p.state is PledgeState.CHARGED for p in pledges)
    assert all(closed.launched_at <= p.created_at < closed.closed_at == closed.end_at for p in pledges)
    moves = [
        e.to_state
        for e in db.session.scalars(
            select(CampaignEvent).where(CampaignEvent.campaign_id == closed.id).order_by(CampaignEvent.id)
        )
    ]
    assert moves == ["submitted", "approved", "live", "succeeded", "settling", "settled"]


def test_public_pages_do_not_spell_out_the_patients_name(client, seeded):
    aid = db.session.scalar(select(Campaign).where(Campaign.slug == AID_SLUG))
    full = aid.donation_terms.patient_name
    assert " " in full and mask_name(full) != full
    assert full not in aid.organisation.legal_name and full not in aid.donation_terms.beneficiary_name
    for url in (f"/campaigns/{AID_SLUG}", f"/campaigns/{AID_SLUG}/money-trail", "/"):
        page = client.get(url).get_data(as_text=True)
        assert full not in page, url
    assert mask_name(full) in client.get(f"/campaigns/{AID_SLUG}").get_data(as_text=True)


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

    appeals = [c for c in campaigns if c.donation_terms and c.donation_terms.is_patient_aid]
    assert Counter(c.state for c in appeals) == Counter([CampaignState.LIVE, CampaignState.SETTLED])
    for aid in appeals:  # the live appeal, and the family's first one, settled
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
    campaigner = db.session.scalar(select(User).where(User.email == "campaigner@healthfund.example"))
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
    for spec in (*USERS, *BACKERS):
        user = db.session.scalar(select(User).where(User.email == spec.email))
        assert user is not None and user.role is spec.role
        assert user.password_hash != DEMO_PASSWORD
        assert verify_password(user.password_hash, DEMO_PASSWORD)
    assert {email: role for email, role in MAIN_LOGINS.items()} == {
        u.email: u.role for u in db.session.scalars(select(User).where(User.email.in_(MAIN_LOGINS)))
    }


@pytest.mark.parametrize("email", [*MAIN_LOGINS, BACKERS[-1].email])
def test_demo_log_ins_work_through_the_login_form(client, seeded, email):
    response = client.post("/login", data={"email": email, "password": DEMO_PASSWORD})
    assert response.status_code == 302, response.get_data(as_text=True)[:2000]
    assert client.get("/account").status_code == 200


def test_an_approved_campaign_starts_soon_and_the_jobs_put_it_live(app, seeded):
    soon = db.session.scalar(select(Campaign).where(Campaign.state == CampaignState.APPROVED))
    assert soon is not None and soon.approved_at is not None
    assert utcnow() - timedelta(minutes=10) < soon.start_at <= utcnow() + timedelta(seconds=60)
    moment = (soon.start_at + timedelta(seconds=1)).isoformat()
    result = app.test_cli_runner().invoke(
        args=["jobs", "tick", "--now", moment, "--only", "campaigns.launch"]
    )
    assert result.exit_code == 0, result.output
    assert "launched: 1" in result.output
    db.session.expire_all()
    assert soon.state is CampaignState.LIVE and soon.launched_at == soon.start_at + timedelta(seconds=1)
    moves = db.session.scalars(
        select(CampaignEvent.to_state).where(CampaignEvent.campaign_id == soon.id).order_by(CampaignEvent.id)
    )
    assert list(moves) == ["submitted", "approved", "live"]
