"""Pledge pages: form → review → confirm per kind, my pledges, change/cancel, investor
profile, the campaigner's dashboard and CSV export."""

from __future__ import annotations

import csv
import io
import re
from datetime import timedelta

from sqlalchemy import func, select

from crowdfund.campaigns.models import CampaignKind
from crowdfund.engine.models import InvestorProfile, Pledge, PledgeState
from crowdfund.engine.service import PledgeRequest, place_pledge
from crowdfund.extensions import db
from tests.factories import login, make_campaign, make_org, make_user
from tests.factories.engine import cny, make_backer, make_investor
from tests.factories.payments import add_card

TIERS = [
    {"title": "Early bird", "price_amount": 10_000, "quantity_limit": 5},
    {"title": "Sold", "price_amount": 20_000, "quantity_limit": 1, "claimed": 1},
]


def token_of(page) -> str:
    match = re.search(r'name="token"[^>]*value="([^"]+)"', page.text) or re.search(
        r'value="([^"]+)"[^>]*name="token"', page.text
    )
    assert match, "the form carries no idempotency token"
    return match.group(1)


def pledges() -> list[Pledge]:
    return list(db.session.scalars(select(Pledge).order_by(Pledge.id)))


def test_reward_form_review_confirm_and_resubmit(app, client):
    campaign = make_campaign(tiers=TIERS)
    backer = make_backer()
    login(client, backer)
    form = client.get(f"/campaigns/{campaign.slug}/back?tier={campaign.tiers[0].id}")
    assert form.status_code == 200
    assert "Early bird" in form.text and "Sold out" in form.text
    data = {"tier": str(campaign.tiers[0].id), "quantity": "3", "extra": "", "token": token_of(form)}

    review = client.post(f"/campaigns/{campaign.slug}/back/review", data=data)
    assert review.status_code == 200
    text = re.sub(r"\s+", " ", review.text)
    assert "Nothing is charged now." in text
    assert "Visa •••• 4242" in text and "will be charged <strong>¥300.00</strong>" in text
    assert "only if the campaign reaches its goal of ¥10,000.00 by" in text
    assert pledges() == []  # the review step writes nothing

    done = client.post(f"/campaigns/{campaign.slug}/back/confirm", data=data)
    assert done.status_code == 302 and "/my/pledges" in done.headers["Location"]
    again = client.post(f"/campaigns/{campaign.slug}/back/confirm", data=data)  # double click / resubmit
    assert again.status_code == 302
    (pledge,) = pledges()
    assert pledge.amount == cny(300) and pledge.quantity == 3
    db.session.refresh(campaign)
    assert campaign.raised_amount == 30_000 and campaign.tiers[0].claimed == 3


BAD_TYPED_AMOUNTS = [
    ("abc", "is not an amount"),
    ("-5", "must be positive"),
    ("0", "more than zero"),
    ("$5", "is not an amount"),
    ("12.345", "at most 2 decimal places"),
    ("99999999999999999", "too large"),
    ("", "Enter an amount"),
]


def test_bad_amounts_in_the_donation_form(app, client):
    campaign = make_campaign(CampaignKind.DONATION)
    login(client, make_backer())
    for typed, message in BAD_TYPED_AMOUNTS:
        for step in ("review", "confirm"):
            page = client.post(
                f"/campaigns/{campaign.slug}/back/{step}", data={"amount": typed, "token": "t1"}
            )
            assert page.status_code == 422, (typed, step)
            assert message in page.text, (typed, step)
    assert pledges() == []


def test_donation_confirm_and_decline(app, client):
    campaign = make_campaign(CampaignKind.DONATION)
    donor = make_user()
    add_card(donor, "4000000000000341")  # declined when charged
    login(client, donor)
    data = {"amount": "25", "message": "Courage!", "token": "first"}
    review = client.post(f"/campaigns/{campaign.slug}/back/review", data=data)
    assert "will be charged <strong>¥25.00</strong> now" in review.text
    declined = client.post(f"/campaigns/{campaign.slug}/back/confirm", data=data)
    assert declined.status_code == 402
    assert "declined" in declined.text and token_of(declined) != "first"
    assert [p.state for p in pledges()] == [PledgeState.FAILED]

    add_card(donor)  # a working card becomes the default
    ok = client.post(f"/campaigns/{campaign.slug}/back/confirm", data={**data, "token": token_of(declined)})
    assert ok.status_code == 302
    assert [p.state for p in pledges()] == [PledgeState.FAILED, PledgeState.CHARGED]


