"""Equity after success: shares issued when a round settles, the cap table, certificates."""

from __future__ import annotations

import csv
import io

import pytest
from sqlalchemy import func, select

from crowdfund.accounts.models import User
from crowdfund.campaigns.models import CampaignKind
from crowdfund.engine.models import Pledge
from crowdfund.engine.service import PledgeRequest, place_pledge
from crowdfund.equity import service as equity
from crowdfund.equity.models import InvestorNotice, ShareHolding, ShareIssue
from crowdfund.errors import DomainError, ErrorCode, ValidationError
from crowdfund.extensions import db
from crowdfund.ledger.models import LedgerTransaction
from crowdfund.money import Money
from crowdfund.payments import service as payments
from crowdfund.payments.models import PaymentOperation
from crowdfund.payments.sandbox import CardBehaviour
from crowdfund.settlement import service as settlement
from crowdfund.settlement.models import ItemState, SettlementItem, SettlementState
from tests.factories import login, make_user, operator
from tests.factories.engine import make_investor
from tests.settlement_world import DAY, campaign_with_pledges, close, set_behaviour


def _connect_payouts(org_id: int) -> None:
    from crowdfund.accounts.models import Organisation

    payments.save_sandbox_bank_details(
        db.session.get(Organisation, org_id), bank_name="Bank", account_number="12345678"
    )


def settle(campaign) -> None:
    """Close the campaign, charge every pledge, run out the grace period and pay out."""
    _connect_payouts(campaign.organisation_id)
    closed = close(campaign)
    settlement.open_settlement(campaign.id, now=closed)
    settlement.process_due_items(now=closed)
    for days in (8, 15, 16):
        settlement.process_due_items(now=closed + days * DAY)
        settlement.finalise_due_settlements(now=closed + days * DAY)
    s = settlement.settlement_for(campaign.id)
    db.session.refresh(s)
    assert s.state is SettlementState.SETTLED


def test_a_settled_round_issues_whole_shares_once_with_certificates_tied_to_the_charge(app):
    campaign, pledge_ids = campaign_with_pledges(3, kind=CampaignKind.EQUITY, amount=50_000, goal=50_000)
    assert equity.issue_due_shares() == 0  # nothing settled yet
    settle(campaign)

    assert equity.issue_due_shares() == 1
    assert equity.issue_due_shares() == 0  # a second run issues nothing twice
    issue = db.session.scalar(select(ShareIssue).where(ShareIssue.campaign_id == campaign.id))
    assert issue.shares_issued == 150 and issue.holder_count == 3
    holdings = db.session.scalars(select(ShareHolding).order_by(ShareHolding.id)).all()
    assert [h.pledge_id for h in holdings] == pledge_ids
    assert [h.shares for h in holdings] == [50, 50, 50]  # 50,000 / 1,000 per share
    assert [h.certificate_number for h in holdings] == [
        f"EQ-{campaign.id}-00001",
        f"EQ-{campaign.id}-00002",
        f"EQ-{campaign.id}-00003",
    ]
    for h in holdings:
        pledge = db.session.get(Pledge, h.pledge_id)
        tx = db.session.get(LedgerTransaction, h.ledger_transaction_id)
        assert tx.key == f"payment:{pledge.payment_operation_id}:charge"
        assert db.session.get(PaymentOperation, pledge.payment_operation_id).amount_amount == 50_000
    notices = db.session.scalars(select(InvestorNotice).where(InvestorNotice.code == "shares_issued")).all()
    assert len(notices) == 3 and "50 shares" in notices[0].message


def test_the_cap_table_is_of_the_round_until_the_pre_round_shares_are_stated(app):
    campaign, _ = campaign_with_pledges(3, kind=CampaignKind.EQUITY, amount=50_000, goal=50_000)
    settle(campaign)
    equity.issue_due_shares()
    org = campaign.organisation
    table = equity.cap_table(org)
    assert table.pre_round is None and not table.of_whole_company
    assert [r.shares for r in table.rows] == [50, 50, 50]
    assert [r.percent for r in table.rows] == ["33.34%", "33.33%", "33.33%"]  # sums to 100.00
    assert {r.round_title for r in table.rows} == {campaign.title}

    owner = db.session.get(User, org.created_by_id)
    with pytest.raises(ValidationError):
        equity.set_pre_round_shares(owner, org.id, "-5")
    with pytest.raises(DomainError) as err:
        equity.set_pre_round_shares(make_user(), org.id, "850")
    assert err.value.code is ErrorCode.NOT_FOUND
    assert equity.cap_table(org).pre_round is None  # refused: nothing changed

    equity.set_pre_round_shares(owner, org.id, "850")
    table = equity.cap_table(org)
    assert table.of_whole_company and table.total == 1_000
    assert [r.percent for r in table.rows] == ["85.00%", "5.00%", "5.00%", "5.00%"]
    assert sum(r.percent_bp for r in table.rows) == 10_000


