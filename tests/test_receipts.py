"""Donation receipts (page and PDF, the donor's own) and donor messages on the campaign page."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from crowdfund.campaigns.models import CampaignKind
from crowdfund.engine.models import PledgeState
from crowdfund.engine.service import PledgeRequest, place_pledge
from crowdfund.errors import NotFound
from crowdfund.extensions import db
from crowdfund.ledger.models import LedgerTransaction
from crowdfund.money import Money
from crowdfund.receipts import service as receipts
from crowdfund.receipts.models import HiddenDonorMessage
from tests.factories import login, make_campaign, make_user, operator
from tests.factories.engine import make_backer


def donate(campaign, donor, amount=5_000, message=None, anonymous=False):
    req = PledgeRequest(amount=Money(amount, "CNY"), message=message, anonymous=anonymous)
    pledge = place_pledge(donor, campaign.id, req)
    assert pledge.state is PledgeState.CHARGED
    return pledge


def owner_of(campaign):
    from crowdfund.accounts.models import User

    return db.session.get(User, campaign.organisation.created_by_id)


def test_a_receipt_names_the_donor_even_when_anonymous_and_ties_to_the_charge(app):
    campaign = make_campaign(CampaignKind.DONATION)
    donor = make_backer(name="Mei Chen")
    pledge = donate(campaign, donor, 12_345, message="Get well soon", anonymous=True)
    receipt = receipts.receipt_for(donor, pledge.id)
    tx = db.session.scalar(
        select(LedgerTransaction).where(
            LedgerTransaction.key == f"payment:{pledge.payment_operation_id}:charge"
        )
    )
    assert receipt.number == f"D-{pledge.id:08d}"
    assert receipt.donor == "Mei Chen" and receipt.anonymous
    assert receipt.amount == Money(12_345, "CNY") and receipt.campaign_title == campaign.title
    assert (receipt.transaction_key, receipt.transaction_hash) == (tx.key, tx.hash)
    for someone in (make_user(), operator(), None):
        with pytest.raises(NotFound):
            receipts.receipt_for(someone, pledge.id)
    with pytest.raises(NotFound):
        receipts.receipt_for(donor, 999_999)


def test_receipt_page_and_pdf_for_the_donor_only(app, client):
    campaign = make_campaign(CampaignKind.DONATION)
    donor = make_backer(name="Mei Chen")
    pledge = donate(campaign, donor, anonymous=True)
    login(client, donor)
    page = client.get(f"/my/receipts/{pledge.id}")
    text = page.get_data(as_text=True)
    assert page.status_code == 200 and "Mei Chen" in text and f"D-{pledge.id:08d}" in text
    pdf = client.get(f"/my/receipts/{pledge.id}.pdf")
    assert pdf.status_code == 200 and pdf.mimetype == "application/pdf" and pdf.data.startswith(b"%PDF")
    assert pdf.headers["Content-Disposition"].startswith("attachment;")
    assert f"/my/receipts/{pledge.id}" in client.get("/my/pledges").get_data(as_text=True)

    login(client, make_user())
    assert client.get(f"/my/receipts/{pledge.id}").status_code == 404
    assert client.get(f"/my/receipts/{pledge.id}.pdf").status_code == 404


def test_messages_show_on_the_campaign_page_anonymous_ones_without_a_name(app, client):
    campaign = make_campaign(CampaignKind.DONATION, slug="messages")
    donate(campaign, make_backer(name="Mei Chen"), message="Stay strong!")
    donate(campaign, make_backer(name="Secret Person"), message="From a friend", anonymous=True)
    donate(campaign, make_backer(name="Quiet Giver"))  # no message
    page = client.get("/campaigns/messages").get_data(as_text=True)
    assert "Stay strong!" in page and "Mei C." in page and "Mei Chen" not in page
    assert "From a friend" in page and "Secret Person" not in page and "Anonymous" in page
    assert "Quiet Giver" not in page


def test_the_campaigner_hides_a_message_and_it_is_recorded(app, client):
    campaign = make_campaign(CampaignKind.DONATION, slug="moderated")
    rude = donate(campaign, make_backer(), message="Something rude")
    donate(campaign, make_backer(), message="Kind words")
    url = f"/studio/{campaign.id}/messages"

    login(client, make_user())  # not a member
    assert client.get(url).status_code == 404
    assert client.post(f"{url}/{rude.id}/hide").status_code == 404
    assert db.session.get(HiddenDonorMessage, rude.id) is None

    owner = owner_of(campaign)
    login(client, owner)
    assert "Something rude" in client.get(url).get_data(as_text=True)
    assert client.post(f"{url}/{rude.id}/hide").status_code == 303
    row = db.session.get(HiddenDonorMessage, rude.id)
    assert row.hidden and row.hidden_by_id == owner.id and row.hidden_at is not None
    page = client.get("/campaigns/moderated").get_data(as_text=True)
    assert "Something rude" not in page and "Kind words" in page

    other = make_campaign(CampaignKind.DONATION)
    assert client.post(f"/studio/{other.id}/messages/{rude.id}/hide").status_code == 404  # not its campaign

    assert client.post(f"{url}/{rude.id}/show").status_code == 303
    db.session.expire_all()
    row = db.session.get(HiddenDonorMessage, rude.id)
    assert not row.hidden and row.shown_again_by_id == owner.id
    assert "Something rude" in client.get("/campaigns/moderated").get_data(as_text=True)


def test_the_campaign_page_reads_the_messages_in_one_bounded_query(app, client):
    from tests.test_public_queries import _get

    found = []
    for n in (1, 12):
        campaign = make_campaign(CampaignKind.DONATION, slug=f"with-{n}-messages")
        for i in range(n):
            donate(campaign, make_backer(), message=f"Message {i}")
        found.append(len(_get(client, f"/campaigns/{campaign.slug}")))
        assert client.get(f"/campaigns/{campaign.slug}").get_data(as_text=True).count("Message ") >= n
    assert found[0] == found[1] == 3, f"campaign page with messages: {found} statements"