def test_no_card_links_to_adding_one(app, client):
    campaign = make_campaign(tiers=TIERS)
    login(client, make_user())
    page = client.get(f"/campaigns/{campaign.slug}/back")
    assert "You need a saved card" in page.text
    assert "/account/payment-methods/new?next=" in page.text
    tried = client.post(
        f"/campaigns/{campaign.slug}/back/review", data={"tier": str(campaign.tiers[0].id), "token": "x"}
    )
    assert tried.status_code == 422 and "Add a card before you pledge" in tried.text


def test_equity_page_states_the_rules_and_asks_for_a_profile(app, client):
    campaign = make_campaign(CampaignKind.EQUITY)
    backer = make_backer()
    login(client, backer)
    page = client.get(f"/campaigns/{campaign.slug}/back")
    deadline = (campaign.end_at - timedelta(hours=48)).strftime("%d %b %Y %H:%M UTC")
    assert deadline in page.text and "48 hours before the deadline" in page.text
    assert "Complete your investor profile" in page.text
    refused = client.post(
        f"/campaigns/{campaign.slug}/back/review", data={"shares": "20", "risk": "y", "token": "e1"}
    )
    assert refused.status_code == 422 and "investor profile" in refused.text

    make_investor(backer, income=10_000_00, net_worth=10_000_00)
    page = client.get(f"/campaigns/{campaign.slug}/back")
    assert "$2,500.00" in page.text
    no_tick = client.post(f"/campaigns/{campaign.slug}/back/review", data={"shares": "20", "token": "e1"})
    assert no_tick.status_code == 422 and "lose all of this money" in no_tick.text
    review = client.post(
        f"/campaigns/{campaign.slug}/back/review", data={"shares": "20", "risk": "y", "token": "e1"}
    )
    assert (
        review.status_code == 200 and "only if the campaign reaches its minimum of ¥10,000.00" in review.text
    )
    done = client.post(
        f"/campaigns/{campaign.slug}/back/confirm", data={"shares": "20", "risk": "y", "token": "e1"}
    )
    assert done.status_code == 302
    assert pledges()[0].shares == 20


def test_debt_pages_show_the_repayment_schedule(app, client):
    campaign = make_campaign(CampaignKind.DEBT)
    login(client, make_investor(accredited=True))
    page = client.get(f"/campaigns/{campaign.slug}/back")
    assert "Expected repayments for ¥100.00" in page.text
    review = client.post(
        f"/campaigns/{campaign.slug}/back/review", data={"amount": "1,200", "risk": "y", "token": "d1"}
    )
    assert review.status_code == 200
    assert "Expected repayments for ¥1,200.00" in review.text
    assert review.text.count("<tr><td>") >= 12  # one row per month of the 12-month term


def test_my_pledges_cancel_and_change(app, client):
    campaign = make_campaign(tiers=TIERS)
    donation = make_campaign(CampaignKind.DONATION)
    backer = make_backer()
    pledge = place_pledge(backer, campaign.id, PledgeRequest(tier_id=campaign.tiers[0].id))
    place_pledge(backer, donation.id, PledgeRequest(amount=cny(10)))
    login(client, backer)
    page = client.get("/my/pledges")
    assert page.status_code == 200
    assert f"/pledges/{pledge.id}/cancel" in page.text and f"/pledges/{pledge.id}/change" in page.text
    assert campaign.end_at.strftime("%d %b %Y %H:%M UTC") in page.text
    assert "Donations cannot be cancelled" in page.text

    change_form = client.get(f"/pledges/{pledge.id}/change")
    assert change_form.status_code == 200
    sold_out = client.post(
        f"/pledges/{pledge.id}/change", data={"tier": str(campaign.tiers[1].id), "quantity": "1"}
    )
    assert sold_out.status_code == 422 and "sold out" in sold_out.text
    changed = client.post(
        f"/pledges/{pledge.id}/change", data={"tier": str(campaign.tiers[0].id), "quantity": "2"}
    )
    assert changed.status_code == 302
    db.session.refresh(pledge)
    assert pledge.quantity == 2 and pledge.amount == cny(200)

    cancelled = client.post(f"/pledges/{pledge.id}/cancel")
    assert cancelled.status_code == 303
    db.session.refresh(pledge)
    db.session.refresh(campaign)
    assert pledge.state is PledgeState.CANCELLED and campaign.raised_amount == 0


