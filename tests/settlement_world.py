"""Shared set-up for the settlement tests: many backers with real sandbox cards, a campaign of
pledges, closing it at a known moment, and counting what the sandbox charged."""

from __future__ import annotations

from collections import Counter
from datetime import timedelta

from sqlalchemy import func, select

from crowdfund.campaigns.lifecycle import close_campaign_if_due
from crowdfund.campaigns.models import Campaign, CampaignKind, CampaignState
from crowdfund.engine.service import PledgeRequest, place_pledge
from crowdfund.extensions import db
from crowdfund.ledger import service as ledger
from crowdfund.models_base import utcnow
from crowdfund.money import Money
from crowdfund.payments.models import GatewayCustomer, MethodStatus, PaymentMethod
from crowdfund.payments.sandbox import CardBehaviour, SandboxCard, SandboxCharge, SandboxCustomer
from tests.factories import make_campaign, make_investor, make_org, make_users_fast

HOUR = timedelta(hours=1)
DAY = timedelta(days=1)


def backers(n: int, behaviour: CardBehaviour = CardBehaviour.SUCCEEDS) -> list[int]:
    """`n` users, each with a usable sandbox card (saved at the sandbox too); their ids."""
    users = make_users_fast(n)
    year = utcnow().year + 5
    for u in users:
        customer, card = f"sbcus_w{u.id}", f"sbpm_w{u.id}"
        db.session.add(SandboxCustomer(id=customer, email=u.email, name=u.name, user_id=u.id))
        db.session.add(GatewayCustomer(user_id=u.id, gateway="sandbox", customer_id=customer))
        db.session.flush()
        db.session.add(
            SandboxCard(
                id=card,
                customer_id=customer,
                brand="visa",
                last4="4242",
                exp_month=12,
                exp_year=year,
                behaviour=behaviour,
                authenticated=False,
            )
        )
        db.session.add(
            PaymentMethod(
                user_id=u.id,
                gateway="sandbox",
                gateway_id=card,
                brand="visa",
                last4="4242",
                exp_month=12,
                exp_year=year,
                status=MethodStatus.USABLE,
                is_default=True,
            )
        )
    db.session.commit()
    return [u.id for u in users]


def set_behaviour(user_id: int, behaviour: CardBehaviour) -> None:
    card = db.session.get(SandboxCard, f"sbpm_w{user_id}")
    card.behaviour = behaviour
    db.session.commit()


def campaign_with_pledges(
    n: int,
    *,
    kind: CampaignKind = CampaignKind.REWARD,
    amount: int = 10_000,
    goal: int | None = None,
    behaviour: CardBehaviour = CardBehaviour.SUCCEEDS,
    org=None,
    **fields,
) -> tuple[Campaign, list[int]]:
    """A live campaign (ends in one hour) with `n` pledges of `amount` minor units; (campaign, pledge ids)."""
    start = utcnow() - DAY
    campaign = make_campaign(
        kind,
        org=org or make_org(),
        goal=goal if goal is not None else max(n * amount // 2, 1),
        start_at=start,
        end_at=utcnow() + HOUR,
        **fields,
    )
    user_ids = backers(n, behaviour)
    pledge_ids = []
    for uid in user_ids:
        user = db.session.get(__import__("crowdfund.accounts.models", fromlist=["User"]).User, uid)
        if kind in (CampaignKind.EQUITY, CampaignKind.DEBT):
            make_investor(user, currency=campaign.currency, accredited=True)
            req = PledgeRequest(amount=Money(amount, campaign.currency), risk_acknowledged=True)
        else:
            req = PledgeRequest(amount=Money(amount, campaign.currency))
        pledge_ids.append(place_pledge(user, campaign.id, req).id)
    return db.session.get(Campaign, campaign.id), pledge_ids


def close(campaign: Campaign):
    """Close the campaign at its end (plus a minute); returns that moment."""
    when = campaign.end_at + timedelta(minutes=1)
    close_campaign_if_due(campaign.id, when)
    db.session.expire_all()
    return when


def sandbox_charges_per_pledge(succeeded_only: bool = True) -> Counter:
    """How many charges the sandbox made per pledge id (from the metadata we send)."""
    query = select(SandboxCharge)
    if succeeded_only:
        query = query.where(SandboxCharge.status == "succeeded")
    counts: Counter = Counter()
    for charge in db.session.scalars(query):
        counts[int(charge.details.get("pledge_id", 0))] += 1
    return counts


def sandbox_charge_count() -> int:
    return db.session.scalar(select(func.count(SandboxCharge.id)))


def escrow(campaign: Campaign) -> Money:
    return ledger.balance_of_escrow(campaign.id, campaign.currency)


__all__ = [
    "DAY",
    "HOUR",
    "CampaignState",
    "backers",
    "campaign_with_pledges",
    "close",
    "escrow",
    "sandbox_charge_count",
    "sandbox_charges_per_pledge",
    "set_behaviour",
]
