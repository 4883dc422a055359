"""Ledger use cases: find accounts, post transactions, read balances, verify, the money trail.

`post_transaction` is the only way money moves, and only the movements in
`crowdfund.ledger.postings` call it. It is exactly-once by idempotency key, refuses an
unbalanced transaction, one that would overdraw a non-negative account and one between
two campaigns' escrows (writing nothing), updates the stored balances under row locks
and appends the transaction to the hash chain. It joins the caller's unit of work
(flushes, never commits) and takes the ledger's locks last: the accounts in id order,
then the chain head.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

from flask import current_app
from sqlalchemy import func, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import selectinload

from crowdfund.database import lock, unit_of_work
from crowdfund.errors import ErrorCode
from crowdfund.extensions import db
from crowdfund.ledger.models import (
    CHAIN_HEAD_ID,
    GENESIS_HASH,
    NON_NEGATIVE_PURPOSES,
    AccountPurpose,
    AccountType,
    EntryTuple,
    IdempotencyConflict,
    InsufficientFunds,
    LedgerAccount,
    LedgerChainHead,
    LedgerEntry,
    LedgerError,
    LedgerTransaction,
    Side,
    TransactionKind,
    UnbalancedTransaction,
    account_sha256,
    canonical_content,
    format_timestamp,
    sha256_hex,
)
from crowdfund.models_base import utcnow
from crowdfund.money import Money, MoneyError, get_currency

__all__ = [
    "AccountPurpose",
    "IdempotencyConflict",
    "InsufficientFunds",
    "LedgerAccount",
    "LedgerError",
    "LedgerTransaction",
    "Leg",
    "UnbalancedTransaction",
    "VerificationReport",
    "account_balance",
    "clearing_account",
    "escrow_account",
    "fee_revenue_account",
    "find_account",
    "find_transaction",
    "get_account",
    "org_payable_account",
    "post_transaction",
    "processing_fee_account",
    "provider_payable_account",
    "verify_ledger",
    "wallet_account",
]


# --- accounts -------------------------------------------------------------------------
def _insert(model):
    dialect = db.session.get_bind().dialect.name
    return (pg_insert if dialect == "postgresql" else sqlite_insert)(model)


def find_account(
    purpose: AccountPurpose, currency: str, owner_type: str | None = None, owner_id: int | None = None
) -> LedgerAccount | None:
    """The account if it exists (read-only: never creates one)."""
    code = LedgerAccount.make_code(purpose, currency.upper(), owner_type, owner_id)
    return db.session.scalars(select(LedgerAccount).where(LedgerAccount.code == code)).one_or_none()


def get_account(
    purpose: AccountPurpose, currency: str, owner_type: str | None = None, owner_id: int | None = None
) -> LedgerAccount:
    """The account for purpose + owner + currency, created on first use (never duplicated).

    Safe when two processes ask at once: the insert is INSERT … ON CONFLICT DO NOTHING
    on the unique code, then the row is read back. Creating one joins the caller's unit of
    work, or is its own (committed at once) when there is none.
    """
    try:
        currency = get_currency(currency).code
    except MoneyError as exc:
        raise LedgerError(str(exc), code=ErrorCode.LEDGER_CURRENCY) from None
    if (owner_type is None) != (owner_id is None):
        raise LedgerError("An account owner needs both a type and an id.", code=ErrorCode.LEDGER_OWNER)
    code = LedgerAccount.make_code(purpose, currency, owner_type, owner_id)
    account = db.session.scalars(select(LedgerAccount).where(LedgerAccount.code == code)).one_or_none()
    if account is not None:
        return account
    with unit_of_work():
        db.session.execute(
            _insert(LedgerAccount)
            .values(
                code=code,
                purpose=purpose,
                type=purpose.account_type,
                currency=currency,
                owner_type=owner_type,
                owner_id=owner_id,
                non_negative=purpose in NON_NEGATIVE_PURPOSES,
                balance_amount=0,
                entry_count=0,
                created_at=utcnow(),
            )
            .on_conflict_do_nothing(index_elements=["code"])
        )
        return db.session.scalars(select(LedgerAccount).where(LedgerAccount.code == code)).one()


def escrow_account(campaign) -> LedgerAccount:
    """The campaign's escrow: backers' money for this campaign only, until settlement."""
    return get_account(AccountPurpose.CAMPAIGN_ESCROW, campaign.currency, "campaign", campaign.id)


def clearing_account(currency: str) -> LedgerAccount:
    """Money held at the payment processor in `currency`."""
    return get_account(AccountPurpose.GATEWAY_CLEARING, currency)


def wallet_account(user_id: int, currency: str) -> LedgerAccount:
    """What the platform owes a user (refunds to balance, loan repayments)."""
    return get_account(AccountPurpose.USER_WALLET, currency, "user", user_id)


def org_payable_account(organisation_id: int, currency: str) -> LedgerAccount:
    """What the platform owes an organisation, waiting for payout."""
    return get_account(AccountPurpose.ORG_PAYABLE, currency, "organisation", organisation_id)


def provider_payable_account(provider_id: int, currency: str) -> LedgerAccount:
    """What the platform owes a hospital or other provider."""
    return get_account(AccountPurpose.PROVIDER_PAYABLE, currency, "provider", provider_id)


def fee_revenue_account(currency: str) -> LedgerAccount:
    return get_account(AccountPurpose.PLATFORM_FEE_REVENUE, currency)


def processing_fee_account(currency: str) -> LedgerAccount:
    return get_account(AccountPurpose.PROCESSING_FEE_EXPENSE, currency)


def account_balance(account: LedgerAccount) -> Money:
    """The account's stored running balance, read fresh from the database (no history scan)."""
    amount = db.session.scalar(select(LedgerAccount.balance_amount).where(LedgerAccount.id == account.id))
    return Money(int(amount or 0), account.currency)


