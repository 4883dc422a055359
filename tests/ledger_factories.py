"""Test helpers for the ledger: accounts with money in them, simple postings."""

from __future__ import annotations

import itertools

from crowdfund.extensions import db
from crowdfund.ledger import service
from crowdfund.ledger.models import AccountPurpose, LedgerAccount, LedgerTransaction
from crowdfund.ledger.service import Leg
from crowdfund.money import Money

_keys = itertools.count(1)


def next_key(prefix: str = "test") -> str:
    return f"{prefix}:{next(_keys)}"


def transfer(
    debit: LedgerAccount,
    credit: LedgerAccount,
    amount: int,
    key: str | None = None,
    kind: str = "transfer",
    campaign_id: int | None = None,
    commit: bool = True,
) -> LedgerTransaction:
    """Post debit `debit` / credit `credit` of `amount` minor units and (by default) commit."""
    money = Money(amount, debit.currency)
    txn = service.post_transaction(
        key or next_key(),
        f"{kind} of {amount}",
        [Leg.debit(debit, money), Leg.credit(credit, money)],
        kind=kind,
        campaign_id=campaign_id,
    )
    if commit:
        db.session.commit()
    return txn


def charge(campaign, amount: int, key: str | None = None) -> LedgerTransaction:
    """A backer's payment into the campaign's escrow (clearing -> escrow), committed."""
    return transfer(
        service.clearing_account(campaign.currency),
        service.escrow_account(campaign),
        amount,
        key=key or next_key("charge"),
        kind="charge",
        campaign_id=campaign.id,
    )


def release(campaign, amount: int, fee: int, key: str | None = None) -> LedgerTransaction:
    """Escrow -> organisation payable + platform fee, committed."""
    cur = campaign.currency
    txn = service.post_transaction(
        key or next_key("release"),
        "release",
        [
            Leg.debit(service.escrow_account(campaign), Money(amount, cur)),
            Leg.credit(service.org_payable_account(campaign.organisation_id, cur), Money(amount - fee, cur)),
            Leg.credit(service.fee_revenue_account(cur), Money(fee, cur)),
        ],
        kind="release",
        campaign_id=campaign.id,
    )
    db.session.commit()
    return txn


def equity(currency: str = "CNY") -> LedgerAccount:
    return service.get_account(AccountPurpose.PLATFORM_EQUITY, currency)
