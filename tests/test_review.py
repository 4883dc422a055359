"""Operator review: the queue, the review page, and the three decisions."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select

from crowdfund.accounts.models import Membership, Role, VerificationStatus
from crowdfund.campaigns import service as campaigns
from crowdfund.campaigns.models import Campaign, CampaignKind, CampaignState
from crowdfund.errors import Conflict, Forbidden, ValidationError
from crowdfund.extensions import db
from crowdfund.models_base import utcnow
from crowdfund.review import service as review
from tests.factories import login, make_user
from tests.factories.accounts import operator
from tests.factories.campaigns import edit_form, snapshot, submitted_campaign

S = CampaignState


def _state(campaign_id: int) -> CampaignState:
    db.session.expire_all()
    return db.session.get(Campaign, campaign_id).state


def test_queue_lists_submitted_campaigns_oldest_first(client, db):
    _, org_a, first = submitted_campaign(CampaignKind.EQUITY)
    _, _, second = submitted_campaign(CampaignKind.DONATION)
    _, _, approved = submitted_campaign(CampaignKind.DEBT)
    review.approve(approved, operator(), "")
    first.submitted_at = utcnow() - timedelta(days=2)
    org_a.verification_status = VerificationStatus.VERIFIED
    db.session.commit()

    assert [c.id for c in review.review_queue()] == [first.id, second.id]
    login(client, operator())
    page = client.get("/operator/review")
    assert page.status_code == 200
    text = page.get_data(as_text=True)
    assert text.index(first.title) < text.index(second.title)
    assert f"/operator/review/{approved.id}" not in text
    assert "Equity" in text and "Donation" in text and "Verified" in text and "Unverified" in text


def test_review_pages_are_for_operators_only(client, db):
    _, _, campaign = submitted_campaign()
    urls = ["/operator/review", f"/operator/review/{campaign.id}"]
    for url in urls:
        r = client.get(url)
        assert r.status_code == 302 and "/login" in r.headers["Location"]
    login(client, make_user())
    for url in urls:
        assert client.get(url).status_code == 403
    r = client.post(f"/operator/review/{campaign.id}/approve", data={})
    assert r.status_code == 403
    assert _state(campaign.id) is S.SUBMITTED
    login(client, make_user(role=Role.ADMIN))
    assert client.get(urls[1]).status_code == 200


def test_review_page_shows_campaign_org_checks_and_history(client, db):
    user, org, campaign = submitted_campaign(CampaignKind.DONATION)
    login(client, operator())
    page = client.get(f"/operator/review/{campaign.id}")
    assert page.status_code == 200
    text = page.get_data(as_text=True)
    for expected in (campaign.title, org.legal_name, org.registration_number, "Peking Union", "Approve",
                     "Request changes", "Reject", "draft → submitted", user.name, "family assets"):  # fmt: skip
        assert expected in text, expected
    assert client.get("/operator/review/999999").status_code == 404


def test_approve_with_a_future_start_waits_for_the_start(client, db):
    start = utcnow() + timedelta(days=2)
    _, _, campaign = submitted_campaign(CampaignKind.REWARD, start=start)
    reviewer = operator()
    login(client, reviewer)
    r = client.post(f"/operator/review/{campaign.id}/approve", data={"approve-comment": ""})
    assert r.status_code == 302
    assert _state(campaign.id) is S.APPROVED
    assert campaigns.launch_due_campaigns(utcnow()) == 0
    assert campaigns.launch_due_campaigns(start + timedelta(minutes=1)) == 1
    assert _state(campaign.id) is S.LIVE


def test_request_changes_needs_a_comment_and_loops_back(client, db):
    user, _, campaign = submitted_campaign(CampaignKind.EQUITY)
    reviewer = operator()
    login(client, reviewer)
    before = snapshot()
    for blank in (
        {},
        {"changes-comment": ""},
        {"changes-comment": "   "},
        {"changes-comment": "x" * 100_000},
    ):
        r = client.post(f"/operator/review/{campaign.id}/changes", data=blank)
        assert r.status_code == 422 and b"invalid-feedback" in r.data
        assert snapshot() == before
    with pytest.raises(ValidationError):
        review.request_changes(campaign, reviewer, "  ")

    r = client.post(
        f"/operator/review/{campaign.id}/changes", data={"changes-comment": "Explain the valuation."}
    )
    assert r.status_code == 302
    assert _state(campaign.id) is S.CHANGES_REQUESTED

    login(client, user)
    page = client.get(f"/studio/{campaign.id}")
    assert b"Explain the valuation." in page.data
    r = client.post(
        f"/studio/{campaign.id}", data=edit_form(CampaignKind.EQUITY, story="Valuation: 20x revenue.")
    )
    assert r.status_code == 302
    assert client.post(f"/studio/{campaign.id}/submit", data={"note": "Explained."}).status_code == 302
    assert _state(campaign.id) is S.SUBMITTED

    login(client, reviewer)
    assert client.post(f"/operator/review/{campaign.id}/approve", data={}).status_code == 302
    assert _state(campaign.id) is S.LIVE
    moves = [(e.from_state, e.to_state, e.text) for e in campaigns.campaign_events(campaign)]
    assert moves == [
        ("draft", "submitted", ""),
        ("submitted", "changes_requested", "Explain the valuation."),
        ("changes_requested", "submitted", "Explained."),
        ("submitted", "approved", ""),
        ("approved", "live", "Approved after its start date: live at once."),
    ]


def test_reject_needs_a_reason_and_is_final(client, db):
    user, _, campaign = submitted_campaign(CampaignKind.DEBT)
    reviewer = operator()
    login(client, reviewer)
    r = client.post(f"/operator/review/{campaign.id}/reject", data={"reject-reason": ""})
    assert r.status_code == 422 and _state(campaign.id) is S.SUBMITTED
    r = client.post(f"/operator/review/{campaign.id}/reject", data={"reject-reason": "Unlicensed lender."})
    assert r.status_code == 302 and _state(campaign.id) is S.REJECTED
    event = campaigns.campaign_events(campaign)[-1]
    assert (event.to_state, event.actor_id, event.comment) == ("rejected", reviewer.id, "Unlicensed lender.")

    before = snapshot()
    for decision, data in (
        ("approve", {}),
        ("changes", {"changes-comment": "Try again"}),
        ("reject", {"reject-reason": "Again"}),
    ):
        r = client.post(f"/operator/review/{campaign.id}/{decision}", data=data)
        assert r.status_code == 422 and b"not waiting for review" in r.data
    login(client, user)
    assert client.post(f"/studio/{campaign.id}/submit", data={}).status_code == 302
    assert (
        client.post(f"/studio/{campaign.id}", data=edit_form(CampaignKind.DEBT, title="Retry")).status_code
        == 302
    )
    assert snapshot() == before
    with pytest.raises(Conflict):
        campaigns.submit_for_review(campaign, user)
    with pytest.raises(Conflict):
        review.approve(campaign, reviewer)


def test_decisions_only_on_submitted_campaigns(db):
    _, _, campaign = submitted_campaign()
    reviewer = operator()
    review.approve(campaign, reviewer)
    for decide in (review.approve, review.request_changes, review.reject):
        with pytest.raises(Conflict):
            decide(campaign, reviewer, "comment")
    assert _state(campaign.id) is S.LIVE


def test_an_operator_cannot_review_their_own_organisations_campaign(client, db):
    _, org, campaign = submitted_campaign()
    insider = operator()
    db.session.add(Membership(user_id=insider.id, organisation_id=org.id, role="member"))
    db.session.commit()
    with pytest.raises(Forbidden):
        review.approve(campaign, insider)
    login(client, insider)
    page = client.get(f"/operator/review/{campaign.id}")
    assert b"another operator must review it" in page.data
    r = client.post(f"/operator/review/{campaign.id}/approve", data={})
    assert r.status_code == 422
    assert _state(campaign.id) is S.SUBMITTED


def test_non_operators_cannot_decide_through_the_service(db):
    user, _, campaign = submitted_campaign()
    with pytest.raises(Forbidden):
        review.approve(campaign, user)
    with pytest.raises(Forbidden):
        review.reject(campaign, make_user(), "no")
    assert _state(campaign.id) is S.SUBMITTED
    assert db.session.scalars(select(Campaign)).one().approved_at is None


def test_unknown_decision_is_404(client, db):
    _, _, campaign = submitted_campaign()
    login(client, operator())
    assert client.post(f"/operator/review/{campaign.id}/publish", data={}).status_code == 404
    assert _state(campaign.id) is S.SUBMITTED


def test_a_campaign_whose_end_has_passed_cannot_be_approved(db):
    _, _, campaign = submitted_campaign(CampaignKind.DONATION)
    with pytest.raises(Conflict) as err:
        review.approve(campaign, operator(), now=campaign.end_at + timedelta(seconds=1))
    assert err.value.code == "end_passed"
    assert _state(campaign.id) is S.SUBMITTED
