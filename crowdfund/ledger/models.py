"""The ledger: double-entry accounts and transactions, chained by hashes.

Double entry: every movement of money is a `LedgerTransaction` of two or more
`LedgerEntry` rows, each a debit or a credit of a positive amount on one
`LedgerAccount`; per currency the debits equal the credits, so money is never created or
lost, only moved. Entries are never updated or deleted: a mistake is corrected by a
reversing transaction that points at the original.

Hash chain: transactions are numbered by `sequence`; each stores the hash of the one
before it (`prev_hash`, 64 zeros for the first) and a SHA-256 over its own canonical
content (`canonical_content`), which names each account by its code (purpose, owner,
currency). Changing any past amount, account, key or time changes that hash and breaks
every link after it, which `flask ledger verify` reports. Someone able to rewrite the
whole chain from some point on is caught only by a head recorded elsewhere: the head is
published at /ledger/head.json and `flask ledger verify --expect-head SEQ:HASH` checks one.
"""

from __future__ import annotations

import enum
import hashlib
import json
from datetime import UTC, datetime

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    event,
    inspect,
)
from sqlalchemy.orm import Mapped, Session, mapped_column, relationship

from crowdfund.errors import Conflict, ErrorCode
from crowdfund.extensions import db
from crowdfund.models_base import UTCDateTime, enum_column, utcnow
from crowdfund.money import Money

GENESIS_HASH = "0" * 64

#: An entry as it enters the hash: (account_id, account_sha256, side, amount, currency).
EntryTuple = tuple[int, str, str, int, str]


class AccountType(enum.Enum):
    """The accounting type; it decides which side increases the balance."""

    ASSET = "asset"
    LIABILITY = "liability"
    REVENUE = "revenue"
    EXPENSE = "expense"
    EQUITY = "equity"

    @property
    def debit_normal(self) -> bool:
        """Assets and expenses grow with debits; the others grow with credits."""
        return self in (AccountType.ASSET, AccountType.EXPENSE)


class AccountPurpose(enum.Enum):
    """What an account is for. Each purpose has one accounting type."""

    #: Money held for us at the payment processor.
    GATEWAY_CLEARING = "gateway_clearing"
    #: Backers' money for one campaign, held until settlement (owner: campaign).
    CAMPAIGN_ESCROW = "campaign_escrow"
    #: What the platform owes a user: refunds to balance, loan repayments (owner: user).
    USER_WALLET = "user_wallet"
    #: What the platform owes an organisation, released from escrow (owner: organisation).
    ORG_PAYABLE = "org_payable"
    #: What the platform owes a hospital or other provider against invoices (owner: provider).
    PROVIDER_PAYABLE = "provider_payable"
    #: The platform's fees.
    PLATFORM_FEE_REVENUE = "platform_fee_revenue"
    #: What the payment processor charges the platform.
    PROCESSING_FEE_EXPENSE = "processing_fee_expense"
    #: What an organisation owes the platform: refunds made after its payout (owner: organisation).
    ORG_RECEIVABLE = "org_receivable"
    #: The platform's own capital (opening balances, write-offs).
    PLATFORM_EQUITY = "platform_equity"

    @property
    def account_type(self) -> AccountType:
        return PURPOSE_TYPES[self]

    @property
    def label(self) -> str:
        return PURPOSE_LABELS[self]


PURPOSE_TYPES: dict[AccountPurpose, AccountType] = {
    AccountPurpose.GATEWAY_CLEARING: AccountType.ASSET,
    AccountPurpose.CAMPAIGN_ESCROW: AccountType.LIABILITY,
    AccountPurpose.USER_WALLET: AccountType.LIABILITY,
    AccountPurpose.ORG_PAYABLE: AccountType.LIABILITY,
    AccountPurpose.PROVIDER_PAYABLE: AccountType.LIABILITY,
    AccountPurpose.PLATFORM_FEE_REVENUE: AccountType.REVENUE,
    AccountPurpose.PROCESSING_FEE_EXPENSE: AccountType.EXPENSE,
    AccountPurpose.ORG_RECEIVABLE: AccountType.ASSET,
    AccountPurpose.PLATFORM_EQUITY: AccountType.EQUITY,
}

