"""Pledges from many threads at once: stock, maximums, limits and counters stay exact.

Each worker thread opens its own app context, so it has its own session and connection;
all of them wait on one Event and start together.
"""

from __future__ import annotations

import threading
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import pytest
from sqlalchemy import func, select

from crowdfund.accounts.models import User
from crowdfund.campaigns.models import Campaign, CampaignEvent, CampaignKind, RewardTier
from crowdfund.engine.models import InvestorProfile, Pledge, PledgeState
from crowdfund.engine.service import PledgeRequest, place_pledge
from crowdfund.errors import DomainError
from crowdfund.extensions import db
from crowdfund.jobs import run_jobs
from crowdfund.models_base import utcnow
from tests.factories import make_campaign
from tests.factories.engine import cny, make_backers_fast

WORKERS = 30


@pytest.fixture
def app_config(app_config):
    class Config(app_config):
        # Enough connections for the worker threads, far fewer than the number of pledges.
        SQLALCHEMY_ENGINE_OPTIONS = {"pool_size": WORKERS + 2, "max_overflow": 4, "pool_timeout": 60}

    return Config


def run_together(app, jobs, workers: int = WORKERS) -> list[str]:
    """Run each job(user_or_arg) in its own app context on `workers` threads started at once.

    Returns, per job, "ok" or the DomainError code; any other exception fails the test.
    """
    start = threading.Event()

    def run(job):
        start.wait()
        with app.app_context():
            try:
                job()
                return "ok"
            except DomainError as exc:
                return exc.code
            finally:
                db.session.remove()

    with ThreadPoolExecutor(max_workers=workers) as pool:
        futures = [pool.submit(run, job) for job in jobs]
        start.set()
        return [f.result(timeout=120) for f in futures]


def pledge_job(user_id: int, campaign_id: int, req: PledgeRequest):
    def job():
        place_pledge(db.session.get(User, user_id), campaign_id, req)

    return job


def counted(campaign_id: int) -> tuple[int, int, int]:
    """(active pledges, their amount, distinct backers) as the database sums them."""
    row = db.session.execute(
        select(
            func.count(Pledge.id),
            func.coalesce(func.sum(Pledge.amount_amount), 0),
            func.count(func.distinct(Pledge.user_id)),
        ).where(
            Pledge.campaign_id == campaign_id, Pledge.state.in_([PledgeState.ACTIVE, PledgeState.CHARGED])
        )
    ).one()
    return int(row[0]), int(row[1]), int(row[2])


@pytest.mark.postgres
def test_300_pledges_for_a_100_unit_tier(app):
    campaign = make_campaign(tiers=[{"title": "Limited", "price_amount": 5_000, "quantity_limit": 100}])
    tier_id = campaign.tiers[0].id
    users = make_backers_fast(300)
    outcomes = run_together(app, [pledge_job(u, campaign.id, PledgeRequest(tier_id=tier_id)) for u in users])
    assert Counter(outcomes) == {"ok": 100, "sold_out": 200}
    db.session.rollback()  # end the test's read snapshot: see what the threads committed
    tier = db.session.get(RewardTier, tier_id)
    campaign = db.session.get(Campaign, campaign.id)
    count, amount, backers = counted(campaign.id)
    assert tier.claimed == 100 == count and tier.remaining == 0
    assert campaign.raised_amount == amount == 100 * 5_000
    assert campaign.backer_count == backers == 100


@pytest.mark.postgres
def test_concurrent_equity_commitments_never_pass_the_maximum(app):
    # goal 1,000.00 → min target 1,000.00, max 5,000.00; price 10.00; min investment 100.00.
    campaign = make_campaign(CampaignKind.EQUITY, goal=100_000)
    users = make_backers_fast(80)
    db.session.add_all(
        InvestorProfile(user_id=u, currency="CNY", annual_income_amount=10**9, net_worth_amount=10**9)
        for u in users
    )
    db.session.commit()
    amounts = [cny(100 + 10 * (i % 7)) for i in range(len(users))]  # 100.00 … 160.00, whole shares
    jobs = [
        pledge_job(u, campaign.id, PledgeRequest(amount=a, risk_acknowledged=True))
        for u, a in zip(users, amounts, strict=True)
    ]
    outcomes = run_together(app, jobs)
    assert set(outcomes) <= {"ok", "over_maximum"}
    assert "over_maximum" in outcomes
    db.session.rollback()  # end the test's read snapshot: see what the threads committed
    campaign = db.session.get(Campaign, campaign.id)
    count, amount, backers = counted(campaign.id)
    assert campaign.raised_amount == amount <= 500_000
    assert count == outcomes.count("ok") == backers == campaign.backer_count
    # Nothing that would still fit was refused: the room left is smaller than any request.
    assert 500_000 - amount < 10_000


