"""The campaign clock: live campaigns close at their end (or early at the equity maximum)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import func, select

from crowdfund.campaigns.lifecycle import close_due_campaigns
from crowdfund.campaigns.models import CampaignEvent, CampaignKind, CampaignState, FundingModel
from crowdfund.engine.service import PledgeRequest, place_pledge
from crowdfund.errors import Conflict
from crowdfund.extensions import db
from crowdfund.models_base import utcnow
from tests.factories import login, make_campaign
from tests.factories.engine import make_backer


def ended(kind=CampaignKind.REWARD, raised=0, **fields):
    """A live campaign whose end passed a minute ago, with `raised` already counted."""
    now = utcnow()
    campaign = make_campaign(
        kind, start_at=now - timedelta(days=30), end_at=now - timedelta(minutes=1), **fields
    )
    campaign.raised_amount = raised
    db.session.commit()
    return campaign


def test_close_rules_per_kind(app):
    goal = 1_000_000  # equity: min target = goal; debt: min amount = goal
    table = [
        (ended(raised=goal), CampaignState.SUCCEEDED),
        (ended(raised=goal - 1), CampaignState.FAILED),
        (ended(CampaignKind.EQUITY, raised=goal), CampaignState.SUCCEEDED),
        (ended(CampaignKind.EQUITY, raised=goal - 1), CampaignState.FAILED),
        (ended(CampaignKind.DEBT, raised=goal), CampaignState.SUCCEEDED),
        (ended(CampaignKind.DEBT, raised=goal - 1), CampaignState.FAILED),
        (ended(CampaignKind.DONATION, raised=1), CampaignState.SUCCEEDED),
        (ended(CampaignKind.DONATION, raised=0), CampaignState.FAILED),
    ]
    keep_it_all = ended(raised=1)
    keep_it_all.funding_model = FundingModel.KEEP_IT_ALL
    empty_keep_it_all = ended(raised=0)
    empty_keep_it_all.funding_model = FundingModel.KEEP_IT_ALL
    db.session.commit()
    table += [(keep_it_all, CampaignState.SUCCEEDED), (empty_keep_it_all, CampaignState.FAILED)]
    still_open = make_campaign()

    assert close_due_campaigns() == len(table)
    for campaign, expected in table:
        db.session.refresh(campaign)
        assert campaign.state is expected, (campaign.kind, campaign.raised_amount)
        assert campaign.closed_at is not None
    db.session.refresh(still_open)
    assert still_open.state is CampaignState.LIVE
    assert close_due_campaigns() == 0


def test_equity_closes_early_at_the_maximum_only_after_21_days(app):
    now = utcnow()
    # max target = 5 x goal
    early_full = make_campaign(CampaignKind.EQUITY, start_at=now - timedelta(days=21), days=60)
    young_full = make_campaign(CampaignKind.EQUITY, start_at=now - timedelta(days=20), days=60)
    old_not_full = make_campaign(CampaignKind.EQUITY, start_at=now - timedelta(days=40), days=60)
    early_full.raised_amount = young_full.raised_amount = 5_000_000
    old_not_full.raised_amount = 4_999_999
    db.session.commit()
    assert close_due_campaigns(now) == 1
    for campaign in (early_full, young_full, old_not_full):
        db.session.refresh(campaign)
    assert early_full.state is CampaignState.SUCCEEDED
    assert young_full.state is CampaignState.LIVE and old_not_full.state is CampaignState.LIVE
    # A day later the young one has had its 21 days.
    assert close_due_campaigns(now + timedelta(days=1)) == 1


def test_tick_command_launches_and_closes_once(app):
    now = utcnow()
    approved = make_campaign(state=CampaignState.APPROVED, start_at=now - timedelta(minutes=5))
    over = ended(raised=0)
    runner = app.test_cli_runner()
    result = runner.invoke(args=["campaigns", "tick"])
    assert result.exit_code == 0, result.output
    assert "launched: 1" in result.output and "closed: 1" in result.output
    again = runner.invoke(args=["campaigns", "tick"])
    assert "launched: 0" in again.output and "closed: 0" in again.output
    db.session.refresh(approved)
    db.session.refresh(over)
    assert approved.state is CampaignState.LIVE and over.state is CampaignState.FAILED
    closing = db.session.scalar(
        select(func.count()).where(CampaignEvent.campaign_id == over.id, CampaignEvent.to_state == "failed")
    )
    assert closing == 1


def test_pages_never_show_a_campaign_open_past_its_deadline(app, client):
    """Before the clock has run, the past-deadline campaign looks closed and takes no pledges."""
    campaign = ended(tiers=[{"title": "Kit", "price_amount": 1_000, "quantity_limit": None}])
    backer = make_backer()
    login(client, backer)
    page = client.get(f"/campaigns/{campaign.slug}")
    assert page.status_code == 200
    assert f"/campaigns/{campaign.slug}/back" not in page.text
    assert "not taking pledges" in page.text
    form = client.get(f"/campaigns/{campaign.slug}/back")
    assert form.status_code == 302
    with pytest.raises(Conflict) as exc:
        place_pledge(backer, campaign.id, PledgeRequest(tier_id=campaign.tiers[0].id))
    assert exc.value.code == "campaign_closed"
