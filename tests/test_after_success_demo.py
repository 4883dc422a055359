"""The demo after success: after `flask demo seed` a settled equity round has issued its shares
(cap table, certificates, Ben holds some), a loan is being repaid with one instalment late
and its late fee, Ben's donations have receipts, a settled patient-aid appeal has paid one
tranche to its verified hospital and shows another in public notice (its invoice for the
family and operators only), each campaign's money trail shows what followed the close, and
the ledger verifies.

The module seeds once (a seed goes through every service); the tests only read.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
from markupsafe import escape
from sqlalchemy import func, select

from crowdfund.campaigns.models import Campaign, CampaignKind, CampaignState
from crowdfund.demo.data import (
    APPEAL_CAMPAIGNER,
    BORROWER,
    HOSPITAL,
    LATE_INSTALMENT,
    LOAN_IN_REPAYMENT,
    PRE_ROUND_SHARES,
    REPAYMENTS,
    SETTLED_APPEAL,
    SETTLED_ROUND,
    TRANCHES,
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
from crowdfund.money import Money
from crowdfund.patient_aid import invoices
from crowdfund.patient_aid import service as aid
from crowdfund.patient_aid.models import Hospital, Tranche, TrancheState
from crowdfund.payments.models import OperationKind, OperationState, PaymentOperation
from crowdfund.payments.sandbox import SandboxPayout
from crowdfund.receipts import service as receipts
from crowdfund.settlement import service as settlement
from crowdfund.settlement.models import SettlementState
from tests.factories import login
from tests.factories.demo import demo_app, demo_campaign, demo_user

BEN = "backer@healthfund.example"
OPERATOR = "operator@healthfund.example"


@pytest.fixture(scope="module")
def app(_schema, tmp_path_factory):
    with demo_app(_schema, tmp_path_factory.mktemp("demo-after-success-uploads"), seed=True) as app:
        yield app


@pytest.fixture
def seeded(app):
    db.session.rollback()
    db.session.expire_all()
    return app


campaign, user = demo_campaign, demo_user


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


# --- the patient-aid appeal -----------------------------------------------------------------
def appeal_tranches() -> tuple[Campaign, Hospital, Tranche, Tranche]:
    """The settled appeal, its hospital, its paid tranche and its tranche in notice."""
    c = campaign(SETTLED_APPEAL)
    h = db.session.scalar(select(Hospital).where(Hospital.licence_number == HOSPITAL.licence_number))
    tranches = list(
        db.session.scalars(select(Tranche).where(Tranche.campaign_id == c.id).order_by(Tranche.id))
    )
    assert [t.request_key for t in tranches] == [spec.key for spec in TRANCHES]
    paid, in_notice = tranches
    return c, h, paid, in_notice


def test_the_appeal_settled_keeping_its_money_for_a_verified_hospital(seeded):
    c, h, _, _ = appeal_tranches()
    s = settlement.settlement_for(c.id)
    assert c.kind is CampaignKind.DONATION and aid.is_patient_aid(c) and c.state is CampaignState.SETTLED
    assert s.state is SettlementState.SETTLED and s.released_amount == 0  # nothing to the family
    assert c.organisation.created_by_id == user(APPEAL_CAMPAIGNER).id
    assert h.is_verified and h.payouts_enabled and h.gateway == "sandbox" and h.account_id
    assert h.verified_by_id == user(OPERATOR).id and h.verified_at > c.closed_at
    assert h.bank_name == HOSPITAL.bank_name and h.last4 == HOSPITAL.account_number[-4:]


def test_one_tranche_was_approved_noticed_and_paid_to_the_hospital_by_the_job(seeded):
    c, h, paid, _ = appeal_tranches()
    spec = TRANCHES[0]
    assert paid.state is TrancheState.PAID and paid.hospital_id == h.id
    assert paid.requested_by_id == user(APPEAL_CAMPAIGNER).id and paid.decided_by_id == user(OPERATOR).id
    total = Money(sum(Money.parse(a, "CNY").amount for _, a in spec.items), "CNY")
    assert paid.amount == paid.invoice_total == total
    assert [(i.description, i.amount.format_plain()) for i in paid.items] == list(spec.items)
    # approved, then 24 hours of public notice, then paid by the job as of the notice's end
    assert paid.notice_ends_at == paid.decided_at + timedelta(hours=24) == paid.paid_at < utcnow()
    assert c.closed_at < paid.requested_at < paid.decided_at
    op = db.session.get(PaymentOperation, paid.payout_operation_id)
    assert (
        op.kind is OperationKind.PAYOUT and op.state is OperationState.SUCCEEDED and op.amount == paid.amount
    )
    payouts = list(db.session.scalars(select(SandboxPayout).where(SandboxPayout.destination == h.account_id)))
    assert [p.amount for p in payouts] == [paid.amount_amount]
    # the ledger: escrow -> the hospital's payable (release), payable -> paid out (payout)
    release = ledger.find_transaction(aid.release_key(paid.id))
    assert release.kind == TransactionKind.RELEASE and release.campaign_id == c.id
    assert ledger.find_transaction(f"payment:{op.id}:payout").kind == TransactionKind.PAYOUT
    assert ledger.balance_owed(currency="CNY", provider_id=h.id) == Money(0, "CNY")
    s = settlement.settlement_for(c.id)
    net = s.collected_amount - s.platform_fee_amount - s.processing_fee_amount
    assert ledger.balance_of_escrow(c.id, c.currency).amount == net - paid.amount_amount > 0


def test_one_tranche_is_in_public_notice_on_the_campaign_page_with_its_report_link(client, seeded):
    c, h, paid, notice = appeal_tranches()
    now = utcnow()
    assert notice.state is TrancheState.IN_NOTICE and notice.decided_by_id == user(OPERATOR).id
    assert notice.decided_at < now < notice.notice_ends_at == notice.decided_at + timedelta(hours=24)
    assert notice.paid_at is None and notice.payout_operation_id is None
    # still in escrow, promised to the hospital: what the appeal holds for new tranches excludes it
    assert aid.held(c) == ledger.balance_of_escrow(c.id, c.currency) - notice.amount
    page = client.get(f"/campaigns/{c.slug}").get_data(as_text=True)
    assert 'id="tranche-notices"' in page
    assert f'id="tranche-{notice.id}"' in page and f'id="tranche-{paid.id}"' in page
    assert notice.amount.format(with_code=True) in page and paid.amount.format(with_code=True) in page
    assert str(escape(h.name)) in page and "Public notice" in page and "Paid to the hospital" in page
    assert f"/tranches/{notice.id}/report" in page and f"/tranches/{paid.id}/report" not in page
    # the public notice names no patient and links no invoice
    full = c.donation_terms.patient_name
    assert full not in page and "/invoice" not in page
    assert client.get(f"/tranches/{notice.id}/report").status_code == 302  # log in to report


def test_the_invoices_are_for_the_family_and_operators_only(client, seeded):
    c, _, paid, notice = appeal_tranches()
    for t in (paid, notice):
        path = invoices.invoice_path(t.invoice_file)
        assert path is not None and path.read_bytes().startswith(b"%PDF-") and "static" not in path.parts
        assert t.invoice_content_type == "application/pdf"
        anonymous = client.get(f"/tranches/{t.id}/invoice")
        assert anonymous.status_code in (302, 404) and not anonymous.data.startswith(b"%PDF")
    login(client, user(BEN))
    assert client.get(f"/tranches/{paid.id}/invoice").status_code == 404
    for email in (APPEAL_CAMPAIGNER, OPERATOR):
        login(client, user(email))
        response = client.get(f"/tranches/{paid.id}/invoice")
        assert response.status_code == 200 and response.mimetype == "application/pdf", email
        assert response.headers["Content-Disposition"].startswith("attachment")
        assert response.data.startswith(b"%PDF-") and b"%%EOF" in response.data[-1024:]


def test_the_appeals_money_trail_shows_the_tranche_paid_to_the_hospital(client, seeded):
    c, _, paid, _ = appeal_tranches()
    body = trail_json(client, c)
    line = body["after_success"]["tranches_paid"]
    assert (line["count"], line["recipients"]) == (1, 1)
    assert line["amount"]["amount"] == paid.amount_amount == body["figures"]["released"]["amount"]
    assert body["figures"]["held_in_escrow"]["amount"] == ledger.balance_of_escrow(c.id, c.currency).amount


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
