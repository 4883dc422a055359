"""Loans' line on the public money trail: the borrower's repayments received and split.

Listed by `create_app` in ``app.extensions[ledger.service.TRAIL_SECTIONS]`` (the ledger
cannot import loans). Each repayment counted here was split among the lenders in one
ledger transaction (kind ``repayment``), so the amount equals the trail's
``repaid_to_lenders`` figure; a reversed repayment is counted in neither.
"""

from __future__ import annotations

from sqlalchemy import func, select

from crowdfund.campaigns.models import Campaign, CampaignKind
from crowdfund.extensions import db
from crowdfund.ledger.service import TrailLine
from crowdfund.loans.models import Loan, Repayment, RepaymentState
from crowdfund.money import Money


def trail_lines(campaign: Campaign) -> list[TrailLine]:
    """Repayments received and split among the lenders; nothing before the loan is open."""
    if campaign.kind is not CampaignKind.DEBT:
        return []
    loan = db.session.scalar(select(Loan).where(Loan.campaign_id == campaign.id))
    if loan is None:
        return []
    count, total = db.session.execute(
        select(func.count(Repayment.id), func.coalesce(func.sum(Repayment.amount_amount), 0)).where(
            Repayment.loan_id == loan.id, Repayment.state == RepaymentState.SPLIT
        )
    ).one()
    return [
        TrailLine(
            name="repayments_received",
            label="Repayments received from the borrower and split among the lenders",
            count=int(count),
            unit="repayments",
            amount=Money(int(total or 0), loan.currency),
            recipients=loan.lender_count,
            recipients_unit="lenders",
        )
    ]
