"""Each campaign kind's rules, and the lifecycle's system events stored as codes."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select

from crowdfund.campaigns import service
from crowdfund.campaigns.kinds import KINDS, kind_rules
from crowdfund.campaigns.lifecycle import close_due_campaigns
from crowdfund.campaigns.models import Campaign, CampaignEvent, CampaignKind, CampaignState, FundingModel
from crowdfund.models_base import utcnow
from crowdfund.review import service as review
from tests.factories import make_campaign
from tests.factories.accounts import operator
from tests.factories.campaigns import submitted_campaign

K = CampaignKind
S = CampaignState


def test_every_kind_has_its_rules_and_lookup_takes_kind_value_or_campaign():
    assert set(KINDS) == set(CampaignKind)
    for kind in CampaignKind:
        rules = kind_rules(kind)
        assert rules.kind is kind
        assert kind_rules(kind.value) is rules
        assert kind_rules(Campaign(kind=kind)) is rules
        assert rules.description and rules.blurb and rules.review_checklist


@pytest.mark.parametrize(
    ("kind", "charge_at_close", "investment"),
    [(K.REWARD, True, False), (K.EQUITY, True, True), (K.DEBT, True, True), (K.DONATION, False, False)],
)
def test_pledging_rules_per_kind(kind, charge_at_close, investment):
    rules = kind_rules(kind)
    assert (rules.charge_at_close, rules.investment) == (charge_at_close, investment)


def test_cancellation_deadline_per_kind():
    end = utcnow() + timedelta(days=10)
    deadlines = {kind: kind_rules(kind).cancellation_deadline(Campaign(kind=kind, end_at=end)) for kind in K}
    assert deadlines == {
        K.REWARD: end,
        K.EQUITY: end - timedelta(hours=48),
        K.DEBT: end - timedelta(hours=48),
        K.DONATION: None,
    }


@pytest.mark.parametrize(
    ("kind", "raised", "succeeds"),
    [
        (K.REWARD, 999_999, False),
        (K.REWARD, 1_000_000, True),
        (K.DONATION, 1, True),
        (K.DONATION, 0, False),
    ],
)
def test_success_rule_at_close(db, kind, raised, succeeds):
    campaign = make_campaign(kind, goal=1_000_000)
    campaign.raised_amount = raised
    assert kind_rules(campaign).succeeded(campaign) is succeeds


def test_keep_it_all_reward_succeeds_with_any_pledge(db):
    campaign = make_campaign(K.REWARD, goal=1_000_000)
    campaign.funding_model = FundingModel.KEEP_IT_ALL
    campaign.raised_amount = 1
    assert kind_rules(campaign).succeeded(campaign) is True


def test_equity_and_debt_succeed_at_their_minimum(db):
    equity = make_campaign(K.EQUITY)
    equity.raised_amount = equity.equity_terms.min_target_amount - 1
    assert not kind_rules(equity).succeeded(equity)
    equity.raised_amount += 1
    assert kind_rules(equity).succeeded(equity)
    debt = make_campaign(K.DEBT)
    debt.raised_amount = debt.debt_terms.min_amount
    assert kind_rules(debt).succeeded(debt)


def test_system_moves_store_a_code_and_params_not_a_sentence(db):
    now = utcnow()
    approved = make_campaign(state=S.APPROVED, start_at=now - timedelta(minutes=1))
    assert service.launch_due_campaigns(now) == 1
    launched = service.campaign_events(approved)[-1]
    assert (launched.code, launched.comment, launched.actor_id) == ("launched_on_start", "", None)
    assert launched.text == "The start date arrived."

    ended = make_campaign(K.DONATION, goal=500_000, start_at=now - timedelta(days=3), days=1)
    ended.raised_amount = 12_345
    db.session.commit()
    assert close_due_campaigns(now) == 1
    db.session.expire_all()
    closing = db.session.scalars(
        select(CampaignEvent).where(CampaignEvent.campaign_id == ended.id).order_by(CampaignEvent.id.desc())
    ).first()
    assert db.session.get(Campaign, ended.id).state is S.SUCCEEDED
    assert (closing.code, closing.comment) == ("closed_at_deadline", "")
    assert closing.params == {"raised_minor": 12_345, "goal_minor": 500_000, "currency": "CNY"}
    assert closing.text == "The deadline passed. Raised ¥123.45 of ¥5,000.00."


def test_operator_decisions_keep_who_and_why_as_typed(db):
    _, _, campaign = submitted_campaign(K.DONATION)
    reviewer = operator()
    review.approve(campaign, reviewer, "Documents checked.", now=utcnow() + timedelta(minutes=1))
    approved, live = service.campaign_events(campaign)[-2:]
    assert (approved.actor_id, approved.comment, approved.code, approved.text) == (
        reviewer.id,
        "Documents checked.",
        None,
        "Documents checked.",
    )
    assert (live.actor_id, live.code, live.comment) == (reviewer.id, "launched_on_approval", "")
    assert live.text == "Approved after its start date: live at once."
