"""The campaign lifecycle: the table of allowed moves, events, and launching on the start date."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest
from sqlalchemy import func, select

from crowdfund.campaigns import service
from crowdfund.campaigns.models import Campaign, CampaignEvent, CampaignKind, CampaignState
from crowdfund.errors import Conflict
from crowdfund.extensions import db
from crowdfund.jobs import Job, registry, run_jobs
from crowdfund.models_base import InvalidTransition, utcnow
from crowdfund.review import service as review
from tests.factories import make_campaign
from tests.factories.accounts import operator
from tests.factories.campaigns import submitted_campaign

S = CampaignState
ALLOWED = {
    (S.DRAFT, S.SUBMITTED),
    (S.SUBMITTED, S.APPROVED),
    (S.SUBMITTED, S.CHANGES_REQUESTED),
    (S.SUBMITTED, S.REJECTED),
    (S.CHANGES_REQUESTED, S.SUBMITTED),
    (S.APPROVED, S.LIVE),
    (S.APPROVED, S.CANCELLED),
    (S.LIVE, S.SUCCEEDED),
    (S.LIVE, S.FAILED),
    (S.LIVE, S.SUSPENDED),
    (S.SUSPENDED, S.LIVE),
    (S.SUSPENDED, S.CANCELLED),
    (S.SUCCEEDED, S.SETTLING),
    (S.FAILED, S.SETTLING),
    (S.SETTLING, S.SETTLED),
}
PAIRS = [(a, b) for a in CampaignState for b in CampaignState]


def test_the_table_is_the_product_lifecycle():
    table = Campaign.TRANSITIONS
    assert {(a, b) for a, targets in table.items() for b in targets} == ALLOWED
    assert set(table) == set(CampaignState)


@pytest.mark.parametrize(("source", "target"), PAIRS, ids=[f"{a.value}->{b.value}" for a, b in PAIRS])
def test_every_move_of_the_lifecycle(source, target):
    campaign = Campaign(state=source)
    if (source, target) in ALLOWED:
        campaign.transition_to(target)
        assert campaign.state is target
    else:
        assert not campaign.can_transition_to(target)
        with pytest.raises(InvalidTransition) as err:
            campaign.transition_to(target)
        assert isinstance(err.value, Conflict) and err.value.code == "invalid_transition"
        assert campaign.state is source


def test_transition_records_an_event_and_refuses_with_conflict(db):
    campaign = make_campaign(state=S.DRAFT)
    user = campaign.created_by
    service.transition(campaign, S.SUBMITTED, user, "please review")
    db.session.commit()
    event = db.session.scalars(select(CampaignEvent)).one()
    assert (event.from_state, event.to_state, event.actor_id, event.comment) == (
        "draft",
        "submitted",
        user.id,
        "please review",
    )
    with pytest.raises(Conflict) as err:
        service.transition(campaign, S.SETTLED, user)
    assert err.value.code == "invalid_transition"
    assert campaign.state is S.SUBMITTED


def _event_count(campaign_id: int | None = None) -> int:
    query = select(func.count(CampaignEvent.id))
    if campaign_id is not None:
        query = query.where(CampaignEvent.campaign_id == campaign_id)
    return db.session.scalar(query)


def test_approval_after_the_start_goes_live_at_once(db):
    _, _, campaign = submitted_campaign(CampaignKind.DONATION)
    now = utcnow() + timedelta(minutes=1)
    review.approve(campaign, operator(), "fine", now=now)
    db.session.refresh(campaign)
    assert campaign.state is S.LIVE
    assert campaign.approved_at == now and campaign.launched_at == now
    moves = [(e.from_state, e.to_state) for e in service.campaign_events(campaign)]
    assert moves == [("draft", "submitted"), ("submitted", "approved"), ("approved", "live")]


def test_future_start_stays_approved_until_launch_due_campaigns(db):
    start = utcnow() + timedelta(days=3)
    _, _, campaign = submitted_campaign(CampaignKind.EQUITY, start=start)
    review.approve(campaign, operator(), "")
    db.session.refresh(campaign)
    assert campaign.state is S.APPROVED and campaign.launched_at is None

    assert service.launch_due_campaigns(utcnow()) == 0
    db.session.refresh(campaign)
    assert campaign.state is S.APPROVED

    later = start + timedelta(seconds=1)
    assert service.launch_due_campaigns(later) == 1
    db.session.refresh(campaign)
    assert campaign.state is S.LIVE and campaign.launched_at == later
    last = service.campaign_events(campaign)[-1]
    assert (last.from_state, last.to_state, last.actor_id) == ("approved", "live", None)


def test_launch_due_campaigns_twice_launches_once(db):
    now = utcnow()
    due = [make_campaign(state=S.APPROVED, start_at=now - timedelta(hours=1)) for _ in range(3)]
    future = make_campaign(state=S.APPROVED, start_at=now + timedelta(hours=1))
    draft = make_campaign(state=S.DRAFT, start_at=now - timedelta(hours=1))
    assert service.launch_due_campaigns(now) == 3
    assert service.launch_due_campaigns(now) == 0
    db.session.expire_all()
    assert [db.session.get(Campaign, c.id).state for c in due] == [S.LIVE] * 3
    assert db.session.get(Campaign, future.id).state is S.APPROVED
    assert db.session.get(Campaign, draft.id).state is S.DRAFT
    assert _event_count() == 3


def test_launch_due_campaigns_run_concurrently_launches_each_once(app, db):
    now = utcnow()
    ids = [make_campaign(state=S.APPROVED, start_at=now - timedelta(minutes=5)).id for _ in range(20)]
    db.session.remove()
    results: list[int] = []
    errors: list[BaseException] = []
    barrier = threading.Barrier(4)

    def worker():
        with app.app_context():
            try:
                barrier.wait()
                results.append(service.launch_due_campaigns(now))
            except BaseException as exc:  # reported below
                errors.append(exc)
            finally:
                db.session.remove()

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert sum(results) == 20
    assert {db.session.get(Campaign, i).state for i in ids} == {S.LIVE}
    assert _event_count() == 20


def test_tick_command_launches_and_prints(app, db):
    make_campaign(state=S.APPROVED, start_at=utcnow() - timedelta(minutes=1))
    result = app.test_cli_runner().invoke(args=["campaigns", "tick"])
    assert result.exit_code == 0, result.output
    assert "launched: 1" in result.output
    result = app.test_cli_runner().invoke(args=["campaigns", "tick"])
    assert "launched: 0" in result.output


def test_tick_runs_every_job_with_the_same_now(db):
    seen = []

    def step(now):
        seen.append(now)
        return 7

    now = utcnow()
    campaign_jobs = [job for job in registry() if job.name.startswith("campaigns.")]
    outcomes = run_jobs(now, (*campaign_jobs, Job("test.step", "closed", step)))
    counts = {o.job.name: o.count for o in outcomes}
    assert counts == {"campaigns.launch": 0, "campaigns.close": 0, "test.step": 7}
    assert seen == [now]
