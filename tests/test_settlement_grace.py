"""The grace schedule, driven by `flask jobs tick --now …`: retries on days 2, 4, 6 and 7,
dropped after day 7, hard declines and authentication left to the backer."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select

from crowdfund.campaigns.models import Campaign, CampaignState
from crowdfund.engine.models import Pledge, PledgeState
from crowdfund.extensions import db
from crowdfund.ledger import service as ledger
from crowdfund.payments.sandbox import CardBehaviour, SandboxCharge
from crowdfund.settlement import service
from crowdfund.settlement.models import ItemState, SettlementState
from tests.settlement_world import (
    DAY,
    campaign_with_pledges,
    escrow,
    sandbox_charges_per_pledge,
    set_behaviour,
)


def _tick(app, when: datetime) -> None:
    result = app.test_cli_runner().invoke(args=["jobs", "tick", "--now", when.isoformat()])
    assert result.exit_code == 0, result.output
    assert "failed (" not in result.output, result.output
    db.session.expire_all()


def _attempts(pledge_id: int) -> list[str]:
    return [
        c.status
        for c in db.session.scalars(select(SandboxCharge).order_by(SandboxCharge.created_at))
        if c.details.get("pledge_id") == str(pledge_id)
    ]


def _item(pledge_id: int):
    return service.item_for_pledge(pledge_id)


def _setup(n: int = 1, behaviour: CardBehaviour = CardBehaviour.SUCCEEDS):
    campaign, pledge_ids = campaign_with_pledges(n, amount=10_000, goal=5_000, behaviour=behaviour)
    return campaign, pledge_ids, campaign.end_at.replace(microsecond=0) + DAY / (24 * 60)


def test_failing_until_day_6_then_fixed_is_charged_once(app):
    campaign, (pledge_id,), close = _setup(behaviour=CardBehaviour.DECLINES_CHARGES)
    user_id = db.session.get(Pledge, pledge_id).user_id
    _tick(app, close)
    assert db.session.get(Campaign, campaign.id).state is CampaignState.SETTLING
    assert _item(pledge_id).state is ItemState.FAILED
    assert db.session.get(Pledge, pledge_id).state is PledgeState.FAILED
    assert db.session.get(Campaign, campaign.id).raised_amount == 0  # a failed pledge is not counted
    for day in (1, 2, 3, 4, 5):
        _tick(app, close + day * DAY)
    assert _attempts(pledge_id) == ["failed"] * 3  # day 0, 2, 4
    set_behaviour(user_id, CardBehaviour.SUCCEEDS)
    _tick(app, close + 6 * DAY)
    assert _item(pledge_id).state is ItemState.CHARGED
    assert _item(pledge_id).attempt == 4
    assert db.session.get(Pledge, pledge_id).state is PledgeState.CHARGED
    assert db.session.get(Campaign, campaign.id).raised_amount == 10_000
    for day in (7, 8, 14):
        _tick(app, close + day * DAY)
    assert sandbox_charges_per_pledge() == {pledge_id: 1}
    assert _attempts(pledge_id) == ["failed"] * 3 + ["succeeded"]
    assert service.settlement_for(campaign.id).state in (SettlementState.PAYING_OUT, SettlementState.SETTLED)


def test_failing_through_day_7_is_dropped_with_no_fee_and_no_further_call(app):
    campaign, (good, bad), close = _setup(2)
    set_behaviour(db.session.get(Pledge, bad).user_id, CardBehaviour.DECLINES_CHARGES)
    for day in range(0, 8):
        _tick(app, close + day * DAY)
    assert _attempts(bad) == ["failed"] * 5  # days 0, 2, 4, 6 and the last try on day 7
    item = _item(bad)
    assert item.state is ItemState.DROPPED
    pledge = db.session.get(Pledge, bad)
    assert pledge.state is PledgeState.RELEASED
    assert pledge.failure_code == "pledge_dropped"
    assert db.session.get(Campaign, campaign.id).backer_count == 1
    for day in (8, 10, 14, 20):
        _tick(app, close + day * DAY)
    assert _attempts(bad) == ["failed"] * 5
    s = service.settlement_for(campaign.id)
    db.session.refresh(s)
    assert s.collected_amount == 10_000
    assert s.platform_fee_amount == 500  # the fee of the charged pledge only
    assert escrow(campaign).amount == 0
    assert ledger.verify_ledger().ok
    progress = service.settlement_progress(campaign.id)
    assert (progress.charged, progress.dropped, progress.left) == (1, 1, 0)


def test_a_hard_decline_is_tried_exactly_once(app):
    campaign, (pledge_id,), close = _setup(behaviour=CardBehaviour.LOST_CARD)
    for day in range(0, 9):
        _tick(app, close + day * DAY)
    assert _attempts(pledge_id) == ["failed"]
    item = _item(pledge_id)
    assert item.state is ItemState.DROPPED
    assert item.gateway_code == "lost_card"


def test_a_hard_decline_waits_for_the_backer_who_changes_card(app):
    from crowdfund.accounts.models import User
    from tests.factories import add_card

    campaign, (pledge_id,), close = _setup(behaviour=CardBehaviour.LOST_CARD)
    _tick(app, close)
    item = _item(pledge_id)
    assert item.state is ItemState.HARD_DECLINED
    assert item.failure_message.startswith("Your bank refused this card for good")
    _tick(app, close + 2 * DAY)
    assert _attempts(pledge_id) == ["failed"]
    user = db.session.get(User, item.user_id)
    card = add_card(user)
    item = service.retry_now(user, pledge_id, card.id, now=close + 3 * DAY)
    assert item.state is ItemState.CHARGED
    assert _attempts(pledge_id) == ["failed", "succeeded"]


def test_authentication_required_is_never_retried_off_session(app):
    from crowdfund.accounts.models import User

    campaign, (pledge_id,), close = _setup(behaviour=CardBehaviour.AUTHENTICATES_CHARGES)
    _tick(app, close)
    assert _item(pledge_id).state is ItemState.ACTION_REQUIRED
    for day in (1, 2, 4, 6):
        _tick(app, close + day * DAY)
    assert _attempts(pledge_id) == ["requires_action"]
    user = db.session.get(User, _item(pledge_id).user_id)
    item = service.confirm_authentication(user, pledge_id, now=close + 6 * DAY)
    assert item.state is ItemState.CHARGED and item.on_session
    assert _attempts(pledge_id) == ["requires_action", "succeeded"]
    assert sandbox_charges_per_pledge() == {pledge_id: 1}
