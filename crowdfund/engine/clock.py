"""The campaign clock: close live campaigns whose time is up.

`close_due_campaigns` closes every live campaign whose end has come, and every equity
campaign that reached its maximum once it has been open for EQUITY_EARLY_CLOSE_DAYS. Each
campaign is closed in its own short transaction under its row lock and re-checked after
the lock is taken, so two `flask campaigns tick` processes running at once close each
campaign exactly once. Pages never rely on the clock having run: `Campaign.is_open_at`
treats a campaign past its end as closed.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from flask import current_app
from sqlalchemy import and_, or_, select

from crowdfund.campaigns.models import Campaign, CampaignKind, CampaignState, EquityTerms, FundingModel
from crowdfund.campaigns.service import transition
from crowdfund.database import begin_write
from crowdfund.database import retry_on_lock
from crowdfund.extensions import db
from crowdfund.models_base import utcnow


def succeeded(campaign: Campaign) -> bool:
    """Whether the campaign met its kind's target when it closes."""
    if campaign.kind is CampaignKind.EQUITY:
        return campaign.raised_amount >= campaign.equity_terms.min_target_amount
    if campaign.kind is CampaignKind.DEBT:
        return campaign.raised_amount >= campaign.debt_terms.min_amount
    if campaign.kind is CampaignKind.DONATION or campaign.funding_model is FundingModel.KEEP_IT_ALL:
        return campaign.raised_amount > 0
    return campaign.raised_amount >= campaign.goal_amount


def _early_close_due(campaign: Campaign, now: datetime) -> bool:
    days = current_app.config["EQUITY_EARLY_CLOSE_DAYS"]
    return (
        campaign.kind is CampaignKind.EQUITY
        and campaign.equity_terms is not None
        and campaign.raised_amount >= campaign.equity_terms.max_target_amount
        and now >= campaign.start_at + timedelta(days=days)
    )


def close_reason(campaign: Campaign, now: datetime) -> str | None:
    """Why the campaign must close now, or None while it stays open."""
    if campaign.state is not CampaignState.LIVE:
        return None
    if campaign.end_at <= now:
        return "The deadline passed."
    if _early_close_due(campaign, now):
        return "The maximum was reached after the minimum period; closed early."
    return None


def _due_ids(now: datetime) -> list[int]:
    early_start = now - timedelta(days=current_app.config["EQUITY_EARLY_CLOSE_DAYS"])
    query = (
        select(Campaign.id)
        .outerjoin(EquityTerms, EquityTerms.campaign_id == Campaign.id)
        .where(
            Campaign.state == CampaignState.LIVE,
            or_(
                Campaign.end_at <= now,
                and_(
                    Campaign.kind == CampaignKind.EQUITY,
                    Campaign.start_at <= early_start,
                    Campaign.raised_amount >= EquityTerms.max_target_amount,
                ),
            ),
        )
        .order_by(Campaign.id)
    )
    ids = list(db.session.scalars(query))
    db.session.rollback()
    return ids


@retry_on_lock
def close_campaign_if_due(campaign_id: int, now: datetime) -> CampaignState | None:
    """Close one campaign if it is due (under its lock); returns the new state or None."""
    try:
        begin_write()
        campaign = db.session.execute(
            select(Campaign)
            .where(Campaign.id == campaign_id)
            .with_for_update()
            .execution_options(populate_existing=True)
        ).scalar_one_or_none()
        reason = close_reason(campaign, now) if campaign is not None else None
        if reason is None:
            db.session.commit()
            return None
        target = CampaignState.SUCCEEDED if succeeded(campaign) else CampaignState.FAILED
        transition(campaign, target, None, f"{reason} Raised {campaign.raised} of {campaign.goal}.", now)
        campaign.closed_at = now
        campaign.updated_at = now
        db.session.commit()
        return target
    except BaseException:
        db.session.rollback()
        raise


def close_due_campaigns(now: datetime | None = None) -> int:
    """Close every live campaign that is due; returns how many this call closed."""
    now = now or utcnow()
    return sum(1 for campaign_id in _due_ids(now) if close_campaign_if_due(campaign_id, now) is not None)


def reconcile_donations(now: datetime | None = None) -> int:
    """Tick step: finish donations whose charge was interrupted (see the engine service)."""
    from crowdfund.engine.service import reconcile_pending_donations

    return reconcile_pending_donations(now=now)