@pytest.mark.postgres
def test_one_investor_racing_on_several_campaigns_stays_within_the_limit(app):
    # Limit: 2,500 USD = 17,857.14 CNY; five commitments of 5,000.00 CNY → exactly three fit.
    users = make_backers_fast(1)
    db.session.add(
        InvestorProfile(user_id=users[0], currency="USD", annual_income_amount=0, net_worth_amount=0)
    )
    db.session.commit()
    campaigns = [make_campaign(CampaignKind.EQUITY).id for _ in range(5)]
    jobs = [
        pledge_job(users[0], c, PledgeRequest(amount=cny(5_000), risk_acknowledged=True)) for c in campaigns
    ]
    outcomes = run_together(app, jobs, workers=5)
    assert Counter(outcomes) == {"ok": 3, "limit_exceeded": 2}


def test_two_ticks_at_once_close_each_campaign_once(app):
    past = utcnow().replace(microsecond=0)
    ids = [make_campaign(tiers=[], start_at=past.replace(year=past.year - 1), days=30).id for _ in range(15)]

    def tick():
        errors = [outcome.error for outcome in run_jobs() if outcome.error]
        assert not errors, errors

    outcomes = run_together(app, [tick, tick], workers=2)
    assert outcomes == ["ok", "ok"]
    db.session.rollback()
    events = db.session.execute(
        select(CampaignEvent.campaign_id, func.count()).group_by(CampaignEvent.campaign_id)
    ).all()
    assert dict(events) == {i: 1 for i in ids}


def test_concurrent_writers_never_see_database_is_locked(app):
    """On SQLite (file database, WAL): 20 writers at once all get an answer, none an error."""
    campaign = make_campaign(tiers=[{"title": "Kit", "price_amount": 1_000, "quantity_limit": 12}])
    tier_id = campaign.tiers[0].id
    users = make_backers_fast(20)
    outcomes = run_together(
        app, [pledge_job(u, campaign.id, PledgeRequest(tier_id=tier_id)) for u in users], 20
    )
    assert Counter(outcomes) == {"ok": 12, "sold_out": 8}
    db.session.rollback()  # end the test's read snapshot: see what the threads committed
    assert db.session.get(RewardTier, tier_id).claimed == 12 == counted(campaign.id)[0]


def test_double_submitted_form_creates_one_pledge(app):
    campaign = make_campaign(tiers=[{"title": "Kit", "price_amount": 1_000, "quantity_limit": None}])
    (user,) = make_backers_fast(1)
    req = PledgeRequest(tier_id=campaign.tiers[0].id, idempotency_token="double-click")
    outcomes = run_together(app, [pledge_job(user, campaign.id, req) for _ in range(8)], 8)
    assert outcomes == ["ok"] * 8
    db.session.rollback()  # end the test's read snapshot: see what the threads committed
    assert counted(campaign.id)[0] == 1
    assert db.session.get(Campaign, campaign.id).raised_amount == 1_000


def test_retry_on_lock_runs_the_use_case_again_only_for_lock_errors(app):
    from sqlalchemy.exc import OperationalError

    from crowdfund.database import retry_on_lock

    calls = []

    @retry_on_lock
    def flaky():
        calls.append(1)
        if len(calls) < 3:
            raise OperationalError("BEGIN IMMEDIATE", {}, Exception("database is locked"))
        return "done"

    assert flaky() == "done" and len(calls) == 3

    @retry_on_lock
    def broken():
        calls.append(1)
        raise OperationalError("SELECT", {}, Exception("no such table: nowhere"))

    calls.clear()
    with pytest.raises(OperationalError):
        broken()
    assert len(calls) == 1
