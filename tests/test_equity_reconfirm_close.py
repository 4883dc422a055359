"""Reconfirmations and the close of a round: a round does not close early while any investor
is still asked to reconfirm, and a commitment whose last reconfirmation is pending, declined
or lapsed is never charged, whatever the order in which the jobs run."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select

from crowdfund.accounts.models import User
from crowdfund.campaigns.lifecycle import close_due_campaigns
from crowdfund.campaigns.models import Campaign, CampaignEvent, CampaignState, EventCode
from crowdfund.engine.models import Pledge, PledgeState
from crowdfund.engine.service import PledgeRequest, place_pledge
from crowdfund.equity import amendments
from crowdfund.equity import service as equity
from crowdfund.equity.models import InvestorNotice, ReconfirmationState, ShareHolding
from crowdfund.errors import Conflict, ErrorCode
from crowdfund.extensions import db
from crowdfund.jobs import run_jobs
from crowdfund.models_base import utcnow
from crowdfund.money import Money
from crowdfund.settlement import service as settlement
from crowdfund.settlement.models import SettlementItem
from tests.factories.engine import make_investor
from tests.settlement_world import backers, sandbox_charges_per_pledge
from tests.test_equity import _connect_payouts
from tests.test_equity_reconfirm import fresh, owner_of, round_with_investors

DAY = timedelta(days=1)


def _invest(campaign: Campaign, amount: int, now=None) -> Pledge:
    user = db.session.get(User, backers(1)[0])
    make_investor(user, currency="CNY", accredited=True)
    return place_pledge(
        user, campaign.id, PledgeRequest(amount=Money(amount, "CNY"), risk_acknowledged=True), now=now
    )


def _full_round_under_amendment(monkeypatch, app):
    """A round old enough to close early, amended (maximum 1,500), then filled to that maximum."""
    monkeypatch.setitem(app.config, "EQUITY_EARLY_CLOSE_DAYS", 1)
    campaign, (a, b) = round_with_investors(2, amount=50_000, days=30)
    now = utcnow()
    amendments.amend_round(owner_of(campaign), campaign.id, {"max_target": "1500.00"}, now=now)
    filler = _invest(campaign, 50_000, now=now)
    campaign = fresh(Campaign, campaign.id)
    assert campaign.raised_amount == campaign.equity_terms.max_target_amount == 150_000
    return campaign, a, b, filler, now


def test_a_full_round_does_not_close_early_while_an_investor_is_asked_to_reconfirm(app, monkeypatch):
    campaign, a, b, _filler, now = _full_round_under_amendment(monkeypatch, app)
    assert fresh(Campaign, campaign.id).equity_terms.reconfirm_until == amendments.add_business_days(now, 5)

    assert close_due_campaigns(now + DAY) == 0
    assert fresh(Campaign, campaign.id).state is CampaignState.LIVE
    amendments.reconfirm(a.user, a.id, now=now + DAY)
    assert close_due_campaigns(now + DAY) == 0  # B has not answered yet
    assert fresh(Campaign, campaign.id).state is CampaignState.LIVE

    amendments.reconfirm(b.user, b.id, now=now + DAY)
    campaign = fresh(Campaign, campaign.id)
    assert campaign.equity_terms.reconfirm_until is None  # nobody left to answer
    assert close_due_campaigns(now + DAY) == 1
    campaign = fresh(Campaign, campaign.id)
    assert campaign.state is CampaignState.SUCCEEDED
    last = db.session.scalar(
        select(CampaignEvent)
        .where(CampaignEvent.campaign_id == campaign.id)
        .order_by(CampaignEvent.id.desc())
    )
    assert last.code == EventCode.CLOSED_EARLY


def test_a_reconfirmation_past_its_deadline_but_not_yet_lapsed_still_holds_the_early_close(app, monkeypatch):
    campaign, a, b, _filler, now = _full_round_under_amendment(monkeypatch, app)
    amendments.reconfirm(a.user, a.id, now=now)
    deadline = amendments.add_business_days(now, 5)
    assert close_due_campaigns(deadline + timedelta(minutes=1)) == 0  # the lapse job has not run

    assert amendments.lapse_due_reconfirmations(now=deadline + timedelta(minutes=1)) == 1
    campaign = fresh(Campaign, campaign.id)
    assert campaign.equity_terms.reconfirm_until is None
    assert campaign.raised_amount == 100_000  # B's commitment was cancelled: the round is no longer full
    assert close_due_campaigns(deadline + timedelta(minutes=2)) == 0
    assert fresh(Pledge, b.id).state is PledgeState.CANCELLED


def test_the_rules_read_the_hold_from_the_campaign(app, monkeypatch):
    from crowdfund.campaigns.kinds import kind_rules

    campaign, *_rest, now = _full_round_under_amendment(monkeypatch, app)
    rules = kind_rules(campaign)
    assert rules.closes_early(campaign, now + DAY) is False
    assert rules.settlement_waits(campaign) is True
    campaign.equity_terms.reconfirm_until = None
    assert rules.closes_early(campaign, now + DAY) is True
    assert rules.settlement_waits(campaign) is False
    db.session.rollback()


def _tick(at) -> None:
    outcomes = run_jobs(at)
    assert [o.line() for o in outcomes if o.error] == []


def test_a_commitment_not_reconfirmed_when_the_round_closes_is_never_charged_and_gets_nothing(app):
    campaign, (a, b, c) = round_with_investors(3, amount=50_000, days=12)
    _connect_payouts(campaign.organisation_id)
    now = utcnow()
    amendments.amend_round(owner_of(campaign), campaign.id, {"price_per_share": "15.00"}, now=now)
    amendments.reconfirm(a.user, a.id, now=now + DAY)
    amendments.decline(b.user, b.id, now=now + DAY)
    # C never answers, and the lapse job does not run before the round's end (the workers were
    # down): the round closes with C's reconfirmation still pending.
    closed = fresh(Campaign, campaign.id).end_at + timedelta(minutes=1)

    _tick(closed)  # close, settlement (must wait), charge, lapse … in the registry's order
    assert fresh(Campaign, campaign.id).state in (CampaignState.SUCCEEDED, CampaignState.SETTLING)
    assert fresh(Pledge, c.id).state is PledgeState.CANCELLED
    _tick(closed + timedelta(minutes=1))
    assert fresh(Campaign, campaign.id).state is CampaignState.SETTLING
    for days in (8, 15, 16):
        _tick(closed + days * DAY)
    assert fresh(Campaign, campaign.id).state is CampaignState.SETTLED

    charged = sandbox_charges_per_pledge()
    assert charged[a.id] == 1 and charged[b.id] == 0 and charged[c.id] == 0
    pledged = {p for p in db.session.scalars(select(SettlementItem.pledge_id))}
    assert pledged == {a.id}
    assert fresh(Pledge, c.id).payment_operation_id is None
    holdings = db.session.scalars(select(ShareHolding)).all()
    assert [(h.pledge_id, h.shares) for h in holdings] == [(a.id, 33)]
    assert equity.blocked_pledges(campaign.id) == {b.id, c.id}
    told = db.session.scalar(
        select(InvestorNotice).where(
            InvestorNotice.code == "not_reconfirmed", InvestorNotice.user_id == c.user_id
        )
    )
    assert told is not None


def test_settlement_waits_while_a_closed_round_has_a_pending_reconfirmation(app):
    campaign, (a, b) = round_with_investors(2, amount=50_000, days=12)
    now = utcnow()
    amendments.amend_round(owner_of(campaign), campaign.id, {"max_target": "1500.00"}, now=now)
    amendments.reconfirm(a.user, a.id, now=now)
    closed = fresh(Campaign, campaign.id).end_at + timedelta(minutes=1)
    assert close_due_campaigns(closed) == 1

    assert settlement.open_due_settlements(now=closed) == 0
    assert settlement.settlement_for(campaign.id) is None
    # the round is over: the pending answer can no longer be given, it lapses
    with pytest.raises(Conflict) as err:
        amendments.reconfirm(b.user, b.id, now=closed)
    assert err.value.code is ErrorCode.RECONFIRMATION_CLOSED
    with pytest.raises(Conflict):
        settlement.open_settlement(campaign.id, now=closed)
    assert amendments.lapse_due_reconfirmations(now=closed) == 1
    assert fresh(Pledge, b.id).state is PledgeState.CANCELLED
    assert amendments.pending_for_pledge(b.id) is None
    assert fresh(Campaign, campaign.id).equity_terms.reconfirm_until is None
    assert settlement.open_due_settlements(now=closed) == 1
    items = db.session.scalars(select(SettlementItem.pledge_id)).all()
    assert items == [a.id]


def test_a_reconfirmation_pending_when_the_round_closes_early_for_any_reason_lapses_at_once(app):
    """Belt and braces: even a round closed before an investor's deadline (here its end moved
    forward by hand) lapses the pending answers before settlement opens."""
    campaign, (a, b) = round_with_investors(2, amount=50_000, days=12)
    now = utcnow()
    amendments.amend_round(owner_of(campaign), campaign.id, {"price_per_share": "12.50"}, now=now)
    amendments.reconfirm(a.user, a.id, now=now)
    row = db.session.get(Campaign, campaign.id)
    row.end_at = now + timedelta(hours=1)
    db.session.commit()
    closed = now + timedelta(hours=2)
    assert close_due_campaigns(closed) == 1
    assert settlement.open_due_settlements(now=closed) == 0
    assert amendments.lapse_due_reconfirmations(now=closed) == 1  # before its deadline
    assert fresh(Pledge, b.id).state is PledgeState.CANCELLED
    answer = db.session.scalar(
        select(amendments.Reconfirmation).where(amendments.Reconfirmation.pledge_id == b.id)
    )
    assert answer.state is ReconfirmationState.LAPSED
    assert settlement.open_due_settlements(now=closed) == 1
    assert db.session.scalars(select(SettlementItem.pledge_id)).all() == [a.id]