PURPOSE_LABELS: dict[AccountPurpose, str] = {
    AccountPurpose.GATEWAY_CLEARING: "Held at the payment processor",
    AccountPurpose.CAMPAIGN_ESCROW: "Campaign escrow",
    AccountPurpose.USER_WALLET: "Backer balance",
    AccountPurpose.ORG_PAYABLE: "Owed to the organisation",
    AccountPurpose.PROVIDER_PAYABLE: "Owed to the provider",
    AccountPurpose.PLATFORM_FEE_REVENUE: "Platform fee",
    AccountPurpose.PROCESSING_FEE_EXPENSE: "Payment processing fee",
    AccountPurpose.ORG_RECEIVABLE: "Owed by the organisation",
    AccountPurpose.PLATFORM_EQUITY: "Platform capital",
}

#: Purposes whose balance may never go below zero: we can never owe less than nothing.
NON_NEGATIVE_PURPOSES = frozenset(
    {
        AccountPurpose.CAMPAIGN_ESCROW,
        AccountPurpose.USER_WALLET,
        AccountPurpose.ORG_PAYABLE,
        AccountPurpose.PROVIDER_PAYABLE,
    }
)


class Side(enum.Enum):
    DEBIT = "debit"
    CREDIT = "credit"


class TransactionKind(enum.StrEnum):
    """What a ledger transaction is: one kind per movement in `crowdfund.ledger.postings`.

    The kind and the idempotency key identify a movement; the public pages render its
    label from the kind (never from the stored description).
    """

    #: A backer's card payment: payment processor clearing -> the campaign's escrow.
    CHARGE = "charge"
    #: A refund of a charge: the campaign's escrow -> clearing.
    REFUND = "refund"
    #: Settlement releases escrow to the organisation, less the platform fee (one transaction).
    RELEASE = "release"
    #: Money paid out to an organisation or provider: their payable -> clearing.
    PAYOUT = "payout"
    #: What the payment processor charged the platform: processing fee expense -> clearing.
    PROCESSING_FEE = "processing_fee"
    #: A borrower's loan repayment: clearing -> the lenders' wallets.
    REPAYMENT = "repayment"
    #: Settlement: the platform's fee out of what a campaign collected: escrow -> fee revenue.
    PLATFORM_FEE = "platform_fee"
    #: Settlement, a refund after payout: what the organisation owes (its payable, then its
    #: receivable) -> the campaign's escrow, which the refund then leaves.
    RECOVERY = "recovery"
    #: An operator's movement between two accounts (opening balances, corrections).
    TRANSFER = "transfer"
    #: The mirror image of an earlier transaction, pointing at it.
    REVERSAL = "reversal"

    @property
    def label(self) -> str:
        return KIND_LABELS[self]


#: Labels for transaction kinds, as the public money trail shows them.
KIND_LABELS: dict[TransactionKind, str] = {
    TransactionKind.CHARGE: "Backer payment received",
    TransactionKind.REFUND: "Refund to backer",
    TransactionKind.RELEASE: "Released from escrow",
    TransactionKind.PAYOUT: "Paid out",
    TransactionKind.PROCESSING_FEE: "Payment processing fee",
    TransactionKind.REPAYMENT: "Loan repayment",
    TransactionKind.PLATFORM_FEE: "Platform fee",
    TransactionKind.RECOVERY: "Refund recovered from the organisation",
    TransactionKind.TRANSFER: "Transfer",
    TransactionKind.REVERSAL: "Correction (reversal)",
}


# --- errors ---------------------------------------------------------------------------
class LedgerError(Conflict):
    """A posting the ledger refuses; nothing was written."""

    code = ErrorCode.LEDGER_ERROR


