"""The demo after success: after `flask demo seed` a settled equity round has issued its shares
(cap table, certificates, Ben holds some), a loan is being repaid with one instalment late
and its late fee, Ben's donations have receipts, each campaign's money trail shows what
followed the close, and the ledger verifies.

The module seeds once (a seed goes through every service); the tests only read.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
from flask import g
from sqlalchemy import func, select

from crowdfund import create_app
from crowdfund.accounts.models import User
from crowdfund.campaigns.models import Campaign, CampaignKind, CampaignState
from crowdfund.demo.data import (
    BORROWER,
    CAMPAIGNS,
    LATE_INSTALMENT,
    LOAN_IN_REPAYMENT,
    PRE_ROUND_SHARES,
    REPAYMENTS,
    SETTLED_ROUND,
)
from crowdfund.engine.models import Pledge, PledgeState
from crowdfund.equity import service as equity
from crowdfund.equity.models import ShareHolding, ShareIssue
from crowdfund.extensions import db
from crowdfund.ledger import service as ledger
from crowdfund.ledger.models import LedgerTransaction, TransactionKind
from crowdfund.loans import service as loans
from crowdfund.loans.models import LoanLender, LoanState, Repayment, RepaymentMethod, RepaymentState
from crowdfund.models_base import utcnow
from crowdfund.receipts import service as receipts
from crowdfund.settlement import service as settlement
from crowdfund.settlement.models import SettlementState
from tests.conftest import _truncate_all
from tests.factories import login
from tests.test_demo_seed import demo_config

BEN = "backer@healthfund.example"


@pytest.fixture(scope="module")
def app(_schema, tmp_path_factory):
    app = create_app(demo_config(_schema, tmp_path_factory.mktemp("demo-after-success-uploads")))

    @app.before_request
    def _fresh_request_state():
        g.pop("_login_user", None)

    with app.app_context():
        result = app.test_cli_runner().invoke(args=["demo", "seed"])
        assert result.exit_code == 0 and "skipped" not in result.output, result.output
        yield app
        db.session.remove()
        _truncate_all()
        db.engine.dispose()


@pytest.fixture
def seeded(app):
    db.session.rollback()
    db.session.expire_all()
    return app


def campaign(key: str) -> Campaign:
    spec = next(c for c in CAMPAIGNS if c.key == key)
    return db.session.scalar(select(Campaign).where(Campaign.title == spec.title))


def user(email: str) -> User:
    return db.session.scalar(select(User).where(User.email == email))


def trail_json(client, c: Campaign) -> dict:
    response = client.get(f"/campaigns/{c.slug}/money-trail.json")
    assert response.status_code == 200
    return response.get_json()


# --- the settled equity round ---------------------------------------------------------------
def test_the_equity_round_settled_and_issued_its_shares_once_paid_out(seeded):
    c = campaign(SETTLED_ROUND)
    s = settlement.settlement_for(c.id)
    assert c.kind is CampaignKind.EQUITY and c.state is CampaignState.SETTLED
    assert s.state is SettlementState.SETTLED and s.paid_out_amount > 0
    issue = db.session.scalar(select(ShareIssue).where(ShareIssue.campaign_id == c.id))
    assert issue is not None and issue.issued_at == c.end_at + timedelta(days=14) == s.paid_out_at
    price = c.equity_terms.price_per_share_amount
    charged = list(
        db.session.scalars(
            select(Pledge).where(Pledge.campaign_id == c.id, Pledge.state == PledgeState.CHARGED)
        )
    )
    assert issue.shares_issued == sum(p.amount_amount // price for p in charged) > 0
    assert issue.holder_count == len({p.user_id for p in charged}) >= 5


def test_the_cap_table_sums_to_the_shares_issued_and_states_the_pre_round_shares(seeded):
    c = campaign(SETTLED_ROUND)
    issue = db.session.scalar(select(ShareIssue).where(ShareIssue.campaign_id == c.id))
    table = equity.cap_table(c.organisation)
    round_rows = [r for r in table.rows if r.round_id == c.id]
    assert sum(r.shares for r in round_rows) == table.issued == issue.shares_issued
    assert table.pre_round == PRE_ROUND_SHARES["heartline"] and table.total == table.pre_round + table.issued
    assert sum(r.percent_bp for r in table.rows) == 10_000
    assert "Ben Carter" in {r.holder for r in round_rows}


def test_ben_holds_shares_and_his_certificate_is_on_my_pledges(client, seeded):
    c = campaign(SETTLED_ROUND)
    ben = user(BEN)
    holding = db.session.scalar(
        select(ShareHolding).where(ShareHolding.campaign_id == c.id, ShareHolding.user_id == ben.id)
    )
    assert holding is not None and holding.shares == 1_000 and holding.ledger_transaction_id is not None
    charge = db.session.get(LedgerTransaction, holding.ledger_transaction_id)
    assert charge.kind == TransactionKind.CHARGE and charge.campaign_id == c.id
    login(client, ben)
    page = client.get("/my/pledges").get_data(as_text=True)
    assert f"Certificate {holding.certificate_number}" in page
    pdf = client.get(f"/my/certificates/{holding.id}.pdf")
    assert pdf.status_code == 200 and pdf.mimetype == "application/pdf" and pdf.data.startswith(b"%PDF")
    other = db.session.scalar(
        select(ShareHolding).where(ShareHolding.campaign_id == c.id, ShareHolding.user_id != ben.id)
    )
    assert client.get(f"/my/certificates/{other.id}.pdf").status_code == 404


def test_the_organisations_members_see_the_cap_table(client, seeded):
    c = campaign(SETTLED_ROUND)
    login(client, user("campaigner@healthfund.example"))
    page = client.get(f"/organisations/{c.organisation_id}/cap-table").get_data(as_text=True)
    assert "Ben Carter" in page and c.title in page
    login(client, user(BEN))
    assert client.get(f"/organisations/{c.organisation_id}/cap-table").status_code == 404


# --- the loan in repayment ------------------------------------------------------------------
def test_the_loan_is_being_repaid_with_one_instalment_late_and_its_late_fee(seeded):
    c = campaign(LOAN_IN_REPAYMENT)
    loan = loans.loan_for_campaign(c.id)
    assert c.state is CampaignState.SETTLED and loan is not None and loan.state is LoanState.REPAYING
    assert loan.principal_amount == settlement.settlement_for(c.id).collected_amount
    today = utcnow().date()
    paid = [i for i in loan.instalments if i.paid_at is not None]
    late = [i for i in loan.instalments if loans.instalment_is_late(i, today)]
    assert [i.number for i in paid] == [r.instalment for r in REPAYMENTS]
    assert [i.number for i in late] == [LATE_INSTALMENT]
    (inst,) = late
    assert inst.fee_amount == loans.late_fee(inst) > 0 and inst.late_fee_at is not None
    assert inst.late_fee_at.date() > inst.due_on + timedelta(days=15)
    assert inst.outstanding_amount == inst.total_amount == inst.scheduled.amount + inst.fee_amount
    assert all(i.due_on > today for i in loan.instalments if i.number > LATE_INSTALMENT)
    record = loans.repayment_record(c.organisation_id)
    assert (record.on_time, record.late, record.defaulted) == (len(REPAYMENTS), 1, 0)


def test_the_repayments_came_by_card_and_bank_transfer_and_were_split_among_the_lenders(seeded):
    c = campaign(LOAN_IN_REPAYMENT)
    loan = loans.loan_for_campaign(c.id)
    repayments = sorted(loans.repayments_of(loan.id), key=lambda r: r.number)
    assert [r.method for r in repayments] == [RepaymentMethod.CARD, RepaymentMethod.BANK_TRANSFER]
    assert all(r.state is RepaymentState.SPLIT for r in repayments)
    assert all(r.recorded_by_id == user(BORROWER).id for r in repayments)
    assert loan.repaid_amount == sum(r.amount_amount for r in repayments)
    received = db.session.scalar(
        select(func.sum(LoanLender.received_amount)).where(LoanLender.loan_id == loan.id)
    )
    assert received == loan.repaid_amount
    # Every unit received went on to a lender's wallet: nothing is left in the escrow.
    assert ledger.balance_of_escrow(c.id, c.currency).amount == 0


def test_ben_sees_his_loan_share_with_the_repayments_received(client, seeded):
    c = campaign(LOAN_IN_REPAYMENT)
    loan = loans.loan_for_campaign(c.id)
    login(client, user(BEN))
    page = client.get("/my/pledges").get_data(as_text=True)
    assert f"/loans/{loan.id}/my-share" in page
    share = client.get(f"/loans/{loan.id}/my-share")
    assert share.status_code == 200
    login(client, user(BORROWER))
    page = client.get(f"/loans/{loan.id}").get_data(as_text=True)
    assert "Late" in page or "late" in page


# --- donation receipts ----------------------------------------------------------------------
def test_ben_has_a_donation_receipt_page_and_pdf(client, seeded):
    ben = user(BEN)
    gifts = list(
        db.session.scalars(
            select(Pledge).where(
                Pledge.user_id == ben.id,
                Pledge.kind == CampaignKind.DONATION,
                Pledge.state == PledgeState.CHARGED,
            )
        )
    )
    assert len(gifts) >= 2
    login(client, ben)
    my = client.get("/my/pledges").get_data(as_text=True)
    for gift in gifts:
        receipt = receipts.receipt_for(ben, gift.id)
        assert receipt.donor == "Ben Carter" and receipt.transaction_hash
        assert f"Receipt {receipt.number}" in my
        page = client.get(f"/my/receipts/{gift.id}")
        assert page.status_code == 200
        assert receipt.number in page.get_data(as_text=True) and "Ben Carter" in page.get_data(as_text=True)
    pdf = client.get(f"/my/receipts/{gifts[0].id}.pdf")
    assert pdf.status_code == 200 and pdf.mimetype == "application/pdf"
    login(client, user("backer1@healthfund.example"))
    assert client.get(f"/my/receipts/{gifts[0].id}").status_code == 404


# --- the money trail and the ledger ---------------------------------------------------------
def test_the_rounds_money_trail_shows_the_shares_issued_tied_to_the_charges(client, seeded):
    c = campaign(SETTLED_ROUND)
    issue = db.session.scalar(select(ShareIssue).where(ShareIssue.campaign_id == c.id))
    body = trail_json(client, c)
    shares = body["after_success"]["shares_issued"]
    assert shares["count"] == issue.shares_issued and shares["recipients"] == issue.holder_count
    assert shares["amount"]["amount"] == issue.shares_issued * issue.price_amount
    # The money for the shares is exactly what the ledger collected into the round's escrow.
    assert shares["amount"]["amount"] == body["figures"]["money_in"]["amount"]
    paid_for = db.session.scalar(
        select(func.sum(ShareHolding.paid_amount)).where(ShareHolding.campaign_id == c.id)
    )
    assert paid_for == shares["amount"]["amount"]
    page = client.get(f"/campaigns/{c.slug}/money-trail").get_data(as_text=True)
    assert f'data-after-success="shares_issued">{issue.shares_issued:,}' in page


def test_the_loans_money_trail_shows_repayments_received_and_split_to_lenders(client, seeded):
    c = campaign(LOAN_IN_REPAYMENT)
    loan = loans.loan_for_campaign(c.id)
    s = settlement.settlement_for(c.id)
    body = trail_json(client, c)
    figures = {name: value["amount"] for name, value in body["figures"].items()}
    assert figures["repaid_to_lenders"] == loan.repaid_amount > 0
    assert figures["money_in"] == s.collected_amount + loan.repaid_amount
    assert figures["corrections"] == 0 == figures["held_in_escrow"]
    received = body["after_success"]["repayments_received"]
    assert received["count"] == len(REPAYMENTS) and received["amount"]["amount"] == loan.repaid_amount
    by_kind = {row["kind"]: row for row in body["movements"]}
    assert by_kind["repayment"]["transactions"] == len(REPAYMENTS)
    assert by_kind["repayment"]["amount"]["amount"] == loan.repaid_amount
    page = client.get(f"/campaigns/{c.slug}/money-trail").get_data(as_text=True)
    assert f'data-figure="repaid_to_lenders">{loan.repaid.format()}<' in page


def test_every_money_trail_adds_up_to_its_escrow(client, seeded):
    for c in db.session.scalars(select(Campaign).where(Campaign.state != CampaignState.DRAFT)):
        if not c.is_public:
            continue
        body = trail_json(client, c)
        f = {name: value["amount"] for name, value in body["figures"].items()}
        other = sum(row["net"]["amount"] for row in body["other_escrow_movements"])
        assert (
            f["money_in"]
            - f["refunded"]
            - f["platform_fee"]
            - f["processing_fee"]
            - f["released"]
            + f["recovered"]
            - f["repaid_to_lenders"]
            + other
            + f["corrections"]
            == f["held_in_escrow"]
            == ledger.balance_of_escrow(c.id, c.currency).amount
        ), c.slug
        assert f["corrections"] == 0, c.slug
        txns = db.session.scalar(
            select(func.count()).select_from(LedgerTransaction).where(LedgerTransaction.campaign_id == c.id)
        )
        assert sum(row["transactions"] for row in body["movements"]) == txns, c.slug


def test_the_ledger_verifies_after_the_seed(seeded):
    report = ledger.verify_ledger()
    assert report.ok, report.problems
    result = seeded.test_cli_runner().invoke(args=["ledger", "verify"])
    assert result.exit_code == 0 and "OK:" in result.output, result.output
    assert db.session.scalar(select(func.count()).select_from(Repayment)) == len(REPAYMENTS)
