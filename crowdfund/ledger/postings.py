"""Every movement of money, one function each: the only code that builds ledger legs.

Each function picks the accounts, builds the balanced legs, names the `TransactionKind`
and the idempotency key, and posts them with `post_transaction` — exactly once per key.
Money moves from the account debited to the account credited:

- charge_into_escrow: clearing -> campaign escrow; key payment:{payment_id}:charge
- refund_from_escrow: campaign escrow -> clearing; key payment:{payment_id}:refund
- release_to_organisation: campaign escrow -> organisation payable (amount - fee) and
  platform fee revenue (fee); key chosen by settlement
- release_to_provider: campaign escrow -> provider payable (a patient-aid tranche released
  to the hospital); key chosen by patient aid (tranche:{id}:release)
- payout: organisation (or provider) payable -> clearing; key payment:{payment_id}:payout
- processing_fee: processing fee expense -> clearing; key payment:{payment_id}:processing_fee
- platform_fee: campaign escrow -> platform fee revenue; key chosen by settlement
- processing_fee_from_escrow: campaign escrow -> clearing (what the processor kept of the
  campaign's charges, borne by the campaign); key chosen by settlement
- recover_from_organisation: organisation payable (what is left of it) and organisation
  receivable (the rest) -> campaign escrow, before a refund after payout; key chosen by settlement
- repayment: clearing -> each lender's wallet; key payment:{payment_id}:repayment
- bank_transfer_into_escrow: clearing -> campaign escrow (a borrower's bank transfer, as a
  card charge would); key chosen by loans
- repayment_from_escrow: campaign escrow -> each lender's wallet, one leg each (a loan
  repayment received, split among the lenders); key chosen by loans
- transfer: one account -> another (never escrow -> escrow); key chosen by the operator
- reverse_transaction: the mirror image of an earlier transaction; key chosen by the caller

The release posts the platform fee inside the same RELEASE transaction (one leg on the
fee revenue account), so escrow, payable and fee move together or not at all.

Each function runs in the caller's unit of work when there is one (it flushes and the
caller commits once) and is its own unit of work otherwise. The ledger's row locks are
taken last, after whatever the caller has locked.
"""

from __future__ import annotations

from collections.abc import Mapping

from sqlalchemy import select

from crowdfund.database import unit_of_work
from crowdfund.errors import ErrorCode
from crowdfund.extensions import db
from crowdfund.ledger.models import (
    AccountPurpose,
    LedgerAccount,
    LedgerError,
    LedgerTransaction,
    Side,
    TransactionKind,
)
from crowdfund.ledger.service import Leg, find_transaction, get_account, post_transaction
from crowdfund.money import Money

__all__ = [
    "TransactionKind",
    "bank_transfer_into_escrow",
    "charge_into_escrow",
    "lender_wallets",
    "payment_key",
    "payout",
    "platform_fee",
    "processing_fee",
    "processing_fee_from_escrow",
    "recover_from_organisation",
    "refund_from_escrow",
    "release_to_organisation",
    "release_to_provider",
    "repayment",
    "repayment_from_escrow",
    "reverse_transaction",
    "transfer",
]


def payment_key(payment_id: int, kind: TransactionKind) -> str:
    """The idempotency key of the movement a payment operation's success posts."""
    return f"payment:{payment_id}:{kind.value}"


def _escrow(campaign_id: int, currency: str) -> LedgerAccount:
    return get_account(AccountPurpose.CAMPAIGN_ESCROW, currency, "campaign", campaign_id)


def _clearing(currency: str) -> LedgerAccount:
    return get_account(AccountPurpose.GATEWAY_CLEARING, currency)


def charge_into_escrow(*, payment_id: int, campaign_id: int, amount: Money) -> LedgerTransaction:
    """A backer's successful card payment: clearing -> the campaign's escrow."""
    with unit_of_work():
        escrow = _escrow(campaign_id, amount.currency)
        return post_transaction(
            payment_key(payment_id, TransactionKind.CHARGE),
            f"payment #{payment_id}",
            [Leg.debit(_clearing(amount.currency), amount), Leg.credit(escrow, amount)],
            campaign_id=campaign_id,
            kind=TransactionKind.CHARGE,
        )


