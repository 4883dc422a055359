"""Ledger: money in escrow, released to an organisation, plain transfers, balances."""

from __future__ import annotations

from crowdfund.campaigns.models import Campaign
from crowdfund.extensions import db
from crowdfund.ledger import postings, service
from crowdfund.ledger.models import AccountPurpose, LedgerAccount, LedgerTransaction
from crowdfund.ledger.service import Leg
from crowdfund.money import Money
from tests.factories.accounts import next_key


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


def post_charge(campaign: Campaign, amount: int, key: str | None = None) -> LedgerTransaction:
    """A card payment received into the campaign's escrow (clearing -> escrow), committed.

    Only the ledger side: no payment operation, no gateway (for those, `payments.charge`).
    """
    return transfer(
        service.clearing_account(campaign.currency),
        service.escrow_account(campaign),
        amount,
        key=key or next_key("charge"),
        kind="charge",
        campaign_id=campaign.id,
    )


def release(campaign: Campaign, amount: int, fee: int = 0, key: str | None = None) -> LedgerTransaction:
    """What settlement does before a payout: escrow -> organisation payable (+ platform fee).

    Goes through the real movement (`postings.release_to_organisation`), which commits.
    """
    cur = campaign.currency
    return postings.release_to_organisation(
        campaign_id=campaign.id,
        organisation_id=campaign.organisation_id,
        amount=Money(amount, cur),
        platform_fee=Money(fee, cur),
        key=key or next_key("release"),
    )


def equity(currency: str = "CNY") -> LedgerAccount:
    return service.get_account(AccountPurpose.PLATFORM_EQUITY, currency)


def balance(account: LedgerAccount) -> int:
    """The account's balance in minor units."""
    return service.account_balance(account).amount
