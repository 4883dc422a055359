"""Patient aid's lines on the public money trail: tranches paid to hospitals, and the surplus
returned to the donors.

Listed by `create_app` in ``app.extensions[ledger.service.TRAIL_SECTIONS]`` (the ledger
cannot import patient aid). A tranche counted here was released from escrow to the
hospital's payable (kind ``release``) and paid out (kind ``payout``); a surplus part was
refunded from escrow (kind ``refund``).
"""

from __future__ import annotations

from sqlalchemy import func, select

from crowdfund.campaigns.models import Campaign
from crowdfund.extensions import db
from crowdfund.ledger.service import TrailLine
from crowdfund.money import Money
from crowdfund.patient_aid.models import SurplusRefund, SurplusReturn, Tranche, TrancheState
from crowdfund.patient_aid.service import is_patient_aid


def trail_lines(campaign: Campaign) -> list[TrailLine]:
    """Tranches paid to hospitals and the surplus refunded; nothing for other campaigns."""
    if not is_patient_aid(campaign):
        return []
    count, total, hospitals = db.session.execute(
        select(
            func.count(Tranche.id),
            func.coalesce(func.sum(Tranche.amount_amount), 0),
            func.count(func.distinct(Tranche.hospital_id)),
        ).where(Tranche.campaign_id == campaign.id, Tranche.state == TrancheState.PAID)
    ).one()
    lines = [
        TrailLine(
            name="tranches_paid",
            label="Paid to hospitals in tranches against their invoices",
            count=int(count),
            unit="tranches",
            amount=Money(int(total or 0), campaign.currency),
            recipients=int(hospitals),
            recipients_unit="hospitals",
        )
    ]
    parts, returned = db.session.execute(
        select(func.count(SurplusRefund.id), func.coalesce(func.sum(SurplusRefund.amount_amount), 0))
        .join(SurplusReturn, SurplusReturn.id == SurplusRefund.surplus_return_id)
        .where(SurplusReturn.campaign_id == campaign.id, SurplusRefund.refunded_at.is_not(None))
    ).one()
    if parts:
        lines.append(
            TrailLine(
                name="surplus_returned",
                label="Surplus returned to the donors pro rata",
                count=int(parts),
                unit="refunds",
                amount=Money(int(returned or 0), campaign.currency),
                recipients=int(parts),
                recipients_unit="donations",
            )
        )
    return lines