def refund_from_escrow(
    *, payment_id: int, charge_payment_id: int, campaign_id: int, amount: Money
) -> LedgerTransaction:
    """A successful refund (payment `payment_id`) of charge `charge_payment_id`: escrow -> clearing.

    A refund the gateway made after the campaign's money left escrow (one made in Stripe's
    dashboard after the release, say) is not lost: the shortfall is first put back into
    escrow from the organisation (`recover_from_organisation`: what the platform still owes
    it, and for the rest its receivable), then refunded as usual.
    """
    key = payment_key(payment_id, TransactionKind.REFUND)
    with unit_of_work():
        done = find_transaction(key)
        if done is not None:
            return done  # a replay: the shortfall (if any) was recovered the first time
        escrow = _escrow(campaign_id, amount.currency)
        db.session.refresh(escrow)
        shortfall = amount.amount - escrow.balance_amount
        if shortfall > 0:
            _recover_shortfall(payment_id, campaign_id, Money(shortfall, amount.currency))
        return post_transaction(
            key,
            f"refund #{payment_id} of payment #{charge_payment_id}",
            [Leg.debit(escrow, amount), Leg.credit(_clearing(amount.currency), amount)],
            campaign_id=campaign_id,
            kind=TransactionKind.REFUND,
        )


def _recover_shortfall(payment_id: int, campaign_id: int, shortfall: Money) -> None:
    from crowdfund.campaigns.models import Campaign

    organisation_id = db.session.scalar(select(Campaign.organisation_id).where(Campaign.id == campaign_id))
    payable = get_account(AccountPurpose.ORG_PAYABLE, shortfall.currency, "organisation", organisation_id)
    db.session.refresh(payable)
    from_payable = min(shortfall.amount, max(payable.balance_amount, 0))
    recover_from_organisation(
        campaign_id=campaign_id,
        organisation_id=organisation_id,
        amount=shortfall,
        payable_part=Money(from_payable, shortfall.currency),
        key=f"{payment_key(payment_id, TransactionKind.REFUND)}:recovery",
    )


def payout(
    *,
    payment_id: int,
    amount: Money,
    organisation_id: int | None = None,
    provider_id: int | None = None,
    campaign_id: int | None = None,
    description: str = "",
) -> LedgerTransaction:
    """A successful payout: the provider's payable (when `provider_id` is given), else the
    organisation's -> clearing."""
    if provider_id is not None:
        purpose, owner_type, owner_id = AccountPurpose.PROVIDER_PAYABLE, "provider", provider_id
    elif organisation_id is not None:
        purpose, owner_type, owner_id = AccountPurpose.ORG_PAYABLE, "organisation", organisation_id
    else:
        raise LedgerError("A payout is owed to an organisation or a provider.", code=ErrorCode.LEDGER_OWNER)
    with unit_of_work():
        payable = get_account(purpose, amount.currency, owner_type, owner_id)
        text = f"payout #{payment_id}" + (f": {description}" if description else "")
        return post_transaction(
            payment_key(payment_id, TransactionKind.PAYOUT),
            text[:300],
            [Leg.debit(payable, amount), Leg.credit(_clearing(amount.currency), amount)],
            campaign_id=campaign_id,
            kind=TransactionKind.PAYOUT,
        )


def release_to_organisation(
    *, campaign_id: int, organisation_id: int, amount: Money, platform_fee: Money, key: str
) -> LedgerTransaction:
    """Settlement: `amount` leaves the campaign's escrow; the organisation is owed
    `amount - platform_fee` and the platform earns `platform_fee`, in one RELEASE transaction.

    `key` is the settlement's idempotency key (e.g. "settlement:{run_id}:release").
    """
    if platform_fee.currency != amount.currency or not 0 <= platform_fee.amount <= amount.amount:
        raise LedgerError(
            f"The platform fee {platform_fee} must be between nothing and the amount released ({amount}).",
            code=ErrorCode.LEDGER_AMOUNT,
        )
    currency = amount.currency
    with unit_of_work():
        legs = [Leg.debit(_escrow(campaign_id, currency), amount)]
        if amount.amount > platform_fee.amount:
            payable = get_account(AccountPurpose.ORG_PAYABLE, currency, "organisation", organisation_id)
            legs.append(Leg.credit(payable, Money(amount.amount - platform_fee.amount, currency)))
        if platform_fee.amount:
            legs.append(Leg.credit(get_account(AccountPurpose.PLATFORM_FEE_REVENUE, currency), platform_fee))
        return post_transaction(
            key,
            f"release to organisation #{organisation_id}",
            legs,
            campaign_id=campaign_id,
            kind=TransactionKind.RELEASE,
        )


