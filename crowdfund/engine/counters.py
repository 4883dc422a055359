"""The campaign's stored counters and the row locks every pledge use case takes.

`Campaign.raised_amount`, `Campaign.backer_count` and `RewardTier.claimed` are kept in
step with the pledges in the same unit of work that changes a pledge, under the
campaign's row lock: a pledge in `COUNTED_STATES` adds its `counted_amount` (amount
less refunds), its tier units and — if it is the backer's only counted pledge — one
backer.

Lock order (the same for every use case that touches a campaign and money): campaign →
reward tiers by id → investor profile → pledge → payment operation → ledger.
"""

from __future__ import annotations

from sqlalchemy import func, select

from crowdfund.campaigns.models import Campaign, RewardTier
from crowdfund.database import lock
from crowdfund.engine.models import COUNTED_STATES, Pledge
from crowdfund.errors import ErrorCode, NotFound, ValidationError
from crowdfund.extensions import db


def lock_campaign(campaign_id: int) -> Campaign:
    """The campaign row, locked; NotFound when there is none."""
    campaign = lock(Campaign, campaign_id)
    if campaign is None:
        raise NotFound("We could not find that campaign.", code=ErrorCode.NOT_FOUND)
    return campaign


def lock_tiers(campaign: Campaign, tier_ids: set[int], load=lock) -> dict[int, RewardTier]:
    """The given tiers in id order (locked unless `load` says otherwise); refuse another campaign's."""
    if any(isinstance(t, bool) or not isinstance(t, int) for t in tier_ids):
        raise ValidationError(
            "Choose one of this campaign's rewards.", code=ErrorCode.INVALID_TIER, field="tier_id"
        )
    tiers: dict[int, RewardTier] = {}
    for tier_id in sorted(tier_ids):
        tier = load(RewardTier, tier_id)
        if tier is None or tier.campaign_id != campaign.id:
            raise ValidationError(
                "That reward is not offered by this campaign.", code=ErrorCode.INVALID_TIER, field="tier_id"
            )
        tiers[tier_id] = tier
    return tiers


def has_other_counted_pledge(campaign_id: int, user_id: int, exclude_id: int | None) -> bool:
    query = select(func.count(Pledge.id)).where(
        Pledge.campaign_id == campaign_id, Pledge.user_id == user_id, Pledge.state.in_(COUNTED_STATES)
    )
    if exclude_id is not None:
        query = query.where(Pledge.id != exclude_id)
    return bool(db.session.scalar(query))


def count_in(campaign: Campaign, pledge: Pledge, tier: RewardTier | None) -> None:
    """Add a pledge that has just become counted to the campaign's and tier's counters."""
    if not has_other_counted_pledge(campaign.id, pledge.user_id, pledge.id):
        campaign.backer_count += 1
    campaign.raised_amount += pledge.counted_amount
    if tier is not None:
        tier.claimed += pledge.quantity


def count_out(campaign: Campaign, pledge: Pledge, tier: RewardTier | None) -> None:
    """Take a pledge that stops being counted out of the counters."""
    if not has_other_counted_pledge(campaign.id, pledge.user_id, pledge.id):
        campaign.backer_count -= 1
    campaign.raised_amount -= pledge.counted_amount
    if tier is not None:
        tier.claimed -= pledge.quantity
