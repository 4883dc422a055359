"""Who may see and change a campaign: members of its organisation; the campaign row lock.

A campaign of an organisation `user` does not belong to is answered with NotFound, never
Forbidden, so nobody learns that a draft exists.
"""

from __future__ import annotations

from sqlalchemy import select

from crowdfund.accounts.models import Membership, Organisation, User
from crowdfund.campaigns.models import Campaign
from crowdfund.database import lock
from crowdfund.errors import Conflict, ErrorCode, NotFound
from crowdfund.extensions import db


def organisations_for(user: User) -> list[Organisation]:
    """The organisations `user` may raise money for, by name."""
    return list(
        db.session.scalars(
            select(Organisation)
            .join(Membership, Membership.organisation_id == Organisation.id)
            .where(Membership.user_id == user.id)
            .order_by(Organisation.legal_name)
        )
    )


def is_member(user: User | None, organisation_id: int) -> bool:
    if user is None or not getattr(user, "is_authenticated", False):
        return False
    return (
        db.session.scalar(
            select(Membership.id).where(
                Membership.user_id == user.id, Membership.organisation_id == organisation_id
            )
        )
        is not None
    )


def campaign_for_member(campaign_id: int, user: User | None) -> Campaign:
    """The campaign if `user` is a member of its organisation; NotFound otherwise (no leak)."""
    campaign = db.session.get(Campaign, campaign_id)
    if campaign is None or not is_member(user, campaign.organisation_id):
        raise NotFound("We could not find that campaign.", code=ErrorCode.NOT_FOUND)
    return campaign


def campaigns_for_user(user: User) -> list[Campaign]:
    """Campaigns of every organisation `user` belongs to, newest first."""
    return list(
        db.session.scalars(
            select(Campaign)
            .join(Membership, Membership.organisation_id == Campaign.organisation_id)
            .where(Membership.user_id == user.id)
            .order_by(Campaign.created_at.desc(), Campaign.id.desc())
        )
    )


def lock_campaign(campaign_id: int) -> Campaign:
    """Load the campaign afresh and lock its row until the transaction ends."""
    campaign = lock(Campaign, campaign_id)
    if campaign is None:
        raise NotFound("We could not find that campaign.", code=ErrorCode.NOT_FOUND)
    return campaign


def editable_for(campaign_id: int, user: User) -> Campaign:
    """Lock the campaign and check `user` may edit it now (inside a unit of work)."""
    campaign = lock_campaign(campaign_id)
    if not is_member(user, campaign.organisation_id):
        raise NotFound("We could not find that campaign.", code=ErrorCode.NOT_FOUND)
    if not campaign.is_editable:
        raise Conflict(
            f"This campaign is {campaign.state.label.lower()} and can no longer be edited.",
            code=ErrorCode.NOT_EDITABLE,
        )
    return campaign
