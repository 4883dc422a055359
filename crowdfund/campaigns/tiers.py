"""Reward tiers of a reward campaign: add, change, remove while the campaign is editable."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date, datetime
from typing import Any

from crowdfund.accounts.models import User
from crowdfund.campaigns import parsing
from crowdfund.campaigns.access import editable_for
from crowdfund.campaigns.drafting import MAX_TITLE_LENGTH, DraftInvalid
from crowdfund.campaigns.kinds import kind_rules
from crowdfund.campaigns.models import Campaign, RewardTier
from crowdfund.database import unit_of_work
from crowdfund.errors import Conflict, ErrorCode, NotFound, ValidationError
from crowdfund.extensions import db
from crowdfund.models_base import utcnow

MAX_TIERS = 30
MAX_TIER_QUANTITY = 1_000_000
MAX_TIER_DESCRIPTION_LENGTH = 2_000
MAX_SHIPS_TO_LENGTH = 300


def _delivery(value: Any, errors: dict[str, str]) -> date | None:
    if parsing.blank(value):
        return None
    if not isinstance(value, date) or isinstance(value, datetime):
        errors["estimated_delivery"] = "Enter the estimated delivery as a date."
        return None
    return value


def _parse_tier(data: Mapping[str, Any], currency: str) -> dict[str, Any]:
    errors: dict[str, str] = {}
    title = parsing.text(data.get("title"), "title", MAX_TITLE_LENGTH, errors, "The title")
    if title is None and "title" not in errors:
        errors["title"] = "Give the reward a title."
    description = parsing.text(
        data.get("description"), "description", MAX_TIER_DESCRIPTION_LENGTH, errors, "The description"
    )
    price = parsing.money(data.get("price"), currency, "price", errors, "The price")
    if price is None and "price" not in errors:
        errors["price"] = "Enter the price."
    quantity = parsing.whole_number(
        data.get("quantity_limit"), "quantity_limit", errors, "The quantity", 1, MAX_TIER_QUANTITY
    )
    delivery = _delivery(data.get("estimated_delivery"), errors)
    ships = bool(data.get("ships"))
    ships_to = parsing.text(data.get("ships_to"), "ships_to", MAX_SHIPS_TO_LENGTH, errors, "Where it ships")
    if ships and ships_to is None and "ships_to" not in errors:
        errors["ships_to"] = "Say where the reward ships to, e.g. Worldwide or China."
    if errors:
        raise DraftInvalid(errors)
    return {
        "title": title,
        "description": description or "",
        "price_amount": price.amount,
        "quantity_limit": quantity,
        "estimated_delivery": delivery,
        "ships": ships,
        "ships_to": ships_to if ships else "",
    }


def _reward_campaign(campaign: Campaign, user: User) -> Campaign:
    campaign = editable_for(campaign.id, user)
    if not kind_rules(campaign).has_tiers:
        raise Conflict("Only reward campaigns have reward tiers.", code=ErrorCode.NOT_REWARD)
    return campaign


def _tier_of(campaign: Campaign, tier_id: int) -> RewardTier:
    tier = next((t for t in campaign.tiers if t.id == tier_id), None)
    if tier is None:
        raise NotFound("We could not find that reward.", code=ErrorCode.NOT_FOUND)
    return tier


def add_tier(campaign: Campaign, user: User, data: Mapping[str, Any]) -> RewardTier:
    """Add a reward tier at the end of the list."""
    with unit_of_work():
        campaign = _reward_campaign(campaign, user)
        values = _parse_tier(data, campaign.currency)
        if len(campaign.tiers) >= MAX_TIERS:
            raise ValidationError(
                f"A campaign can have at most {MAX_TIERS} reward tiers.", code=ErrorCode.TOO_MANY_TIERS
            )
        position = max((t.position for t in campaign.tiers), default=-1) + 1
        tier = RewardTier(position=position, claimed=0, **values)
        campaign.tiers.append(tier)
        campaign.updated_at = utcnow()
        db.session.flush()
    return tier


def update_tier(campaign: Campaign, user: User, tier_id: int, data: Mapping[str, Any]) -> RewardTier:
    """Change a reward tier of an editable reward campaign."""
    with unit_of_work():
        campaign = _reward_campaign(campaign, user)
        tier = _tier_of(campaign, tier_id)
        values = _parse_tier(data, campaign.currency)
        for name, value in values.items():
            setattr(tier, name, value)
        campaign.updated_at = utcnow()
    return tier


def remove_tier(campaign: Campaign, user: User, tier_id: int) -> None:
    """Delete a reward tier of an editable reward campaign."""
    with unit_of_work():
        campaign = _reward_campaign(campaign, user)
        tier = _tier_of(campaign, tier_id)
        campaign.tiers.remove(tier)
        campaign.updated_at = utcnow()
