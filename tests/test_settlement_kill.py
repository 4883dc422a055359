"""Settlement killed at 200+ seeded points across a campaign of 300 pledges, resumed each time:
every pledge charged at most once, the ledger balanced, escrow zero at the end, totals = items."""

from __future__ import annotations

import random
from datetime import timedelta

from sqlalchemy import func, select

from crowdfund.engine.models import Pledge, PledgeState
from crowdfund.extensions import db
from crowdfund.ledger import service as ledger
from crowdfund.payments.sandbox import CardBehaviour
from crowdfund.settlement import service
from crowdfund.settlement.models import ItemState, SettlementItem, SettlementState
from tests.settlement_world import (
    DAY,
    campaign_with_pledges,
    close,
    escrow,
    sandbox_charges_per_pledge,
    set_behaviour,
)

PLEDGES = 300
KILLS = 220
SEED = 20_27


class Killed(BaseException):
    """The process dies here (a BaseException: nothing may catch it on the way out)."""


class Killer:
    """Counts events (steps of settlement and gateway calls) and kills at the seeded ones."""

    def __init__(self, points: set[int]):
        self.points = points
        self.count = 0
        self.kills = 0

    def event(self, where: str) -> None:
        self.count += 1
        if self.count in self.points:
            self.kills += 1
            raise Killed(where)


class KillingGateway:
    """The sandbox, with a kill just before or just after some money calls."""

    def __init__(self, inner, killer: Killer, rng: random.Random):
        self.inner, self.killer, self.rng = inner, killer, rng
        self.name = inner.name

    def _money(self, real, **kwargs):
        if self.rng.random() < 0.5:
            self.killer.event("before the gateway call")
            return real(**kwargs)
        result = real(**kwargs)
        self.killer.event("after the gateway call, its answer lost")
        return result

    def charge(self, **kwargs):
        return self._money(self.inner.charge, **kwargs)

    def refund(self, **kwargs):
        return self._money(self.inner.refund, **kwargs)

    def payout(self, **kwargs):
        return self._money(self.inner.payout, **kwargs)

    def __getattr__(self, attr):
        return getattr(self.inner, attr)


def _run_until_quiet(now, killer: Killer) -> None:
    """Run the workers and the finaliser at `now`, restarting after every kill, until nothing moves."""
    for _ in range(5_000):
        try:
            moved = service.process_due_items(now=now, limit=50)
            moved += service.finalise_due_settlements(now=now)
        except Killed:
            db.session.rollback()
            db.session.expire_all()
            continue
        if not moved:
            return
    raise AssertionError("settlement never came to rest")


def test_settlement_killed_at_many_points_charges_each_pledge_at_most_once(app, monkeypatch):
    from crowdfund.accounts.models import Organisation
    from crowdfund.payments import service as payments
    from crowdfund.payments.sandbox import SandboxGateway

    app.config["PAYMENT_CALL_LEASE_SECONDS"] = 0  # a killed worker's claims and calls are free again at once
    app.config["PROCESSING_FEE_BP"] = 290
    app.config["PROCESSING_FEE_FIXED"] = 30
    rng = random.Random(SEED)
    campaign, pledge_ids = campaign_with_pledges(PLEDGES, amount=10_000, goal=100_000)
    payments.save_sandbox_bank_details(
        db.session.get(Organisation, campaign.organisation_id), bank_name="Bank", account_number="12345678"
    )
    declining = set(pledge_ids[::17])
    lost = set(pledge_ids[5::41]) - declining
    for pid in declining:
        set_behaviour(db.session.get(Pledge, pid).user_id, CardBehaviour.DECLINES_CHARGES)
    for pid in lost:
        set_behaviour(db.session.get(Pledge, pid).user_id, CardBehaviour.LOST_CARD)
    closed = close(campaign)

    killer = Killer(set(rng.sample(range(1, 4 * PLEDGES + 40), KILLS)))
    app.extensions["payments.gateway"] = KillingGateway(SandboxGateway(), killer, rng)
    monkeypatch.setattr(service, "STEP_HOOK", killer.event)

    service.open_settlement(campaign.id, now=closed)
    recovered = {pid: False for pid in declining}
    for day in (0, 2, 4, 6, 7, 8, 14, 15):
        if day == 6:  # half of the declining backers fixed their card by day 6
            for pid in sorted(declining)[::2]:
                set_behaviour(db.session.get(Pledge, pid).user_id, CardBehaviour.SUCCEEDS)
                recovered[pid] = True
        _run_until_quiet(closed + day * DAY + timedelta(minutes=1), killer)

    assert killer.kills >= 200, killer.kills
    settlement = service.settlement_for(campaign.id)
    db.session.refresh(settlement)
    assert settlement.state is SettlementState.SETTLED

    charges = sandbox_charges_per_pledge()
    assert max(charges.values()) == 1  # every pledge charged at most once
    expected_charged = set(pledge_ids) - lost - {pid for pid, ok in recovered.items() if not ok}
    assert set(charges) == expected_charged
    items = db.session.scalars(
        select(SettlementItem).where(SettlementItem.settlement_id == settlement.id)
    ).all()
    assert len(items) == PLEDGES
    assert {i.pledge_id for i in items if i.state is ItemState.CHARGED} == expected_charged
    assert {i.pledge_id for i in items if i.state is ItemState.DROPPED} == set(pledge_ids) - expected_charged
    assert all(db.session.get(Pledge, pid).state is PledgeState.CHARGED for pid in expected_charged)

    collected = sum(i.charged_amount - i.refunded_amount for i in items if i.state is ItemState.CHARGED)
    assert collected == 10_000 * len(expected_charged) == settlement.collected_amount
    assert (
        settlement.platform_fee_amount + settlement.processing_fee_amount + settlement.paid_out_amount
        == settlement.collected_amount
    )
    assert escrow(campaign).amount == 0
    report = ledger.verify_ledger()
    assert report.ok, report
    assert db.session.scalar(
        select(func.count(Pledge.id)).where(Pledge.state == PledgeState.RELEASED)
    ) == len(set(pledge_ids) - expected_charged)