def _balance_of(
    purpose: AccountPurpose,
    currency: str,
    owner_type: str | None = None,
    owner_id: int | None = None,
    *,
    for_update: bool = False,
) -> Money:
    account = find_account(purpose, currency, owner_type, owner_id)
    if account is None:
        return Money.zero(currency.upper())
    if for_update:
        return lock(LedgerAccount, account.id).balance
    return account_balance(account)


def balance_of_escrow(campaign_id: int, currency: str) -> Money:
    """What the campaign's escrow holds now (nothing before its first payment)."""
    return _balance_of(AccountPurpose.CAMPAIGN_ESCROW, currency, "campaign", campaign_id)


def balance_of_clearing(currency: str) -> Money:
    """What the payment processor holds for us in `currency`, as the ledger sees it."""
    return _balance_of(AccountPurpose.GATEWAY_CLEARING, currency)


def balance_owed(
    *,
    currency: str,
    organisation_id: int | None = None,
    provider_id: int | None = None,
    for_update: bool = False,
) -> Money:
    """What the platform owes the provider (when given), else the organisation, waiting for payout.

    With `for_update` the payable account stays locked until the caller's transaction
    ends, so payouts are checked against it one at a time.
    """
    if provider_id is not None:
        return _balance_of(
            AccountPurpose.PROVIDER_PAYABLE, currency, "provider", provider_id, for_update=for_update
        )
    return _balance_of(
        AccountPurpose.ORG_PAYABLE, currency, "organisation", organisation_id, for_update=for_update
    )


# --- posting --------------------------------------------------------------------------
@dataclass(frozen=True)
class Leg:
    """One entry to post: a positive amount debited or credited on one account."""

    account: LedgerAccount
    amount: Money
    side: Literal["debit", "credit"]

    def __post_init__(self) -> None:
        if self.side not in ("debit", "credit"):
            raise LedgerError(f"A leg is a debit or a credit, not {self.side!r}.", code=ErrorCode.LEDGER_SIDE)
        if not isinstance(self.amount, Money) or self.amount.amount <= 0:
            raise LedgerError("Every ledger entry needs a positive amount.", code=ErrorCode.LEDGER_AMOUNT)
        if self.amount.currency != self.account.currency:
            raise LedgerError(
                f"A {self.amount.currency} amount cannot go on a {self.account.currency} account.",
                code=ErrorCode.LEDGER_CURRENCY,
            )

    @classmethod
    def debit(cls, account: LedgerAccount, amount: Money) -> Leg:
        return cls(account, amount, "debit")

    @classmethod
    def credit(cls, account: LedgerAccount, amount: Money) -> Leg:
        return cls(account, amount, "credit")

    def as_tuple(self) -> tuple[int, str, int, str]:
        return (self.account.id, self.side, self.amount.amount, self.amount.currency)

    def hashed_tuple(self) -> EntryTuple:
        """This leg as its entry will enter the hash (see `canonical_content`)."""
        return (
            self.account.id,
            account_sha256(self.account.code),
            self.side,
            self.amount.amount,
            self.amount.currency,
        )


def _check_balanced(legs: Sequence[Leg]) -> None:
    if len(legs) < 2:
        raise UnbalancedTransaction("A ledger transaction needs at least two entries.")
    net: dict[str, int] = defaultdict(int)
    for leg in legs:
        net[leg.amount.currency] += leg.amount.amount if leg.side == "debit" else -leg.amount.amount
    for currency, diff in sorted(net.items()):
        if diff:
            raise UnbalancedTransaction(
                f"The entries do not balance in {currency}: debits and credits differ by "
                f"{Money(abs(diff), currency).format(with_code=True)}."
            )