def test_someone_elses_pledge_is_not_found(app, client):
    campaign = make_campaign(tiers=TIERS)
    pledge = place_pledge(make_backer(), campaign.id, PledgeRequest(tier_id=campaign.tiers[0].id))
    login(client, make_backer())
    assert client.post(f"/pledges/{pledge.id}/cancel").status_code == 404
    assert client.get(f"/pledges/{pledge.id}/change").status_code == 404
    db.session.refresh(pledge)
    assert pledge.state is PledgeState.ACTIVE


def test_cancel_after_the_deadline_shows_why(app, client):
    campaign = make_campaign(CampaignKind.EQUITY)
    investor = make_investor(accredited=True)
    pledge = place_pledge(investor, campaign.id, PledgeRequest(shares=10, risk_acknowledged=True))
    campaign.end_at = campaign.start_at + timedelta(days=1, hours=1)  # the 48-hour cutoff has passed
    db.session.commit()
    login(client, investor)
    page = client.get("/my/pledges")
    assert f"/pledges/{pledge.id}/cancel" not in page.text and "Could be cancelled until" in page.text
    response = client.post(f"/pledges/{pledge.id}/cancel", follow_redirects=True)
    assert "could be cancelled until" in response.text
    db.session.refresh(pledge)
    assert pledge.state is PledgeState.ACTIVE


def test_investor_profile_page(app, client):
    user = make_user()
    login(client, user)
    assert client.get("/account/investor").status_code == 200
    bad = client.post(
        "/account/investor", data={"currency": "USD", "annual_income": "lots", "net_worth": "1"}
    )
    assert bad.status_code == 422 and "is not an amount" in bad.text
    assert db.session.scalar(select(func.count(InvestorProfile.id))) == 0
    saved = client.post(
        "/account/investor", data={"currency": "USD", "annual_income": "60,000", "net_worth": "10,000"}
    )
    assert saved.status_code == 302
    page = client.get("/account/investor")
    assert "USD 3,000.00" in page.text  # 5 % of 60,000
    profile = db.session.scalar(select(InvestorProfile))
    assert (profile.annual_income_amount, profile.accredited) == (6_000_000, False)


def test_dashboard_and_csv_for_the_campaigners_only(app, client):
    owner = make_user()
    org = make_org(owner)
    campaign = make_campaign(CampaignKind.DONATION, org=org)
    named = make_backer(name="=HYPERLINK(evil)")
    shy = make_backer(name="Secret Person")
    place_pledge(named, campaign.id, PledgeRequest(amount=cny(10), message="+1 great"))
    place_pledge(shy, campaign.id, PledgeRequest(amount=cny(20), anonymous=True))

    login(client, make_backer())
    assert client.get(f"/studio/{campaign.id}/dashboard").status_code == 404
    assert client.get(f"/studio/{campaign.id}/backers.csv").status_code == 404

    login(client, owner)
    page = client.get(f"/studio/{campaign.id}/dashboard")
    assert page.status_code == 200
    assert "¥30.00" in page.text and "Anonymous" in page.text and "Secret Person" not in page.text
    export = client.get(f"/studio/{campaign.id}/backers.csv")
    assert export.status_code == 200 and export.mimetype == "text/csv"
    rows = list(csv.DictReader(io.StringIO(export.text)))
    assert [r["name"] for r in rows] == ["'=HYPERLINK(evil)", "Anonymous"]
    assert rows[1]["email"] == "" and rows[0]["message"] == "'+1 great"
    assert [r["amount"] for r in rows] == ["10.00", "20.00"]
    assert "Secret Person" not in export.text and shy.email not in export.text


def test_campaign_page_offers_tiers_when_open(app, client):
    campaign = make_campaign(tiers=TIERS)
    page = client.get(f"/campaigns/{campaign.slug}")
    assert f"/campaigns/{campaign.slug}/back?tier={campaign.tiers[0].id}" in page.text
    assert f"tier={campaign.tiers[1].id}" not in page.text  # sold out: no Select button
    assert "Back this campaign" in page.text


def test_pledge_pages_need_a_login(app, client):
    campaign = make_campaign(tiers=TIERS)
    for url in (f"/campaigns/{campaign.slug}/back", "/my/pledges", "/account/investor"):
        response = client.get(url)
        assert response.status_code == 302 and "/login" in response.headers["Location"]
