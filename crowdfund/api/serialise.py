"""Campaigns, tiers, pledges and money as the JSON the API returns.

Money is always an object: `{"amount": 30000, "currency": "CNY", "display": "¥300.00"}`,
the amount in the currency's minor unit. Times are ISO 8601 in UTC.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from crowdfund.campaigns.models import Campaign, CampaignKind, RewardTier
from crowdfund.engine.models import Pledge
from crowdfund.money import Money


def money_to_dict(value: Money | None) -> dict[str, Any] | None:
    if value is None:
        return None
    return {"amount": value.amount, "currency": value.currency, "display": value.format()}


def _time(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


def tier_to_dict(tier: RewardTier, currency: str) -> dict[str, Any]:
    return {
        "id": tier.id,
        "title": tier.title,
        "description": tier.description,
        "price": money_to_dict(Money(tier.price_amount, currency)),
        "quantity_limit": tier.quantity_limit,
        "claimed": tier.claimed,
        "remaining": tier.remaining,
        "sold_out": tier.sold_out,
        "estimated_delivery": tier.estimated_delivery.isoformat() if tier.estimated_delivery else None,
        "ships": tier.ships,
        "ships_to": tier.ships_to,
    }


def terms_to_dict(campaign: Campaign) -> dict[str, Any] | None:
    """The kind's own terms; reward campaigns have tiers instead (None here)."""
    cur = campaign.currency
    if campaign.kind is CampaignKind.EQUITY and campaign.equity_terms:
        t = campaign.equity_terms
        return {
            "security_type": t.security_type.value,
            "price_per_share": money_to_dict(Money(t.price_per_share_amount, cur)),
            "pre_money_valuation": money_to_dict(Money(t.pre_money_valuation_amount, cur)),
            "min_target": money_to_dict(Money(t.min_target_amount, cur)),
            "max_target": money_to_dict(Money(t.max_target_amount, cur)),
            "min_investment": money_to_dict(Money(t.min_investment_amount, cur)),
        }
    if campaign.kind is CampaignKind.DEBT and campaign.debt_terms:
        t = campaign.debt_terms
        return {
            "annual_rate_bp": t.annual_rate_bp,
            "term_months": t.term_months,
            "repayment_frequency": t.repayment_frequency,
            "min_amount": money_to_dict(Money(t.min_amount, cur)),
            "max_amount": money_to_dict(Money(t.max_amount, cur)),
            "min_loan_share": money_to_dict(Money(t.min_loan_share_amount, cur)),
        }
    if campaign.kind is CampaignKind.DONATION and campaign.donation_terms:
        t = campaign.donation_terms
        # The patient's name and documents stay off the API: health data is private.
        return {
            "beneficiary_name": t.public_beneficiary_name,
            "is_patient_aid": t.is_patient_aid,
            "hospital_name": t.hospital_name,
        }
    return None


def campaign_to_dict(campaign: Campaign, now: datetime) -> dict[str, Any]:
    """A campaign with its totals, its tiers (reward) and its kind's terms."""
    return {
        "id": campaign.id,
        "slug": campaign.slug,
        "title": campaign.title,
        "summary": campaign.summary,
        "kind": campaign.kind.value,
        "category": campaign.category.value,
        "state": campaign.state.value,
        "is_open": campaign.is_open_at(now),
        "funding_model": campaign.funding_model.value,
        "organisation": {"id": campaign.organisation_id, "name": campaign.organisation.legal_name},
        "currency": campaign.currency,
        "goal": money_to_dict(campaign.goal),
        "raised": money_to_dict(campaign.raised),
        "backers": campaign.backer_count,
        "percent_funded": campaign.percent_funded,
        "start_at": _time(campaign.start_at),
        "end_at": _time(campaign.end_at),
        "tiers": [tier_to_dict(t, campaign.currency) for t in campaign.tiers]
        if campaign.kind is CampaignKind.REWARD
        else [],
        "terms": terms_to_dict(campaign),
    }


def pledge_to_dict(pledge: Pledge, now: datetime) -> dict[str, Any]:
    """One of the caller's own pledges, with what they may still do with it."""
    campaign = pledge.campaign
    return {
        "id": pledge.id,
        "campaign": {"id": campaign.id, "slug": campaign.slug, "title": campaign.title},
        "kind": pledge.kind.value,
        "state": pledge.state.value,
        "amount": money_to_dict(pledge.amount),
        "tier_id": pledge.tier_id,
        "quantity": pledge.quantity,
        "extra": money_to_dict(pledge.extra),
        "shares": pledge.shares,
        "shipping_address": pledge.shipping_address,
        "message": pledge.message,
        "anonymous": pledge.anonymous,
        "risk_acknowledged": pledge.risk_acknowledged_at is not None,
        "payment_method_id": pledge.payment_method_id,
        "failure_message": pledge.failure_message,
        "created_at": _time(pledge.created_at),
        "updated_at": _time(pledge.updated_at),
        "cancelled_at": _time(pledge.cancelled_at),
        "cancellation_deadline": _time(pledge.cancellation_deadline),
        "can_change": pledge.can_change_at(now),
        "can_cancel": pledge.can_cancel_at(now),
    }