def _lock_chain_head() -> LedgerChainHead:
    """Lock the chain head row (creating it once): appends to the chain happen one at a time."""
    stmt = (
        select(LedgerChainHead)
        .where(LedgerChainHead.id == CHAIN_HEAD_ID)
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    head = db.session.scalars(stmt).one_or_none()
    if head is None:
        db.session.execute(
            _insert(LedgerChainHead)
            .values(id=CHAIN_HEAD_ID, sequence=0, head_hash=GENESIS_HASH)
            .on_conflict_do_nothing(index_elements=["id"])
        )
        head = db.session.scalars(stmt).one()
    return head


def _same_content(
    txn: LedgerTransaction, legs: Sequence[Leg], kind: str, campaign_id: int | None, reverses_id: int | None
) -> bool:
    stored = sorted((e.account_id, e.side.value, e.amount, e.currency) for e in txn.entries)
    wanted = sorted(leg.as_tuple() for leg in legs)
    return (
        stored == wanted
        and txn.kind == kind
        and txn.campaign_id == campaign_id
        and txn.reverses_id == reverses_id
    )


def _replay(
    key: str, legs: Sequence[Leg], kind: str, campaign_id: int | None, reverses_id: int | None
) -> LedgerTransaction | None:
    """The transaction already posted under `key`, if any; an error if its content differs."""
    existing = find_transaction(key)
    if existing is None:
        return None
    if not _same_content(existing, legs, kind, campaign_id, reverses_id):
        raise IdempotencyConflict(
            f"The ledger key {key!r} was already used for a different transaction (#{existing.sequence})."
        )
    return existing


def find_transaction(key: str) -> LedgerTransaction | None:
    """The transaction posted under idempotency key `key`, or None."""
    return db.session.scalars(select(LedgerTransaction).where(LedgerTransaction.key == key)).one_or_none()


def _checked_key(key: str) -> str:
    key = (key or "").strip()
    if not key or len(key) > 200:
        raise LedgerError(
            "A ledger transaction needs an idempotency key of 1 to 200 characters.", code=ErrorCode.LEDGER_KEY
        )
    return key


def _checked_kind(kind: TransactionKind | str) -> TransactionKind:
    try:
        return TransactionKind(kind)
    except ValueError:
        raise LedgerError(f"Unknown ledger transaction kind {kind!r}.", code=ErrorCode.LEDGER_KIND) from None


def _check_movement(accounts: Sequence[LedgerAccount]) -> None:
    """Refuse a transaction that moves money between two campaigns' escrows."""
    escrows = {a.id for a in accounts if a.purpose is AccountPurpose.CAMPAIGN_ESCROW}
    if len(escrows) > 1:
        raise LedgerError(
            "Money never moves from one campaign's escrow to another's.",
            code=ErrorCode.LEDGER_FORBIDDEN_MOVEMENT,
        )


def _lock_accounts(legs: Sequence[Leg]) -> dict[int, LedgerAccount]:
    """Lock the legs' accounts in id order (no deadlocks between postings) and read them fresh."""
    account_ids = sorted({leg.account.id for leg in legs})
    return {
        a.id: a
        for a in db.session.scalars(
            select(LedgerAccount)
            .where(LedgerAccount.id.in_(account_ids))
            .order_by(LedgerAccount.id)
            .with_for_update()
            .execution_options(populate_existing=True)
        )
    }


def _balance_changes(accounts: dict[int, LedgerAccount], legs: Sequence[Leg]) -> dict[int, int]:
    """How each account's balance changes; InsufficientFunds if a non-negative one would go below zero."""
    change: dict[int, int] = defaultdict(int)
    for leg in legs:
        change[leg.account.id] += accounts[leg.account.id].signed_change(Side(leg.side), leg.amount.amount)
    for account_id, delta in sorted(change.items()):
        account = accounts[account_id]
        after = account.balance_amount + delta
        if account.non_negative and after < 0:
            raise InsufficientFunds(
                f"{account.label} holds {account.balance.format(with_code=True)}; this transaction would take "
                f"it to {Money(after, account.currency).format(with_code=True)}."
            )
    return change


def _check_not_reversed(reverses: LedgerTransaction | None) -> None:
    if reverses is None:
        return
    already = db.session.scalar(
        select(LedgerTransaction.sequence).where(LedgerTransaction.reverses_id == reverses.id)
    )
    if already is not None:
        raise LedgerError(
            f"Transaction #{reverses.sequence} has already been reversed (by #{already}).",
            code=ErrorCode.LEDGER_ALREADY_REVERSED,
        )


def post_transaction(
    key: str,
    description: str,
    legs: Sequence[Leg],
    *,
    campaign_id: int | None = None,
    kind: TransactionKind = TransactionKind.TRANSFER,
    reverses: LedgerTransaction | None = None,
) -> LedgerTransaction:
    """Post a balanced transaction exactly once under idempotency `key`; flush, don't commit.

    The same key with the same legs, kind, campaign and reversed transaction returns the
    first transaction and changes nothing; with different content it raises
    IdempotencyConflict. An unbalanced set of legs raises UnbalancedTransaction; a
    transaction that would take a non-negative account below zero raises
    InsufficientFunds; one between two campaigns' escrows is refused
    (`ledger_forbidden_movement`). In every case nothing is written.

    Other code calls the movements in `crowdfund.ledger.postings`, not this. It joins the
    caller's unit of work (which commits once) or is its own. The ledger locks come last:
    the accounts in id order, then the chain head.
    """
    key = _checked_key(key)
    kind = _checked_kind(kind)
    legs = list(legs)
    for leg in legs:
        if leg.account.id is None:
            raise LedgerError("Ledger accounts must come from get_account().", code=ErrorCode.LEDGER_ACCOUNT)
    _check_balanced(legs)
    reverses_id = reverses.id if reverses is not None else None

    with unit_of_work():
        # A replay needs no lock: the first posting is committed and never changes.
        existing = _replay(key, legs, kind, campaign_id, reverses_id)
        if existing is not None:
            return existing
        accounts = _lock_accounts(legs)
        _check_movement(list(accounts.values()))
        head = _lock_chain_head()
        # Under the locks: a concurrent posting of the same key has committed or rolled back.
        existing = _replay(key, legs, kind, campaign_id, reverses_id)
        if existing is not None:
            return existing
        _check_not_reversed(reverses)
        change = _balance_changes(accounts, legs)
        txn = LedgerTransaction(
            sequence=head.sequence + 1,
            key=key,
            kind=kind.value,
            description=description or "",
            campaign_id=campaign_id,
            reverses_id=reverses_id,
            created_at=utcnow(),
            prev_hash=head.head_hash,
        )
        txn.hash = txn.compute_hash([leg.hashed_tuple() for leg in legs])
        db.session.add(txn)
        for leg in legs:
            txn.entries.append(
                LedgerEntry(
                    account_id=leg.account.id,
                    side=Side(leg.side),
                    amount=leg.amount.amount,
                    currency=leg.amount.currency,
                )
            )
        entries_per_account = Counter(leg.account.id for leg in legs)
        for account_id, delta in change.items():
            account = accounts[account_id]
            account.balance_amount += delta
            account.entry_count += entries_per_account[account_id]
        head.sequence = txn.sequence
        head.head_hash = txn.hash
        db.session.flush()
    return txn


def chain_head() -> tuple[int, str]:
    """(sequence, hash) of the last transaction in the chain: (0, 64 zeros) when empty."""
    row = db.session.execute(
        select(LedgerChainHead.sequence, LedgerChainHead.head_hash).where(LedgerChainHead.id == CHAIN_HEAD_ID)
    ).first()
    return (int(row[0]), row[1]) if row else (0, GENESIS_HASH)


# --- verification ---------------------------------------------------------------------
@dataclass
class VerificationReport:
    """What `verify_ledger` found; `ok` is False when anything is wrong."""

    transactions: int = 0
    accounts: int = 0
    #: currency -> (total debits, total credits) in minor units
    totals: dict[str, tuple[int, int]] = field(default_factory=dict)
    head_sequence: int = 0
    head_hash: str = GENESIS_HASH
    problems: list[str] = field(default_factory=list)
    #: (sequence, id, key) of the first transaction found broken, if any
    first_broken: tuple[int, int, str] | None = None

    @property
    def ok(self) -> bool:
        return not self.problems

    def _fail(self, message: str, txn: tuple[int, int, str] | None = None) -> None:
        if txn is not None and self.first_broken is None:
            self.first_broken = txn
        if len(self.problems) < 50:
            self.problems.append(message)


def parse_head(text: str) -> tuple[int, str]:
    """'SEQUENCE:HASH' (as published in /ledger/head.json) -> (sequence, hash); ValueError if malformed."""
    sequence, _, head_hash = (text or "").strip().partition(":")
    head_hash = head_hash.strip().lower()
    if (
        not sequence.strip().isdigit()
        or len(head_hash) != 64
        or any(c not in "0123456789abcdef" for c in head_hash)
    ):
        raise ValueError("expected SEQUENCE:HASH, e.g. 42:3f5c… (64 hex digits)")
    return int(sequence), head_hash


def verify_ledger(batch_size: int = 1000, expect_heads: Sequence[tuple[int, str]] = ()) -> VerificationReport:
    """Recompute the whole ledger from its entries and compare with what is stored.

    Checks, in chain order: sequence numbers without gaps, each prev_hash equals the
    previous hash, each hash equals the SHA-256 of the transaction's content (including
    the codes of the accounts it touches), each transaction has two or more positive
    entries in its accounts' currencies, balances per currency and touches at most one
    campaign escrow. Every account's code, type and non-negative flag agree with its
    purpose, owner and currency; every stored balance (and entry count) equals the sum of
    its entries; no non-negative account is below zero; the chain head row names the last
    transaction. Each of `expect_heads` — (sequence, hash) pairs published earlier — must
    still be in the chain at that sequence: only that catches a chain rewritten and
    re-hashed from some point on, or its last transactions deleted. Reads in batches; holds
    no ORM objects.
    """
    report = VerificationReport()
    session = db.session()
    own_transaction = not session.in_transaction()
    if own_transaction and session.get_bind().dialect.name == "postgresql":
        # One snapshot for the whole check, so postings made meanwhile do not look like errors.
        session.connection(execution_options={"isolation_level": "REPEATABLE READ"})
    try:
        _Verifier(report, dict(expect_heads)).run(batch_size)
    finally:
        if own_transaction:
            session.rollback()  # read-only: end the snapshot
    return report


class _Verifier:
    """One pass over the ledger, filling a VerificationReport."""

    def __init__(self, report: VerificationReport, expect_heads: dict[int, str]) -> None:
        self.report = report
        self.expect_heads = expect_heads
        self.accounts: dict = {}
        self.computed: dict[int, int] = defaultdict(int)
        self.counted: dict[int, int] = defaultdict(int)
        self.debits: dict[str, int] = defaultdict(int)
        self.credits: dict[str, int] = defaultdict(int)
        self.prev_hash = GENESIS_HASH
        self.last_sequence = 0

    def run(self, batch_size: int) -> None:
        self.load_accounts()
        for txns, entries in self.batches(batch_size):
            for t in txns:
                self.check_transaction(t, entries[t.id])
        self.check_accounts()
        self.check_head()

    def load_accounts(self) -> None:
        table = LedgerAccount.__table__
        self.accounts = {row.id: row for row in db.session.execute(select(table))}
        self.report.accounts = len(self.accounts)
        for account in self.accounts.values():
            purpose = AccountPurpose(account.purpose)
            expected_code = LedgerAccount.make_code(
                purpose, account.currency, account.owner_type, account.owner_id
            )
            if (
                account.code != expected_code
                or AccountType(account.type) is not purpose.account_type
                or bool(account.non_negative) != (purpose in NON_NEGATIVE_PURPOSES)
            ):
                self.report._fail(
                    f"account {account.code} (id {account.id}): its code, type or overdraft rule does not "
                    f"match its purpose, owner and currency (expected code {expected_code})."
                )

    def batches(self, batch_size: int):
        """(transactions, their entries by transaction id), batch by batch in chain order."""
        last = 0
        while True:
            txns = db.session.execute(
                select(LedgerTransaction.__table__)
                .where(LedgerTransaction.sequence > last)
                .order_by(LedgerTransaction.sequence)
                .limit(batch_size)
            ).all()
            if not txns:
                return
            entries: dict[int, list] = defaultdict(list)
            for e in db.session.execute(
                select(LedgerEntry.__table__)
                .where(LedgerEntry.transaction_id.in_([t.id for t in txns]))
                .order_by(LedgerEntry.id)
            ):
                entries[e.transaction_id].append(e)
            yield txns, entries
            last = txns[-1].sequence

    def check_transaction(self, t, legs: list) -> None:
        report = self.report
        ident = (t.sequence, t.id, t.key)
        name = f"transaction #{t.sequence} (id {t.id}, key {t.key!r})"
        report.transactions += 1
        if t.sequence != self.last_sequence + 1:
            report._fail(f"{name}: expected sequence {self.last_sequence + 1}; the chain has a gap.", ident)
        if t.prev_hash != self.prev_hash:
            report._fail(f"{name}: prev_hash does not match the previous transaction's hash.", ident)
        if self._recompute_hash(t, legs) != t.hash:
            report._fail(
                f"{name}: its hash does not match its content (an entry, account or field was changed).",
                ident,
            )
        if t.sequence in self.expect_heads and self.expect_heads[t.sequence] != t.hash:
            report._fail(
                f"{name}: its hash is not the published head {self.expect_heads[t.sequence]}.", ident
            )
        if len(legs) < 2:
            report._fail(f"{name}: has {len(legs)} entries; a transaction needs at least two.", ident)
        for problem in self._entry_problems(legs):
            report._fail(f"{name}: {problem}", ident)
        self.prev_hash, self.last_sequence = t.hash, t.sequence

    def _recompute_hash(self, t, legs: list) -> str:
        tuples = [
            (
                e.account_id,
                account_sha256(self.accounts[e.account_id].code) if e.account_id in self.accounts else "",
                Side(e.side).value,
                int(e.amount),
                e.currency,
            )
            for e in legs
        ]
        return sha256_hex(
            canonical_content(
                sequence=t.sequence,
                key=t.key,
                created_at=t.created_at,
                kind=t.kind,
                description=t.description,
                campaign_id=t.campaign_id,
                reverses_id=t.reverses_id,
                entries=tuples,
                prev_hash=t.prev_hash,
            )
        )

    def _entry_problems(self, legs: list) -> list[str]:
        """What is wrong with one transaction's entries; adds them to the running totals."""
        problems = []
        net: dict[str, int] = defaultdict(int)
        escrows = set()
        for e in legs:
            side, amount = Side(e.side), int(e.amount)
            account = self.accounts.get(e.account_id)
            if amount <= 0:
                problems.append(f"entry {e.id} has a non-positive amount {amount}.")
            if account is None or account.currency != e.currency:
                problems.append(f"entry {e.id} is not in its account's currency.")
                continue
            if AccountPurpose(account.purpose) is AccountPurpose.CAMPAIGN_ESCROW:
                escrows.add(e.account_id)
            net[e.currency] += amount if side is Side.DEBIT else -amount
            (self.debits if side is Side.DEBIT else self.credits)[e.currency] += amount
            grows = (side is Side.DEBIT) == AccountType(account.type).debit_normal
            self.computed[e.account_id] += amount if grows else -amount
            self.counted[e.account_id] += 1
        problems += [
            f"does not balance in {currency} (off by {diff} minor units)."
            for currency, diff in sorted(net.items())
            if diff
        ]
        if len(escrows) > 1:
            problems.append("moves money between campaign escrows, which is never allowed.")
        return problems

    def check_accounts(self) -> None:
        for account_id, account in sorted(self.accounts.items()):
            computed, counted = self.computed[account_id], self.counted[account_id]
            if account.balance_amount != computed or account.entry_count != counted:
                self.report._fail(
                    f"account {account.code} (id {account_id}): stored balance {account.balance_amount} "
                    f"({account.entry_count} entries) but its entries sum to {computed} ({counted} entries)."
                )
            if account.non_negative and account.balance_amount < 0:
                self.report._fail(
                    f"account {account.code} (id {account_id}) is below zero: {account.balance_amount}."
                )

    def check_head(self) -> None:
        report = self.report
        head_sequence, head_hash = chain_head()
        if (head_sequence, head_hash) != (self.last_sequence, self.prev_hash):
            report._fail(
                f"the chain head says #{head_sequence} {head_hash[:12]}… but the last transaction is "
                f"#{self.last_sequence} {self.prev_hash[:12]}…"
            )
        for sequence, expected in sorted(self.expect_heads.items()):
            if sequence > self.last_sequence:
                report._fail(
                    f"the published head #{sequence} {expected[:12]}… is missing: the chain ends at "
                    f"#{self.last_sequence} (transactions were deleted)."
                )
        report.head_sequence, report.head_hash = self.last_sequence, self.prev_hash
        report.totals = {
            c: (self.debits[c], self.credits[c]) for c in sorted(set(self.debits) | set(self.credits))
        }
        for currency, (d, c) in report.totals.items():
            if d != c:
                report._fail(f"total debits and credits differ in {currency}: {d} against {c}.")


# --- the public money trail -----------------------------------------------------------
@dataclass(frozen=True)
class KindMovement:
    """Every transaction of one kind on a campaign: how many, and how much they moved."""

    kind: TransactionKind
    transactions: int
    #: The sum of the transactions' debit legs in the campaign's currency (= their credit legs).
    amount: Money

    @property
    def label(self) -> str:
        return self.kind.label


@dataclass(frozen=True)
class EscrowMovement:
    """The net effect on the campaign's escrow of a kind that no figure names (a kind added
    later — a tranche to a hospital, a surplus returned — shows here until a figure names it)."""

    kind: TransactionKind
    #: Credits minus debits on the escrow: positive added to it, negative took from it.
    net: Money

    @property
    def label(self) -> str:
        return self.kind.label


@dataclass(frozen=True)
class TrailLine:
    """One thing that followed a campaign's close, as the package that did it records it:
    shares issued, repayments received, tranches paid to a hospital, a surplus returned.

    Each after-success package provides a function of the campaign returning its lines (an
    empty list when it has nothing to say); `create_app` lists those functions in
    ``app.extensions[TRAIL_SECTIONS]`` (the ledger cannot import the packages that post to it).
    """

    #: Stable name: the JSON key and the page's ``data-after-success``.
    name: str
    label: str
    #: How many (shares, repayments, tranches) and what they are called.
    count: int
    unit: str
    amount: Money
    #: How many people or bodies it went to or came from (shareholders, lenders, hospitals).
    recipients: int | None = None
    recipients_unit: str = ""


#: The key of ``app.extensions`` holding the after-success sections: functions of a campaign
#: returning `TrailLine`s (see `TrailLine`).
TRAIL_SECTIONS = "money_trail_sections"


def after_success_lines(campaign) -> list[TrailLine]:
    """What every registered after-success section says about `campaign`, in order."""
    sections = current_app.extensions.get(TRAIL_SECTIONS, ())
    return [line for section in sections for line in section(campaign)]


@dataclass
class MoneyTrail:
    """A campaign's money as the ledger records it; everything in the campaign's currency.

    Each figure is a sum of the campaign's ledger entries of one `TransactionKind` on one
    kind of account (`TRAIL_FIGURES`), so the figures tie to the ledger `flask ledger
    verify` checks: money in − refunded − platform fee − processing fee − released +
    recovered − repaid to lenders + other escrow movements + corrections = held in escrow,
    the escrow account's own balance. Paid out is what left the organisation's (or
    provider's) payable for its bank account, out of what was released; paid to providers
    is the part of it paid to hospitals and other providers. Money in is every payment into
    the escrow: backers' payments and, for a loan, the borrower's repayments, which then
    leave it for the lenders (repaid to lenders).

    `movements` lists every kind of transaction of the campaign with its count and amount;
    `other_escrow_movements` the escrow's net of each kind no figure names, so a kind added
    later appears by its label; `after_success` what the after-success packages record
    (shares issued, repayments received, tranches), each tied to the ledger by its package.
    """

    currency: str
    money_in: Money
    refunded: Money
    platform_fee: Money
    processing_fee: Money
    released: Money
    paid_out: Money
    paid_to_providers: Money
    recovered: Money
    repaid_to_lenders: Money
    #: Net effect of reversals and other corrections on the escrow, so the figures add up.
    corrections: Money
    held_in_escrow: Money
    escrow_account_id: int | None
    transactions: list[LedgerTransaction]
    total_transactions: int
    page: int
    per_page: int
    head_sequence: int
    head_hash: str
    movements: list[KindMovement] = field(default_factory=list)
    other_escrow_movements: list[EscrowMovement] = field(default_factory=list)
    after_success: list[TrailLine] = field(default_factory=list)

    @property
    def pages(self) -> int:
        return max(1, -(-self.total_transactions // self.per_page))

    @property
    def fees(self) -> Money:
        """The platform fee and the processing fee together."""
        return self.platform_fee + self.processing_fee

    @property
    def paid_to_organisation(self) -> Money:
        return self.paid_out - self.paid_to_providers


_PAYABLE_PURPOSES = frozenset({AccountPurpose.ORG_PAYABLE, AccountPurpose.PROVIDER_PAYABLE})
_PROVIDER_PAYABLE = frozenset({AccountPurpose.PROVIDER_PAYABLE})
_ESCROW = frozenset({AccountPurpose.CAMPAIGN_ESCROW})
_FEE_REVENUE = frozenset({AccountPurpose.PLATFORM_FEE_REVENUE})
#: figure -> (the kinds it sums, the accounts it sums them on, the side that adds to it);
#: entries on the other side subtract. Escrow means the campaign's own escrow.
TRAIL_FIGURES: dict[str, tuple[frozenset[TransactionKind], frozenset[AccountPurpose], Side]] = {
    "money_in": (frozenset({TransactionKind.CHARGE}), _ESCROW, Side.CREDIT),
    "refunded": (frozenset({TransactionKind.REFUND}), _ESCROW, Side.DEBIT),
    "platform_fee": (
        frozenset({TransactionKind.PLATFORM_FEE, TransactionKind.RELEASE}),
        _FEE_REVENUE,
        Side.CREDIT,
    ),
    "processing_fee": (frozenset({TransactionKind.PROCESSING_FEE}), _ESCROW, Side.DEBIT),
    "released": (frozenset({TransactionKind.RELEASE}), _PAYABLE_PURPOSES, Side.CREDIT),
    "paid_out": (frozenset({TransactionKind.PAYOUT}), _PAYABLE_PURPOSES, Side.DEBIT),
    "paid_to_providers": (frozenset({TransactionKind.PAYOUT}), _PROVIDER_PAYABLE, Side.DEBIT),
    "recovered": (frozenset({TransactionKind.RECOVERY}), _ESCROW, Side.CREDIT),
    "repaid_to_lenders": (frozenset({TransactionKind.REPAYMENT}), _ESCROW, Side.DEBIT),
}
#: Kinds whose effect on the escrow the figures above account for.
_ESCROW_KINDS_NAMED = frozenset(
    {
        TransactionKind.CHARGE,
        TransactionKind.REFUND,
        TransactionKind.PLATFORM_FEE,
        TransactionKind.PROCESSING_FEE,
        TransactionKind.RELEASE,
        TransactionKind.RECOVERY,
        TransactionKind.REPAYMENT,
    }
)
#: Kinds that are corrections: their effect on the escrow is the `corrections` figure.
_CORRECTION_KINDS = frozenset({TransactionKind.REVERSAL, TransactionKind.TRANSFER})


def _trail_figures(rows, escrow_id: int | None) -> tuple[dict[str, int], dict[TransactionKind, int]]:
    """Sum the grouped entries (kind, purpose, account id, side, total) into `TRAIL_FIGURES`,
    and the escrow's net (credits − debits) per kind no figure names."""
    figures = dict.fromkeys(TRAIL_FIGURES, 0)
    other: dict[TransactionKind, int] = defaultdict(int)
    for kind, purpose, account_id, side, total in rows:
        if purpose is AccountPurpose.CAMPAIGN_ESCROW and account_id != escrow_id:
            continue  # never happens (one escrow per campaign); not this campaign's escrow anyway
        amount = int(total or 0)
        kind = TransactionKind(kind)
        for name, (kinds, purposes, adds) in TRAIL_FIGURES.items():
            if kind in kinds and purpose in purposes:
                figures[name] += amount if side is adds else -amount
        if (
            purpose is AccountPurpose.CAMPAIGN_ESCROW
            and kind not in _ESCROW_KINDS_NAMED
            and kind not in _CORRECTION_KINDS
        ):
            other[kind] += amount if side is Side.CREDIT else -amount
    return figures, other


def _kind_movements(campaign_id: int, currency: str) -> list[KindMovement]:
    """Per kind: the campaign's transactions and the sum of their debit legs (one query)."""
    rows = db.session.execute(
        select(
            LedgerTransaction.kind,
            func.count(func.distinct(LedgerTransaction.id)),
            func.sum(LedgerEntry.amount),
        )
        .join(LedgerEntry, LedgerEntry.transaction_id == LedgerTransaction.id)
        .where(
            LedgerTransaction.campaign_id == campaign_id,
            LedgerEntry.side == Side.DEBIT,
            LedgerEntry.currency == currency,
        )
        .group_by(LedgerTransaction.kind)
    ).all()
    order = list(TransactionKind)
    movements = [
        KindMovement(TransactionKind(kind), int(n), Money(int(total or 0), currency))
        for kind, n, total in rows
    ]
    return sorted(movements, key=lambda m: order.index(m.kind))


def campaign_money_trail(campaign, page: int = 1, per_page: int = 50) -> MoneyTrail:
    """The figures and one page of transactions for a campaign's public money trail.

    Figures come from one grouped query over the campaign's entries plus the escrow's
    stored balance; the list is paginated, so the number of queries does not grow with the
    number of transactions.
    """
    currency = campaign.currency
    escrow = find_account(AccountPurpose.CAMPAIGN_ESCROW, currency, "campaign", campaign.id)
    rows = db.session.execute(
        select(
            LedgerTransaction.kind,
            LedgerAccount.purpose,
            LedgerAccount.id,
            LedgerEntry.side,
            func.sum(LedgerEntry.amount),
        )
        .join(LedgerEntry, LedgerEntry.transaction_id == LedgerTransaction.id)
        .join(LedgerAccount, LedgerAccount.id == LedgerEntry.account_id)
        .where(LedgerTransaction.campaign_id == campaign.id, LedgerEntry.currency == currency)
        .group_by(LedgerTransaction.kind, LedgerAccount.purpose, LedgerAccount.id, LedgerEntry.side)
    ).all()
    f, other = _trail_figures(rows, escrow.id if escrow is not None else None)
    held = account_balance(escrow).amount if escrow is not None else 0
    accounted = (
        f["money_in"]
        - f["refunded"]
        - f["platform_fee"]
        - f["processing_fee"]
        - f["released"]
        + f["recovered"]
        - f["repaid_to_lenders"]
        + sum(other.values())
    )

    page = max(1, page)
    movements = _kind_movements(campaign.id, currency)
    total_transactions = sum(m.transactions for m in movements)
    transactions = list(
        db.session.scalars(
            select(LedgerTransaction)
            .where(LedgerTransaction.campaign_id == campaign.id)
            .order_by(LedgerTransaction.sequence.desc())
            .limit(per_page)
            .offset((page - 1) * per_page)
            .options(
                selectinload(LedgerTransaction.entries).selectinload(LedgerEntry.account),
                selectinload(LedgerTransaction.reverses),
            )
        )
    )
    head_sequence, head_hash = chain_head()
    order = list(TransactionKind)
    return MoneyTrail(
        currency=currency,
        **{name: Money(amount, currency) for name, amount in f.items()},
        corrections=Money(held - accounted, currency),
        held_in_escrow=Money(held, currency),
        escrow_account_id=escrow.id if escrow is not None else None,
        transactions=transactions,
        total_transactions=total_transactions,
        page=page,
        per_page=per_page,
        head_sequence=head_sequence,
        head_hash=head_hash,
        movements=movements,
        other_escrow_movements=[
            EscrowMovement(kind, Money(net, currency))
            for kind, net in sorted(other.items(), key=lambda item: order.index(item[0]))
            if net
        ],
        after_success=after_success_lines(campaign),
    )


def public_account_label(account: LedgerAccount) -> str:
    """How the public pages name an account: users' accounts never show whose they are."""
    if account.owner_type in ("campaign", "organisation", "provider"):
        return f"{account.purpose.label} #{account.owner_id}"
    return account.purpose.label


def public_transaction(txn: LedgerTransaction) -> dict:
    """A transaction as the public JSON shows it: every input of its hash, no private text.

    Key and description appear only as their SHA-256 (as they enter the hash), so a reader
    can recompute `hash` from these fields without learning who paid.
    """
    return {
        "sequence": txn.sequence,
        "kind": txn.kind,
        "label": txn.kind_label,
        "created_at": format_timestamp(txn.created_at),
        "campaign_id": txn.campaign_id,
        "reverses_id": txn.reverses_id,
        "reverses_sequence": txn.reverses.sequence if txn.reverses_id is not None else None,
        "id": txn.id,
        "key_sha256": sha256_hex(txn.key),
        "description_sha256": sha256_hex(txn.description or ""),
        "entries": [
            {
                "account_id": e.account_id,
                "account_sha256": account_sha256(e.account.code),
                "account": public_account_label(e.account),
                "side": e.side.value,
                "amount": e.amount,
                "currency": e.currency,
                "formatted": e.money.format(with_code=True),
            }
            for e in sorted(txn.entries, key=lambda e: (e.account_id, e.side.value, e.amount, e.currency))
        ],
        "prev_hash": txn.prev_hash,
        "hash": txn.hash,
    }


def chain_page(after: int = 0, limit: int = 500) -> list[dict]:
    """(sequence, prev_hash, hash) of up to `limit` transactions after sequence `after`."""
    rows = db.session.execute(
        select(LedgerTransaction.sequence, LedgerTransaction.prev_hash, LedgerTransaction.hash)
        .where(LedgerTransaction.sequence > after)
        .order_by(LedgerTransaction.sequence)
        .limit(limit)
    ).all()
    return [{"sequence": s, "prev_hash": p, "hash": h} for s, p, h in rows]
