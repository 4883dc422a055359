"""Operator review of submitted campaigns: approve, request changes, reject.

Each decision locks the campaign, moves it through `Campaign.transition_to` and records a
`CampaignEvent` with the operator and the comment. Approving a campaign whose start has
already come puts it live at once; otherwise `launch_due_campaigns` does it on the day.
An operator never reviews a campaign of an organisation they belong to.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select

from crowdfund.accounts.models import User
from crowdfund.campaigns.models import Campaign, CampaignState
from crowdfund.campaigns.service import (
    MAX_COMMENT_LENGTH,
    is_member,
    launch,
    lock_campaign,
    transition,
    use_case,
)
from crowdfund.database import begin_write
from crowdfund.errors import Conflict, Forbidden, ValidationError
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


def _comment(text: str | None, required: bool, field: str, what: str) -> str:
    comment = (text or "").strip()
    if required and not comment:
        raise ValidationError(f"Write {what}: the campaigner sees it.", code="required", field=field)
    if len(comment) > MAX_COMMENT_LENGTH:
        raise ValidationError(
            f"Keep it under {MAX_COMMENT_LENGTH:,} characters.", code="too_long", field=field
        )
    return comment


def _for_review(campaign: Campaign, operator: User) -> Campaign:
    if not getattr(operator, "is_operator", False):
        raise Forbidden("Only operators review campaigns.")
    begin_write()
    campaign = lock_campaign(campaign.id)
    if is_member(operator, campaign.organisation_id):
        raise Forbidden("You belong to this campaign's organisation; another operator must review it.")
    if campaign.state is not CampaignState.SUBMITTED:
        raise Conflict(
            f"This campaign is {campaign.state.label.lower()}, not waiting for review.", code="not_submitted"
        )
    return campaign


@use_case
def approve(campaign: Campaign, operator: User, comment: str = "", now: datetime | None = None) -> Campaign:
    """Approve a submitted campaign; it goes live at once if its start has come."""
    now = now or utcnow()
    comment = _comment(comment, False, "comment", "a comment")
    campaign = _for_review(campaign, operator)
    if campaign.end_at <= now:
        raise Conflict(
            "This campaign's end date has passed: request changes so the campaigner can pick new dates.",
            code="end_passed",
        )
    transition(campaign, CampaignState.APPROVED, operator, comment, now)
    campaign.approved_at = now
    campaign.updated_at = now
    if campaign.start_at <= now:
        launch(campaign, operator, now, "Approved after its start date: live at once.")
    db.session.commit()
    return campaign


@use_case
def request_changes(
    campaign: Campaign, operator: User, comment: str, now: datetime | None = None
) -> Campaign:
    """Send a submitted campaign back to its campaigner with what to change (required)."""
    now = now or utcnow()
    comment = _comment(comment, True, "comment", "what needs to change")
    campaign = _for_review(campaign, operator)
    transition(campaign, CampaignState.CHANGES_REQUESTED, operator, comment, now)
    campaign.updated_at = now
    db.session.commit()
    return campaign


@use_case
def reject(campaign: Campaign, operator: User, reason: str, now: datetime | None = None) -> Campaign:
    """Refuse a submitted campaign for good, with the reason (required)."""
    now = now or utcnow()
    reason = _comment(reason, True, "reason", "the reason")
    campaign = _for_review(campaign, operator)
    transition(campaign, CampaignState.REJECTED, operator, reason, now)
    campaign.updated_at = now
    db.session.commit()
    return campaign
