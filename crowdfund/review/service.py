"""Operator review of submitted campaigns: approve, request changes, reject.

Each decision is one unit of work: it locks the campaign, moves it through the lifecycle
(`transition`) and records a `CampaignEvent` with the operator and their comment.
Approving a campaign whose start has already come puts it live at once; otherwise
`launch_due_campaigns` does it on the day. An operator never reviews a campaign of an
organisation they belong to.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select

from crowdfund.accounts.models import User
from crowdfund.campaigns.access import is_member, lock_campaign
from crowdfund.campaigns.lifecycle import check_comment, launch, transition
from crowdfund.campaigns.models import Campaign, CampaignState, EventCode
from crowdfund.database import unit_of_work
from crowdfund.errors import Conflict, ErrorCode, Forbidden
from crowdfund.extensions import db
from crowdfund.models_base import utcnow


def review_queue() -> list[Campaign]:
    """Campaigns waiting for review, the longest-waiting first."""
    return list(
        db.session.scalars(
            select(Campaign)
            .where(Campaign.state == CampaignState.SUBMITTED)
            .order_by(Campaign.submitted_at, Campaign.id)
        )
    )


def _for_review(campaign: Campaign, operator: User) -> Campaign:
    """Lock the campaign and check `operator` may decide on it now (inside a unit of work)."""
    if not getattr(operator, "is_operator", False):
        raise Forbidden("Only operators review campaigns.", code=ErrorCode.FORBIDDEN)
    campaign = lock_campaign(campaign.id)
    if is_member(operator, campaign.organisation_id):
        raise Forbidden(
            "You belong to this campaign's organisation; another operator must review it.",
            code=ErrorCode.FORBIDDEN,
        )
    if campaign.state is not CampaignState.SUBMITTED:
        raise Conflict(
            f"This campaign is {campaign.state.label.lower()}, not waiting for review.",
            code=ErrorCode.NOT_SUBMITTED,
        )
    return campaign


def approve(campaign: Campaign, operator: User, comment: str = "", now: datetime | None = None) -> Campaign:
    """Approve a submitted campaign; it goes live at once if its start has come."""
    now = now or utcnow()
    comment = check_comment(comment, required=False, field="comment", what="a comment")
    with unit_of_work():
        campaign = _for_review(campaign, operator)
        if campaign.end_at <= now:
            raise Conflict(
                "This campaign's end date has passed: request changes so the campaigner can pick new dates.",
                code=ErrorCode.END_PASSED,
            )
        transition(campaign, CampaignState.APPROVED, operator, comment, now)
        if campaign.start_at <= now:
            launch(campaign, operator, now, EventCode.LAUNCHED_ON_APPROVAL)
    return campaign


def request_changes(
    campaign: Campaign, operator: User, comment: str, now: datetime | None = None
) -> Campaign:
    """Send a submitted campaign back to its campaigner with what to change (required)."""
    now = now or utcnow()
    comment = check_comment(comment, required=True, field="comment", what="what needs to change")
    with unit_of_work():
        campaign = _for_review(campaign, operator)
        transition(campaign, CampaignState.CHANGES_REQUESTED, operator, comment, now)
    return campaign


def reject(campaign: Campaign, operator: User, reason: str, now: datetime | None = None) -> Campaign:
    """Refuse a submitted campaign for good, with the reason (required)."""
    now = now or utcnow()
    reason = check_comment(reason, required=True, field="reason", what="the reason")
    with unit_of_work():
        campaign = _for_review(campaign, operator)
        transition(campaign, CampaignState.REJECTED, operator, reason, now)
    return campaign
