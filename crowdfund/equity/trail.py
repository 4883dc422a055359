"""Equity's line on the public money trail: the shares a settled round issued.

Listed by `create_app` in ``app.extensions[ledger.service.TRAIL_SECTIONS]`` (the ledger
cannot import equity). The amount is what the holdings paid for their shares (shares ×
price), each holding tied to the ledger transaction of its charge.
"""

from __future__ import annotations

from sqlalchemy import func, select

from crowdfund.campaigns.models import Campaign, CampaignKind
from crowdfund.equity.models import ShareHolding, ShareIssue
from crowdfund.extensions import db
from crowdfund.ledger.service import TrailLine
from crowdfund.money import Money


def trail_lines(campaign: Campaign) -> list[TrailLine]:
    """Shares issued (count, what they were paid, shareholders); nothing before the issue."""
    if campaign.kind is not CampaignKind.EQUITY:
        return []
    issue = db.session.scalar(select(ShareIssue).where(ShareIssue.campaign_id == campaign.id))
    if issue is None:
        return []
    paid = db.session.scalar(
        select(func.coalesce(func.sum(ShareHolding.paid_amount), 0)).where(ShareHolding.issue_id == issue.id)
    )
    return [
        TrailLine(
            name="shares_issued",
            label="Shares issued to investors",
            count=issue.shares_issued,
            unit="shares",
            amount=Money(int(paid or 0), issue.currency),
            recipients=issue.holder_count,
            recipients_unit="shareholders",
        )
    ]