def release_to_provider(*, campaign_id: int, provider_id: int, amount: Money, key: str) -> LedgerTransaction:
    """A patient-aid tranche: `amount` leaves the campaign's escrow and is owed to the hospital
    (provider `provider_id`) until its payout. One RELEASE transaction, exactly once by `key`."""
    with unit_of_work():
        payable = get_account(AccountPurpose.PROVIDER_PAYABLE, amount.currency, "provider", provider_id)
        return post_transaction(
            key,
            f"release to provider #{provider_id}",
            [Leg.debit(_escrow(campaign_id, amount.currency), amount), Leg.credit(payable, amount)],
            campaign_id=campaign_id,
            kind=TransactionKind.RELEASE,
        )


def processing_fee(*, payment_id: int, amount: Money, campaign_id: int | None = None) -> LedgerTransaction:
    """What the payment processor kept from payment `payment_id`: fee expense -> clearing."""
    with unit_of_work():
        expense = get_account(AccountPurpose.PROCESSING_FEE_EXPENSE, amount.currency)
        return post_transaction(
            payment_key(payment_id, TransactionKind.PROCESSING_FEE),
            f"processing fee of payment #{payment_id}",
            [Leg.debit(expense, amount), Leg.credit(_clearing(amount.currency), amount)],
            campaign_id=campaign_id,
            kind=TransactionKind.PROCESSING_FEE,
        )


def repayment(*, payment_id: int, campaign_id: int, shares: Mapping[int, Money]) -> LedgerTransaction:
    """A borrower's repayment received as payment `payment_id`, shared among the lenders:
    clearing -> each lender's wallet (`shares`: user id -> amount, all in one currency)."""
    if not shares:
        raise LedgerError("A repayment needs at least one lender.", code=ErrorCode.LEDGER_AMOUNT)
    currencies = {m.currency for m in shares.values()}
    if len(currencies) != 1:
        raise LedgerError("A repayment is in one currency.", code=ErrorCode.LEDGER_CURRENCY)
    currency = currencies.pop()
    total = Money(sum(m.amount for m in shares.values()), currency)
    with unit_of_work():
        legs = [Leg.debit(_clearing(currency), total)]
        for user_id, share in sorted(shares.items()):
            legs.append(Leg.credit(get_account(AccountPurpose.USER_WALLET, currency, "user", user_id), share))
        return post_transaction(
            payment_key(payment_id, TransactionKind.REPAYMENT),
            f"repayment #{payment_id}",
            legs,
            campaign_id=campaign_id,
            kind=TransactionKind.REPAYMENT,
        )


def lender_wallets(currency: str, user_ids: list[int]) -> dict[int, LedgerAccount]:
    """The users' wallets in `currency`, read in batches (thousands of lenders), missing ones created."""
    codes = {
        LedgerAccount.make_code(AccountPurpose.USER_WALLET, currency, "user", uid): uid for uid in user_ids
    }
    found: dict[int, LedgerAccount] = {}
    code_list = list(codes)
    for start in range(0, len(code_list), 5_000):
        batch = code_list[start : start + 5_000]
        for account in db.session.scalars(select(LedgerAccount).where(LedgerAccount.code.in_(batch))):
            found[codes[account.code]] = account
    for uid in user_ids:
        if uid not in found:
            found[uid] = get_account(AccountPurpose.USER_WALLET, currency, "user", uid)
    return found


def bank_transfer_into_escrow(*, key: str, campaign_id: int, amount: Money) -> LedgerTransaction:
    """A borrower's bank transfer received for campaign `campaign_id`: clearing -> its escrow."""
    with unit_of_work():
        return post_transaction(
            key,
            f"bank transfer for campaign #{campaign_id}",
            [
                Leg.debit(_clearing(amount.currency), amount),
                Leg.credit(_escrow(campaign_id, amount.currency), amount),
            ],
            campaign_id=campaign_id,
            kind=TransactionKind.CHARGE,
        )


def repayment_from_escrow(*, key: str, campaign_id: int, shares: Mapping[int, Money]) -> LedgerTransaction:
    """A loan repayment received into the campaign's escrow, split among the lenders in one
    transaction: escrow -> each lender's wallet (`shares`: user id -> amount, one currency)."""
    shares = {uid: m for uid, m in shares.items() if m.amount}
    if not shares:
        raise LedgerError("A repayment needs at least one lender.", code=ErrorCode.LEDGER_AMOUNT)
    currencies = {m.currency for m in shares.values()}
    if len(currencies) != 1:
        raise LedgerError("A repayment is in one currency.", code=ErrorCode.LEDGER_CURRENCY)
    currency = currencies.pop()
    total = Money(sum(m.amount for m in shares.values()), currency)
    with unit_of_work():
        wallets = lender_wallets(currency, sorted(shares))
        legs = [Leg.debit(_escrow(campaign_id, currency), total)]
        legs += [Leg.credit(wallets[uid], shares[uid]) for uid in sorted(shares)]
        return post_transaction(
            key,
            f"loan repayment of campaign #{campaign_id} to {len(shares)} lenders",
            legs,
            campaign_id=campaign_id,
            kind=TransactionKind.REPAYMENT,
        )


