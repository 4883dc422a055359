"""A material change to a live equity round: every committed investor reconfirms within 5
business days, or their commitment is cancelled, they are told, and nothing is issued to them."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select

from crowdfund.accounts.models import User
from crowdfund.campaigns.models import Campaign, CampaignKind
from crowdfund.engine.models import Pledge, PledgeState
from crowdfund.engine.service import PledgeRequest, place_pledge
from crowdfund.equity import amendments
from crowdfund.equity import service as equity
from crowdfund.equity.models import (
    RECONFIRMATION_TRANSITIONS,
    InvestorNotice,
    Reconfirmation,
    ReconfirmationState,
    ShareHolding,
)
from crowdfund.errors import Conflict, DomainError, ErrorCode, NotFound, ValidationError
from crowdfund.extensions import db
from crowdfund.models_base import utcnow
from crowdfund.money import Money
from tests.factories import login, make_campaign, make_org, make_user, operator
from tests.factories.engine import make_investor
from tests.settlement_world import backers
from tests.test_equity import settle

DAY = timedelta(days=1)


def round_with_investors(n: int = 2, amount: int = 50_000, days: int = 12):
    """A live equity round (1,000 per share, ends in `days` days) with `n` commitments of `amount`."""
    org = make_org()
    campaign = make_campaign(
        CampaignKind.EQUITY, org=org, goal=40_000, start_at=utcnow() - DAY, end_at=utcnow() + days * DAY
    )
    pledges = []
    for uid in backers(n):
        user = db.session.get(User, uid)
        make_investor(user, currency="CNY", accredited=True)
        req = PledgeRequest(amount=Money(amount, "CNY"), risk_acknowledged=True)
        pledges.append(place_pledge(user, campaign.id, req))
    return db.session.get(Campaign, campaign.id), pledges


def owner_of(campaign: Campaign) -> User:
    return db.session.get(User, campaign.organisation.created_by_id)


def fresh(model, ident):
    db.session.expire_all()
    return db.session.get(model, ident)


def test_business_days_skip_weekends():
    friday = datetime(2027, 1, 1, 10, 0, tzinfo=UTC)  # a Friday
    assert amendments.add_business_days(friday, 5) == datetime(2027, 1, 8, 10, 0, tzinfo=UTC)
    saturday = friday + DAY
    assert amendments.add_business_days(saturday, 5) == datetime(2027, 1, 8, 10, 0, tzinfo=UTC)
    monday = friday + 3 * DAY
    assert amendments.add_business_days(monday, 1) == monday + DAY


@pytest.mark.parametrize("source", list(ReconfirmationState))
@pytest.mark.parametrize("target", list(ReconfirmationState))
def test_reconfirmation_moves(source, target):
    allowed = {
        ("pending", "confirmed"),
        ("pending", "declined"),
        ("pending", "lapsed"),
        ("pending", "superseded"),
        ("confirmed", "superseded"),
    }
    assert (target in RECONFIRMATION_TRANSITIONS[source]) == ((source.value, target.value) in allowed)


def test_a_price_change_asks_every_committed_investor_and_lapses_those_who_do_not_answer(app):
    campaign, (a, b) = round_with_investors(2)
    now = utcnow()
    amendment = amendments.amend_round(owner_of(campaign), campaign.id, {"price_per_share": "15.00"}, now=now)
    deadline = amendments.add_business_days(now, 5)
    assert amendment.asked == 2 and amendment.reconfirm_by == deadline
    assert amendment.before["price_per_share"] == 1_000 and amendment.after["price_per_share"] == 1_500
    assert fresh(Campaign, campaign.id).equity_terms.price_per_share_amount == 1_500
    asked = db.session.scalars(
        select(InvestorNotice).where(InvestorNotice.code == "reconfirm_requested")
    ).all()
    assert sorted(n.user_id for n in asked) == sorted([a.user_id, b.user_id])
    assert "reconfirm your commitment by" in asked[0].message

    # A reconfirms: 50,000 at 1,500 a share is 33 whole shares, 49,500 committed
    amendments.reconfirm(a.user, a.id, now=now + DAY)
    pledge_a = fresh(Pledge, a.id)
    assert (pledge_a.shares, pledge_a.amount_amount) == (33, 49_500)
    assert fresh(Campaign, campaign.id).raised_amount == 49_500 + 50_000

    # B does not answer: nothing happens before the deadline, B's commitment is cancelled at it
    assert amendments.lapse_due_reconfirmations(now=deadline - timedelta(seconds=1)) == 0
    assert fresh(Pledge, b.id).state is PledgeState.ACTIVE
    assert amendments.lapse_due_reconfirmations(now=deadline) == 1
    assert amendments.lapse_due_reconfirmations(now=deadline + DAY) == 0
    assert fresh(Pledge, b.id).state is PledgeState.CANCELLED
    assert fresh(Pledge, a.id).state is PledgeState.ACTIVE
    campaign = fresh(Campaign, campaign.id)
    assert campaign.raised_amount == 49_500 and campaign.backer_count == 1
    told = db.session.scalar(
        select(InvestorNotice).where(
            InvestorNotice.code == "not_reconfirmed", InvestorNotice.user_id == b.user_id
        )
    )
    assert told is not None and "did not reconfirm" in told.message
    with pytest.raises(Conflict) as err:
        amendments.reconfirm(b.user, b.id, now=deadline + DAY)
    assert err.value.code is ErrorCode.RECONFIRMATION_CLOSED

    # the round settles: shares go to A only, at the new price
    settle(campaign)
    equity.issue_due_shares()
    holdings = db.session.scalars(select(ShareHolding)).all()
    assert [(h.pledge_id, h.shares, h.price_amount) for h in holdings] == [(a.id, 33, 1_500)]


def test_declining_cancels_at_once_and_a_later_amendment_asks_again(app):
    campaign, (a, b) = round_with_investors(2)
    now = utcnow()
    amendments.amend_round(owner_of(campaign), campaign.id, {"max_target": "6000.00"}, now=now)
    amendments.decline(b.user, b.id, now=now)
    assert fresh(Pledge, b.id).state is PledgeState.CANCELLED
    amendments.reconfirm(a.user, a.id, now=now)
    assert fresh(Pledge, a.id).amount_amount == 50_000  # price unchanged: commitment unchanged

    second = amendments.amend_round(operator(), campaign.id, {"security_type": "preferred"}, now=now + DAY)
    assert second.asked == 1  # only A is still committed
    states = {
        r.state for r in db.session.scalars(select(Reconfirmation).where(Reconfirmation.pledge_id == a.id))
    }
    assert states == {ReconfirmationState.SUPERSEDED, ReconfirmationState.PENDING}
    assert equity.blocked_pledges(campaign.id) == {a.id, b.id}


def test_amendments_refused_change_nothing(app):
    campaign, (a, _b) = round_with_investors(2, days=12)
    owner = owner_of(campaign)
    with pytest.raises(NotFound):
        amendments.amend_round(make_user(), campaign.id, {"price_per_share": "15.00"})
    with pytest.raises(ValidationError) as err:
        amendments.amend_round(owner, campaign.id, {"price_per_share": "10.00"})
    assert err.value.code is ErrorCode.AMENDMENT_UNCHANGED
    with pytest.raises(ValidationError) as err:
        amendments.amend_round(owner, campaign.id, {"max_target": "900.00"})  # below the 1,000 committed
    assert err.value.field == "max_target"
    with pytest.raises(ValidationError):
        amendments.amend_round(owner, campaign.id, {"price_per_share": "free"})
    with pytest.raises(DomainError):
        amendments.reconfirm(a.user, a.id)  # nothing to reconfirm
    late, _ = round_with_investors(1, days=3)
    with pytest.raises(Conflict) as err:
        amendments.amend_round(owner_of(late), late.id, {"price_per_share": "15.00"})
    assert err.value.code is ErrorCode.AMENDMENT_TOO_LATE
    for c in (campaign, late):
        assert fresh(Campaign, c.id).equity_terms.price_per_share_amount == 1_000
        assert fresh(Campaign, c.id).equity_terms.max_target_amount == 200_000
    assert db.session.scalar(select(Reconfirmation.id)) is None
    assert db.session.scalar(select(InvestorNotice.id)) is None


def test_an_amendment_before_the_first_commitment_asks_nobody(app):
    campaign, _ = round_with_investors(0)
    amendment = amendments.amend_round(owner_of(campaign), campaign.id, {"price_per_share": "20.00"})
    assert amendment.asked == 0
    assert fresh(Campaign, campaign.id).equity_terms.price_per_share_amount == 2_000


def test_amend_and_reconfirm_pages(app, client):
    campaign, (a, b) = round_with_investors(2)
    url = f"/studio/{campaign.id}/amend-round"
    login(client, make_user())
    assert client.get(url).status_code == 404
    assert client.post(url, data={"price_per_share": "15.00"}).status_code == 404
    login(client, owner_of(campaign))
    assert client.get(url).status_code == 200
    form = {
        "security_type": "common",
        "price_per_share": "12.50",
        "pre_money_valuation": "5,000,000.00",
        "max_target": "2,500.00",
        "min_investment": "100.00",
    }
    bad = client.post(url, data={**form, "max_target": "1.00"})
    assert bad.status_code == 422 and "cannot be below" in bad.get_data(as_text=True)
    assert client.post(url, data=form).status_code == 303
    assert fresh(Campaign, campaign.id).equity_terms.price_per_share_amount == 1_250

    login(client, a.user)
    page = client.get("/my/pledges").get_data(as_text=True)
    assert "reconfirm your commitment by" in page and f"/pledges/{a.id}/reconfirm" in page
    assert "Price per share: ¥10.00 → ¥12.50" in page
    assert client.post(f"/pledges/{b.id}/reconfirm").status_code == 404  # someone else's
    assert client.post(f"/pledges/{a.id}/reconfirm").status_code == 303
    assert fresh(Pledge, a.id).shares == 40
    login(client, b.user)
    assert client.post(f"/pledges/{b.id}/decline").status_code == 303
    assert fresh(Pledge, b.id).state is PledgeState.CANCELLED
