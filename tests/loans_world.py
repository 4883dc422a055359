"""Shared set-up for the loan tests: a debt campaign settled through the sandbox (its
lenders charged, fees taken, the rest paid out), its loan opened, and a borrower with a card."""

from __future__ import annotations

from datetime import datetime, timedelta

from crowdfund.accounts.models import Membership, Organisation, User
from crowdfund.campaigns.models import CampaignKind
from crowdfund.extensions import db
from crowdfund.loans import service as loans
from crowdfund.loans.models import Loan
from crowdfund.payments import service as payments
from crowdfund.settlement import service as settlement
from tests.factories import make_user
from tests.factories.payments import add_card
from tests.settlement_world import DAY, campaign_with_pledges, close

__all__ = ["DAY", "borrower_of", "settled_loan"]


def settled_loan(lenders: int = 3, amount: int = 10_000, *, term_months: int = 6, rate_bp: int = 800):
    """A loan opened from a settled debt campaign; (loan, paid-out moment)."""
    campaign, _ = campaign_with_pledges(lenders, kind=CampaignKind.DEBT, amount=amount, goal=lenders * amount)
    campaign.debt_terms.term_months = term_months
    campaign.debt_terms.annual_rate_bp = rate_bp
    db.session.commit()
    org = db.session.get(Organisation, campaign.organisation_id)
    payments.save_sandbox_bank_details(org, bank_name="Bank", account_number="12345678")
    closed = close(campaign)
    settlement.open_settlement(campaign.id, now=closed)
    settlement.process_due_items(now=closed)
    paid_out = closed + 14 * DAY
    assert settlement.finalise_due_settlements(now=paid_out) == 1
    assert loans.open_due_loans(now=paid_out) == 1
    return loans.loan_for_campaign(campaign.id), paid_out


def borrower_of(loan: Loan, card: bool = True) -> User:
    """A member of the borrowing organisation (with a usable sandbox card)."""
    user = make_user()
    db.session.add(Membership(user_id=user.id, organisation_id=loan.organisation_id, role="owner"))
    db.session.commit()
    if card:
        add_card(user)
    return user


def at(moment: datetime, days: int) -> datetime:
    return moment + timedelta(days=days)