def transfer(
    *,
    key: str,
    debit: LedgerAccount,
    credit: LedgerAccount,
    amount: Money,
    campaign_id: int | None = None,
    description: str = "",
) -> LedgerTransaction:
    """An operator's movement of `amount` from account `debit` to account `credit` (opening
    balances, corrections). Escrow never pays into another escrow (`ledger_forbidden_movement`)."""
    with unit_of_work():
        return post_transaction(
            key,
            description,
            [Leg.debit(debit, amount), Leg.credit(credit, amount)],
            campaign_id=campaign_id,
            kind=TransactionKind.TRANSFER,
        )


def reverse_transaction(original: LedgerTransaction, key: str, description: str = "") -> LedgerTransaction:
    """Post the mirror image of `original` (every debit a credit and back), pointing at it.

    Exactly once by `key`; a transaction can be reversed only once. Refused with
    InsufficientFunds when the money has already moved on from a non-negative account.
    """
    with unit_of_work():
        legs = [
            Leg(e.account, e.money, "credit" if e.side is Side.DEBIT else "debit")
            for e in sorted(original.entries, key=lambda e: e.id)
        ]
        return post_transaction(
            key,
            description,
            legs,
            campaign_id=original.campaign_id,
            kind=TransactionKind.REVERSAL,
            reverses=original,
        )


def platform_fee(*, campaign_id: int, amount: Money, key: str) -> LedgerTransaction:
    """Settlement: the platform's fee leaves the campaign's escrow for the fee revenue account."""
    with unit_of_work():
        return post_transaction(
            key,
            f"platform fee of campaign #{campaign_id}",
            [
                Leg.debit(_escrow(campaign_id, amount.currency), amount),
                Leg.credit(get_account(AccountPurpose.PLATFORM_FEE_REVENUE, amount.currency), amount),
            ],
            campaign_id=campaign_id,
            kind=TransactionKind.PLATFORM_FEE,
        )


def processing_fee_from_escrow(*, campaign_id: int, amount: Money, key: str) -> LedgerTransaction:
    """Settlement: what the payment processor kept of the campaign's charges, borne by the
    campaign: escrow -> clearing (the processor paid us that much less)."""
    with unit_of_work():
        return post_transaction(
            key,
            f"processing fees of campaign #{campaign_id}",
            [
                Leg.debit(_escrow(campaign_id, amount.currency), amount),
                Leg.credit(_clearing(amount.currency), amount),
            ],
            campaign_id=campaign_id,
            kind=TransactionKind.PROCESSING_FEE,
        )


def recover_from_organisation(
    *, campaign_id: int, organisation_id: int, amount: Money, payable_part: Money, key: str
) -> LedgerTransaction:
    """Settlement, a refund after the release: put `amount` back in the campaign's escrow so the
    refund can leave it. `payable_part` comes out of what the platform still owes the
    organisation (not paid out yet); the rest is recorded as owed by the organisation
    (its receivable, an asset, collected from its next payout or by invoice)."""
    currency = amount.currency
    if payable_part.currency != currency or not 0 <= payable_part.amount <= amount.amount:
        raise LedgerError(
            f"The part taken from the payable ({payable_part}) must be between nothing and {amount}.",
            code=ErrorCode.LEDGER_AMOUNT,
        )
    with unit_of_work():
        legs = [Leg.credit(_escrow(campaign_id, currency), amount)]
        if payable_part.amount:
            payable = get_account(AccountPurpose.ORG_PAYABLE, currency, "organisation", organisation_id)
            legs.append(Leg.debit(payable, payable_part))
        if amount.amount > payable_part.amount:
            receivable = get_account(AccountPurpose.ORG_RECEIVABLE, currency, "organisation", organisation_id)
            legs.append(Leg.debit(receivable, Money(amount.amount - payable_part.amount, currency)))
        return post_transaction(
            key,
            f"refund recovered from organisation #{organisation_id}",
            legs,
            campaign_id=campaign_id,
            kind=TransactionKind.RECOVERY,
        )