class UnbalancedTransaction(LedgerError):
    code = ErrorCode.LEDGER_UNBALANCED


class InsufficientFunds(LedgerError):
    code = ErrorCode.LEDGER_INSUFFICIENT_FUNDS


class IdempotencyConflict(LedgerError):
    """The idempotency key was already used for a transaction with different content."""

    code = ErrorCode.LEDGER_IDEMPOTENCY_CONFLICT


class ImmutableLedgerError(LedgerError):
    """Code tried to update or delete a ledger entry or transaction, or an account's identity:
    history is append-only."""

    code = ErrorCode.LEDGER_APPEND_ONLY


# --- tables ---------------------------------------------------------------------------
class LedgerAccount(db.Model):
    """One account in one currency; unique by purpose + owner + currency (`code`)."""

    __tablename__ = "ledger_accounts"
    __table_args__ = (
        CheckConstraint("NOT non_negative OR balance_amount >= 0", name="not_overdrawn"),
        CheckConstraint("(owner_type IS NULL) = (owner_id IS NULL)", name="owner_complete"),
        Index("ix_ledger_accounts_owner", "owner_type", "owner_id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    #: "purpose:owner_type:owner_id:currency" (or "purpose:currency"): one account per code.
    code: Mapped[str] = mapped_column(String(120), unique=True)
    purpose: Mapped[AccountPurpose] = mapped_column(enum_column(AccountPurpose, "ledger_account_purpose"))
    type: Mapped[AccountType] = mapped_column(enum_column(AccountType, "ledger_account_type"))
    currency: Mapped[str] = mapped_column(String(3))
    #: "campaign", "user", "organisation", "provider" — or None for the platform's own accounts.
    owner_type: Mapped[str | None] = mapped_column(String(20))
    owner_id: Mapped[int | None] = mapped_column(Integer)
    #: When true, no transaction may leave the balance below zero.
    non_negative: Mapped[bool] = mapped_column(Boolean, default=False)
    #: Running balance in minor units, on the account's normal side (debits minus credits for
    #: assets and expenses, credits minus debits otherwise); updated with every entry, under a
    #: row lock, in the same database transaction.
    balance_amount: Mapped[int] = mapped_column(BigInteger, default=0)
    #: Number of entries on this account (with the balance, what the verifier checks).
    entry_count: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    @staticmethod
    def make_code(
        purpose: AccountPurpose, currency: str, owner_type: str | None, owner_id: int | None
    ) -> str:
        if owner_type is None:
            return f"{purpose.value}:{currency}"
        return f"{purpose.value}:{owner_type}:{owner_id}:{currency}"

    @property
    def balance(self) -> Money:
        return Money(self.balance_amount, self.currency)

    @property
    def label(self) -> str:
        owner = f" #{self.owner_id}" if self.owner_id is not None else ""
        return f"{self.purpose.label}{owner} ({self.currency})"

    def signed_change(self, side: Side, amount: int) -> int:
        """How an entry of `amount` on `side` changes this account's balance."""
        grows = (side is Side.DEBIT) == self.type.debit_normal
        return amount if grows else -amount

    def __repr__(self) -> str:
        return f"<LedgerAccount {self.id} {self.code} {self.balance_amount}>"


class LedgerTransaction(db.Model):
    """A balanced set of entries, posted once under its idempotency key, linked into the chain."""

    __tablename__ = "ledger_transactions"

    id: Mapped[int] = mapped_column(primary_key=True)
    #: Position in the hash chain: 1, 2, 3, … with no gaps.
    sequence: Mapped[int] = mapped_column(BigInteger, unique=True)
    #: Idempotency key, e.g. "pledge:123:charge": posting it again returns this transaction.
    key: Mapped[str] = mapped_column(String(200), unique=True)
    #: A `TransactionKind` value: what movement this is.
    kind: Mapped[str] = mapped_column(String(20), index=True)
    #: For operators; the public pages show the kind and the amounts, never this text.
    description: Mapped[str] = mapped_column(Text, default="")
    campaign_id: Mapped[int | None] = mapped_column(ForeignKey("campaigns.id"), index=True)
    #: The transaction this one reverses (each can be reversed once).
    reverses_id: Mapped[int | None] = mapped_column(ForeignKey("ledger_transactions.id"), unique=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    #: The previous transaction's hash (GENESIS_HASH for the first).
    prev_hash: Mapped[str] = mapped_column(String(64))
    #: SHA-256 (hex) of canonical_content().
    hash: Mapped[str] = mapped_column(String(64), unique=True)

    entries: Mapped[list[LedgerEntry]] = relationship(
        back_populates="transaction", order_by="LedgerEntry.id", lazy="selectin"
    )
    reverses: Mapped[LedgerTransaction | None] = relationship(remote_side=[id], foreign_keys=[reverses_id])

    def canonical_content(self, entries: list[EntryTuple] | None = None) -> str:
        """The exact text the hash is computed over (see `canonical_content`)."""
        if entries is None:
            entries = [e.hashed_tuple() for e in self.entries]
        return canonical_content(
            sequence=self.sequence,
            key=self.key,
            created_at=self.created_at,
            kind=self.kind,
            description=self.description,
            campaign_id=self.campaign_id,
            reverses_id=self.reverses_id,
            entries=entries,
            prev_hash=self.prev_hash,
        )

    def compute_hash(self, entries: list[EntryTuple] | None = None) -> str:
        return sha256_hex(self.canonical_content(entries))

    def amounts(self) -> list[Money]:
        """The amount moved, per currency (total debits, which equal total credits)."""
        return [Money(amount, currency) for currency, amount in sorted(self.totals().items())]

    def totals(self) -> dict[str, int]:
        """Total debited per currency (equal to the total credited when it balances)."""
        out: dict[str, int] = {}
        for e in self.entries:
            if e.side is Side.DEBIT:
                out[e.currency] = out.get(e.currency, 0) + e.amount
        return out

    @property
    def kind_label(self) -> str:
        try:
            return TransactionKind(self.kind).label
        except ValueError:
            return self.kind.replace("_", " ").capitalize()

    def __repr__(self) -> str:
        return f"<LedgerTransaction {self.id} #{self.sequence} {self.key}>"


class LedgerEntry(db.Model):
    """One debit or credit of a positive amount on one account. Never updated, never deleted."""

    __tablename__ = "ledger_entries"
    __table_args__ = (CheckConstraint("amount > 0", name="amount_positive"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    transaction_id: Mapped[int] = mapped_column(ForeignKey("ledger_transactions.id"), index=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("ledger_accounts.id"), index=True)
    side: Mapped[Side] = mapped_column(enum_column(Side, "ledger_side"))
    #: Minor units, always positive; the side says which way it moves.
    amount: Mapped[int] = mapped_column(BigInteger)
    #: Always the account's currency.
    currency: Mapped[str] = mapped_column(String(3))

    transaction: Mapped[LedgerTransaction] = relationship(back_populates="entries")
    account: Mapped[LedgerAccount] = relationship()

    @property
    def money(self) -> Money:
        return Money(self.amount, self.currency)

    def hashed_tuple(self) -> EntryTuple:
        """This entry as it enters its transaction's hash (see `canonical_content`)."""
        return (
            self.account_id,
            account_sha256(self.account.code),
            self.side.value,
            self.amount,
            self.currency,
        )

    def __repr__(self) -> str:
        return f"<LedgerEntry {self.id} {self.side.value} {self.amount} {self.currency} on {self.account_id}>"


class LedgerChainHead(db.Model):
    """One row: the end of the hash chain. Locked FOR UPDATE to append, so the chain has one order."""

    __tablename__ = "ledger_chain_head"

    id: Mapped[int] = mapped_column(primary_key=True)
    #: Sequence of the last transaction (0 before the first).
    sequence: Mapped[int] = mapped_column(BigInteger, default=0)
    #: Hash of the last transaction (GENESIS_HASH before the first).
    head_hash: Mapped[str] = mapped_column(String(64), default=GENESIS_HASH)


CHAIN_HEAD_ID = 1


# --- hashing --------------------------------------------------------------------------
def sha256_hex(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def account_sha256(code: str) -> str:
    """How an account's identity (its code) enters the hash of the transactions that touch it."""
    return sha256_hex(code)


def format_timestamp(value: datetime) -> str:
    """UTC, microseconds, 'Z': '2025-01-31T12:00:00.123456Z'."""
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def canonical_content(
    *,
    sequence: int,
    key: str,
    created_at: datetime,
    kind: str,
    description: str,
    campaign_id: int | None,
    reverses_id: int | None,
    entries: list[EntryTuple],
    prev_hash: str,
) -> str:
    """Compact JSON with sorted keys of everything a transaction says.

    The free-text fields (key, description) enter as their SHA-256, so the public JSON can
    publish every input of the hash without publishing the text; editing the text still
    changes the hash. Entries are [account_id, account_sha256, side, amount, currency],
    sorted, where account_sha256 is the SHA-256 of the account's code
    ("purpose:owner_type:owner_id:currency"): moving an account to another owner, purpose
    or currency breaks the hash of every transaction that touched it.
    """
    document = {
        "sequence": sequence,
        "key_sha256": sha256_hex(key),
        "created_at": format_timestamp(created_at),
        "kind": kind,
        "description_sha256": sha256_hex(description or ""),
        "campaign_id": campaign_id,
        "reverses_id": reverses_id,
        "entries": sorted([list(e) for e in entries]),
        "prev_hash": prev_hash,
    }
    return json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=True)


# --- append-only, enforced by the models (and by triggers on PostgreSQL) ---------------
#: The columns that say which account an account is; its balance and entry count change.
ACCOUNT_IDENTITY = (
    "id",
    "code",
    "purpose",
    "type",
    "currency",
    "owner_type",
    "owner_id",
    "non_negative",
    "created_at",
)


def _refuse_update(mapper, connection, target) -> None:
    state = inspect(target)
    for attr in mapper.column_attrs:
        if state.attrs[attr.key].history.has_changes():
            raise ImmutableLedgerError(
                f"{type(target).__name__} {target.id} is append-only: correct it with a reversing transaction."
            )


def _refuse_identity_change(mapper, connection, target) -> None:
    state = inspect(target)
    for name in ACCOUNT_IDENTITY:
        if state.attrs[name].history.has_changes():
            raise ImmutableLedgerError(f"Ledger account {target.id} cannot change its {name}.")


def _refuse_delete(mapper, connection, target) -> None:
    raise ImmutableLedgerError(
        f"{type(target).__name__} {target.id} is append-only: correct it with a reversing transaction."
    )


for _model in (LedgerEntry, LedgerTransaction):
    event.listen(_model, "before_update", _refuse_update)
    event.listen(_model, "before_delete", _refuse_delete)
event.listen(LedgerAccount, "before_update", _refuse_identity_change)
event.listen(LedgerAccount, "before_delete", _refuse_delete)


@event.listens_for(Session, "before_flush")
def _refuse_late_entries(session: Session, flush_context, instances) -> None:
    """Entries are written with their transaction, never added to one already posted."""
    new = session.new  # a fresh set each time it is read: read it once
    for obj in new:
        if isinstance(obj, LedgerEntry):
            txn = obj.transaction
            if (txn is not None and txn not in new) or (txn is None and obj.transaction_id is not None):
                raise ImmutableLedgerError(
                    "Entries cannot be added to a posted ledger transaction: post a new transaction instead."
                )