def test_cap_table_after_an_oversubscribed_then_trimmed_round_sums_to_the_shares_issued(app):
    from crowdfund.campaigns.models import Campaign

    campaign, pledge_ids = campaign_with_pledges(4, kind=CampaignKind.EQUITY, amount=30_000, goal=60_000)
    campaign.equity_terms.max_target_amount = 120_000  # the 4 commitments fill the round to its cap
    db.session.commit()
    latecomer = make_investor(currency="CNY", accredited=True)
    with pytest.raises(DomainError):  # oversubscribed: no room left
        place_pledge(
            latecomer, campaign.id, PledgeRequest(amount=Money(30_000, "CNY"), risk_acknowledged=True)
        )
    assert db.session.get(Campaign, campaign.id).raised_amount == 120_000
    # trimmed: one investor's card is lost and their commitment is dropped after the grace period
    set_behaviour(db.session.get(Pledge, pledge_ids[1]).user_id, CardBehaviour.LOST_CARD)
    settle(campaign)
    dropped = db.session.get(SettlementItem, settlement.item_for_pledge(pledge_ids[1]).id)
    assert dropped.state is ItemState.DROPPED

    equity.issue_due_shares()
    issue = db.session.scalar(select(ShareIssue).where(ShareIssue.campaign_id == campaign.id))
    table = equity.cap_table(campaign.organisation)
    assert issue.shares_issued == 90  # 3 x 30,000 / 1,000
    assert sum(r.shares for r in table.rows) == issue.shares_issued == table.total
    assert db.session.scalar(select(func.sum(ShareHolding.shares))) == issue.shares_issued
    assert sum(r.percent_bp for r in table.rows) == 10_000
    assert db.session.scalar(select(ShareHolding).where(ShareHolding.pledge_id == pledge_ids[1])) is None


# --- pages ---------------------------------------------------------------------------------------


def test_cap_table_page_and_csv_for_members_and_operators_only(app, client):
    campaign, _ = campaign_with_pledges(2, kind=CampaignKind.EQUITY, amount=50_000, goal=50_000)
    settle(campaign)
    equity.issue_due_shares()
    org = campaign.organisation
    url = f"/organisations/{org.id}/cap-table"

    assert client.get(url).status_code in (302, 401)
    login(client, make_user())
    assert client.get(url).status_code == 404
    assert client.get(url + ".csv").status_code == 404

    login(client, operator())
    page = client.get(url)
    assert page.status_code == 200 and "Only the shares issued on HealthFund" in page.get_data(as_text=True)

    login(client, db.session.get(User, org.created_by_id))
    answer = client.get(url + ".csv")
    assert answer.status_code == 200 and answer.mimetype == "text/csv"
    rows = list(csv.reader(io.StringIO(answer.get_data(as_text=True))))
    assert rows[0][:3] == ["holder", "shares", "percent of shares issued on HealthFund"]
    assert [r[1] for r in rows[1:-1]] == ["50", "50"] and rows[-1][:2] == ["total", "100"]

    assert client.post(url, data={"shares": "not a number"}).status_code == 422
    answer = client.post(url, data={"shares": "900"})
    assert answer.status_code == 303
    assert "percent of the company" in client.get(url + ".csv").get_data(as_text=True)


def test_a_certificate_is_its_holders_pdf_and_nobody_elses(app, client):
    campaign, pledge_ids = campaign_with_pledges(2, kind=CampaignKind.EQUITY, amount=50_000, goal=50_000)
    settle(campaign)
    equity.issue_due_shares()
    holding = db.session.scalar(select(ShareHolding).where(ShareHolding.pledge_id == pledge_ids[0]))
    other = db.session.scalar(select(ShareHolding).where(ShareHolding.pledge_id == pledge_ids[1]))
    holder = db.session.get(Pledge, pledge_ids[0]).user

    login(client, holder)
    answer = client.get(f"/my/certificates/{holding.id}.pdf")
    assert answer.status_code == 200 and answer.mimetype == "application/pdf"
    assert answer.headers["Content-Disposition"].startswith("attachment;")
    assert answer.data.startswith(b"%PDF")
    assert client.get(f"/my/certificates/{other.id}.pdf").status_code == 404
    assert client.get("/my/certificates/999999.pdf").status_code == 404
    page = client.get("/my/pledges").get_data(as_text=True)
    assert holding.certificate_number in page and f"/my/certificates/{holding.id}.pdf" in page
    assert other.certificate_number not in page

    login(client, operator())
    assert client.get(f"/my/certificates/{holding.id}.pdf").status_code == 404
