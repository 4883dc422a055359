"""Several workers settle one campaign side by side: each pledge is charged once (PostgreSQL:
FOR UPDATE SKIP LOCKED claims; SQLite: the single writer)."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

from crowdfund.extensions import db
from crowdfund.ledger import service as ledger
from crowdfund.settlement import service
from crowdfund.settlement.models import ItemState, SettlementState
from tests.settlement_world import DAY, campaign_with_pledges, close, escrow, sandbox_charges_per_pledge

WORKERS = 4


@pytest.fixture
def app_config(app_config):
    class Config(app_config):
        SQLALCHEMY_ENGINE_OPTIONS = {"pool_size": WORKERS + 2, "max_overflow": 2, "pool_timeout": 60}

    return Config


def _workers(app, now, workers: int = WORKERS) -> list[int]:
    start = threading.Event()

    def run():
        start.wait()
        with app.app_context():
            try:
                done = 0
                while moved := service.process_due_items(now=now, limit=10):
                    done += moved
                return done
            finally:
                db.session.remove()

    with ThreadPoolExecutor(max_workers=workers) as pool:
        futures = [pool.submit(run) for _ in range(workers)]
        start.set()
        return [f.result(timeout=300) for f in futures]


@pytest.mark.postgres
def test_workers_side_by_side_on_postgres_charge_each_pledge_once(app):
    campaign, pledge_ids = campaign_with_pledges(120, amount=1_000, goal=10_000)
    closed = close(campaign)
    service.open_settlement(campaign.id, now=closed)
    done = _workers(app, closed)
    db.session.rollback()
    assert sum(done) == 120
    assert sum(1 for n in done if n) >= 2  # the work was really shared
    assert sandbox_charges_per_pledge() == {pid: 1 for pid in pledge_ids}
    progress = service.settlement_progress(campaign.id)
    assert progress.counts == {ItemState.CHARGED: 120}
    assert escrow(campaign).amount == 120_000
    service.finalise_due_settlements(now=closed + 14 * DAY)
    assert service.settlement_for(campaign.id).state is SettlementState.PAYING_OUT  # no payout account yet
    assert escrow(campaign).amount == 0
    assert ledger.verify_ledger().ok


def test_two_workers_on_sqlite_share_the_writer(app, is_postgres):
    if is_postgres:
        pytest.skip("the PostgreSQL variant is above")
    campaign, pledge_ids = campaign_with_pledges(20, amount=1_000, goal=10_000)
    closed = close(campaign)
    service.open_settlement(campaign.id, now=closed)
    done = _workers(app, closed, workers=2)
    db.session.rollback()
    assert sum(done) == 20
    assert sandbox_charges_per_pledge() == {pid: 1 for pid in pledge_ids}
