"""Test helpers for payments: saved sandbox cards, charges, escrow released to an organisation."""

from __future__ import annotations

import itertools

from crowdfund.extensions import db
from crowdfund.ledger import service as ledger
from crowdfund.ledger.models import LedgerTransaction
from crowdfund.ledger.service import Leg
from crowdfund.money import Money
from crowdfund.payments import service
from crowdfund.payments.models import PaymentMethod, PaymentOperation

VISA = "4242 4242 4242 4242"
DECLINED = "4000 0000 0000 0002"
INSUFFICIENT_FUNDS = "4000 0000 0000 9995"
NEEDS_AUTHENTICATION = "4000 0027 6000 3184"
DECLINES_CHARGES = "4000 0000 0000 0341"

_keys = itertools.count(1)


def key(prefix: str = "test-charge") -> str:
    return f"{prefix}:{next(_keys)}"


def save_sandbox_card(user, number: str = VISA, expiry: str = "12/30", cvc: str = "123") -> PaymentMethod:
    """Save a card through the service exactly as the sandbox form does."""
    return service.save_payment_method(
        user, {"number": number, "expiry": expiry, "cvc": cvc, "name": user.name}
    )


def charge(
    user, campaign, amount: int = 10_000, method: PaymentMethod | None = None, **kw
) -> PaymentOperation:
    method = method or service.default_payment_method(user)
    return service.charge(
        user=user,
        payment_method=method,
        amount=Money(amount, campaign.currency),
        idempotency_key=kw.pop("idempotency_key", None) or key(),
        campaign_id=campaign.id,
        description=kw.pop("description", f"Pledge to {campaign.title}"),
        metadata=kw.pop("metadata", {"pledge_id": "1"}),
    )


def release_to_organisation(campaign, amount: int) -> LedgerTransaction:
    """What settlement does before a payout: escrow -> organisation payable (no fee), committed."""
    money = Money(amount, campaign.currency)
    txn = ledger.post_transaction(
        f"test-release:{campaign.id}:{next(_keys)}",
        "Released to the organisation",
        [
            Leg.debit(ledger.escrow_account(campaign), money),
            Leg.credit(ledger.org_payable_account(campaign.organisation_id, campaign.currency), money),
        ],
        campaign_id=campaign.id,
        kind="release",
    )
    db.session.commit()
    return txn


def balance(account) -> int:
    return ledger.account_balance(account).amount
