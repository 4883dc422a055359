"""Payments: sandbox test cards, saving a card, charging it through the payment service."""

from __future__ import annotations

from sqlalchemy import select

from crowdfund.accounts.models import User
from crowdfund.campaigns.models import Campaign
from crowdfund.extensions import db
from crowdfund.models_base import utcnow
from crowdfund.money import Money
from crowdfund.payments import service
from crowdfund.payments.models import GatewayCustomer, PaymentMethod, PaymentOperation
from tests.factories.accounts import next_key

VISA = "4242 4242 4242 4242"
DECLINED = "4000 0000 0000 0002"
INSUFFICIENT_FUNDS = "4000 0000 0000 9995"
NEEDS_AUTHENTICATION = "4000 0027 6000 3184"
DECLINES_CHARGES = "4000 0000 0000 0341"


def add_card(user: User, number: str = VISA, expiry: str | None = None, cvc: str = "123") -> PaymentMethod:
    """Save a card for `user` through the service, as the card form does; a usable one becomes the default.

    `expiry` ("MM/YY") defaults to December five years from now.
    """
    expiry = expiry or f"12/{(utcnow().year + 5) % 100:02d}"
    return service.save_payment_method(
        user, {"number": number, "expiry": expiry, "cvc": cvc, "name": user.name}
    )


def charge(
    user: User,
    campaign: Campaign,
    amount: int = 10_000,
    method: PaymentMethod | None = None,
    *,
    idempotency_key: str | None = None,
    description: str | None = None,
    metadata: dict[str, str] | None = None,
) -> PaymentOperation:
    """Charge `user`'s card (default: their default card) `amount` minor units for `campaign`."""
    return service.charge(
        user=user,
        payment_method=method or service.default_payment_method(user),
        amount=Money(amount, campaign.currency),
        idempotency_key=idempotency_key or next_key("test-charge"),
        campaign_id=campaign.id,
        description=description or f"Pledge to {campaign.title}",
        metadata={"pledge_id": "1"} if metadata is None else metadata,
    )


def customer_id(user: User, gateway: str = "sandbox") -> str | None:
    """The id the gateway knows `user` by (created when they first saved a card), or None."""
    return db.session.scalar(
        select(GatewayCustomer.customer_id).where(
            GatewayCustomer.user_id == user.id, GatewayCustomer.gateway == gateway
        )
    )
