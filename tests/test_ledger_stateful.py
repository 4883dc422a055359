"""A Hypothesis state machine posts random transfers, reversals and replays against the ledger.

After every step: each transaction balances, debits equal credits per currency, no
non-negative account is below zero, stored balances equal a model kept in Python, replays
change nothing, and the hash chain verifies. Runs on SQLite and (with TEST_DATABASE_URL)
PostgreSQL; each example starts from empty ledger tables.
"""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)
from sqlalchemy import case, func, select, text

from crowdfund.errors import ErrorCode
from crowdfund.extensions import db
from crowdfund.ledger import postings, service
from crowdfund.ledger.models import (
    AccountPurpose,
    IdempotencyConflict,
    InsufficientFunds,
    LedgerAccount,
    LedgerEntry,
    LedgerError,
    LedgerTransaction,
    Side,
    UnbalancedTransaction,
)
from crowdfund.ledger.service import Leg
from crowdfund.money import Money

LEDGER_TABLES = ("ledger_entries", "ledger_transactions", "ledger_accounts", "ledger_chain_head")

#: (purpose, currency, owner_type, owner_id): a small chart of accounts in two currencies.
CHART = [
    (AccountPurpose.GATEWAY_CLEARING, "CNY", None, None),
    (AccountPurpose.PLATFORM_EQUITY, "CNY", None, None),
    (AccountPurpose.CAMPAIGN_ESCROW, "CNY", "campaign", 1),
    (AccountPurpose.CAMPAIGN_ESCROW, "CNY", "campaign", 2),
    (AccountPurpose.USER_WALLET, "CNY", "user", 1),
    (AccountPurpose.ORG_PAYABLE, "CNY", "organisation", 1),
    (AccountPurpose.PLATFORM_FEE_REVENUE, "CNY", None, None),
    (AccountPurpose.PROCESSING_FEE_EXPENSE, "CNY", None, None),
    (AccountPurpose.GATEWAY_CLEARING, "USD", None, None),
    (AccountPurpose.CAMPAIGN_ESCROW, "USD", "campaign", 3),
    (AccountPurpose.USER_WALLET, "USD", "user", 1),
]
CURRENCIES = sorted({c for _, c, _, _ in CHART})


def clear_ledger() -> None:
    db.session.rollback()
    with db.engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            conn.execute(text(f"TRUNCATE {', '.join(LEDGER_TABLES)} RESTART IDENTITY CASCADE"))
        else:
            for table in LEDGER_TABLES:
                conn.execute(text(f"DELETE FROM {table}"))
    db.session.expire_all()


@dataclass
class Posted:
    key: str
    txn_id: int
    legs: list[tuple[int, str, int]]  #: (chart index, side, amount)
    currency: str
    reversible: bool


class LedgerMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.posted: list[Posted] = []
        self.reversed: set[int] = set()
        self.serial = 0

    @initialize()
    def open_accounts(self) -> None:
        clear_ledger()
        # Keep the account objects loaded across commits (balances are always read fresh).
        db.session().expire_on_commit = False
        self.accounts = [service.get_account(*row) for row in CHART]
        db.session.commit()
        self.account_ids = [a.id for a in self.accounts]
        self.non_negative = [a.non_negative for a in self.accounts]
        self.model = [0] * len(CHART)  #: expected balance of each chart account

    # --- helpers ------------------------------------------------------------------
    def _key(self, prefix: str) -> str:
        self.serial += 1
        return f"{prefix}:{self.serial}"

    def _account(self, index: int):
        return self.accounts[index]

    def _balances(self) -> list[int]:
        """Every chart account's stored balance, in one query."""
        rows = dict(db.session.execute(select(LedgerAccount.id, LedgerAccount.balance_amount)).all())
        return [rows[account_id] for account_id in self.account_ids]

    def _indexes(self, currency: str) -> list[int]:
        return [i for i, row in enumerate(CHART) if row[1] == currency]

    def _effect(self, legs: list[tuple[int, str, int]]) -> list[int]:
        after = list(self.model)
        for index, side, amount in legs:
            debit_normal = CHART[index][0].account_type.debit_normal
            after[index] += amount if (side == "debit") == debit_normal else -amount
        return after

    def _would_overdraw(self, after: list[int]) -> bool:
        return any(after[i] < 0 and self.non_negative[i] for i in range(len(CHART)))

    def _legs(self, legs: list[tuple[int, str, int]], currency: str) -> list[Leg]:
        return [Leg(self._account(i), Money(amount, currency), side) for i, side, amount in legs]

    def _snapshot(self) -> tuple:
        return (
            service.chain_head(),
            db.session.scalar(select(func.count()).select_from(LedgerTransaction)),
            tuple(self._balances()),
        )

    def _post(self, legs: list[tuple[int, str, int]], currency: str, reversible: bool = True) -> None:
        after = self._effect(legs)
        key = self._key("t")
        before = self._snapshot()
        escrows = {i for i, _, _ in legs if CHART[i][0] is AccountPurpose.CAMPAIGN_ESCROW}
        if len(escrows) > 1:
            with pytest.raises(LedgerError) as refused:
                service.post_transaction(key, "transfer", self._legs(legs, currency))
            assert refused.value.code is ErrorCode.LEDGER_FORBIDDEN_MOVEMENT
            db.session.rollback()
            assert self._snapshot() == before, "a refused posting must write nothing"
            return
        if self._would_overdraw(after):
            with pytest.raises(InsufficientFunds):
                service.post_transaction(key, "transfer", self._legs(legs, currency))
            db.session.rollback()
            assert self._snapshot() == before, "a refused posting must write nothing"
            return
        txn = service.post_transaction(key, "transfer", self._legs(legs, currency))
        db.session.commit()
        self.model = after
        self.posted.append(Posted(key, txn.id, legs, currency, reversible))

    # --- rules --------------------------------------------------------------------
    @rule(data=st.data(), currency=st.sampled_from(CURRENCIES), amount=st.integers(1, 50_000))
    def transfer(self, data, currency, amount) -> None:
        indexes = self._indexes(currency)
        debit = data.draw(st.sampled_from(indexes), label="debit")
        credit = data.draw(st.sampled_from(indexes), label="credit")
        self._post([(debit, "debit", amount), (credit, "credit", amount)], currency)

    @rule(data=st.data(), parts=st.lists(st.integers(1, 20_000), min_size=2, max_size=4))
    def split(self, data, parts) -> None:
        indexes = self._indexes("CNY")
        debit = data.draw(st.sampled_from(indexes), label="debit")
        credits = [data.draw(st.sampled_from(indexes), label="credit") for _ in parts]
        legs = [(debit, "debit", sum(parts))] + [
            (c, "credit", p) for c, p in zip(credits, parts, strict=True)
        ]
        self._post(legs, "CNY")

    @precondition(lambda self: self.posted)
    @rule(data=st.data())
    def reverse(self, data) -> None:
        target = data.draw(st.sampled_from(self.posted), label="original")
        original = db.session.get(LedgerTransaction, target.txn_id)
        key = self._key("rev")
        before = self._snapshot()
        if target.txn_id in self.reversed:
            with pytest.raises(LedgerError, match="already been reversed"):
                postings.reverse_transaction(original, key, "again")
            db.session.rollback()
            assert self._snapshot() == before
            return
        mirrored = [(i, "credit" if side == "debit" else "debit", amount) for i, side, amount in target.legs]
        after = self._effect(mirrored)
        if self._would_overdraw(after):
            with pytest.raises(InsufficientFunds):
                postings.reverse_transaction(original, key, "correction")
            db.session.rollback()
            assert self._snapshot() == before
            return
        txn = postings.reverse_transaction(original, key, "correction")
        db.session.commit()
        assert txn.reverses_id == target.txn_id
        self.model = after
        self.reversed.add(target.txn_id)
        self.posted.append(Posted(key, txn.id, mirrored, target.currency, reversible=True))

    @precondition(lambda self: self.posted)
    @rule(data=st.data())
    def replay(self, data) -> None:
        target = data.draw(st.sampled_from(self.posted), label="replayed")
        before = self._snapshot()
        original = db.session.get(LedgerTransaction, target.txn_id)
        reverses = original.reverses
        txn = service.post_transaction(
            target.key,
            "replayed",
            self._legs(target.legs, target.currency),
            kind=original.kind,
            reverses=reverses,
        )
        db.session.commit()
        assert txn.id == target.txn_id
        assert self._snapshot() == before, "a replay must change nothing"

    @precondition(lambda self: self.posted)
    @rule(data=st.data(), factor=st.integers(2, 5))
    def replay_with_other_content(self, data, factor) -> None:
        target = data.draw(st.sampled_from(self.posted), label="replayed")
        legs = [(i, side, amount * factor) for i, side, amount in target.legs]  # still balanced
        before = self._snapshot()
        with pytest.raises(IdempotencyConflict):
            service.post_transaction(
                target.key, "different", self._legs(legs, target.currency), kind="transfer"
            )
        db.session.rollback()
        assert self._snapshot() == before

    @rule(currency=st.sampled_from(CURRENCIES), amount=st.integers(2, 1_000))
    def unbalanced(self, currency, amount) -> None:
        indexes = self._indexes(currency)
        before = self._snapshot()
        with pytest.raises(UnbalancedTransaction):
            service.post_transaction(
                self._key("bad"),
                "unbalanced",
                self._legs([(indexes[0], "debit", amount), (indexes[1], "credit", amount - 1)], currency),
            )
        db.session.rollback()
        assert self._snapshot() == before

    # --- invariants (one check, to keep database round trips few) ------------------
    @invariant()
    def the_ledger_is_sound(self) -> None:
        db.session.commit()  # a fresh snapshot
        balances = self._balances()
        assert balances == self.model
        for balance, non_negative in zip(balances, self.non_negative, strict=True):
            assert balance >= 0 or not non_negative
        signed = case((LedgerEntry.side == Side.DEBIT, LedgerEntry.amount), else_=-LedgerEntry.amount)
        unbalanced = db.session.execute(
            select(LedgerEntry.transaction_id, LedgerEntry.currency)
            .group_by(LedgerEntry.transaction_id, LedgerEntry.currency)
            .having(func.sum(signed) != 0)
        ).all()
        assert unbalanced == []
        db.session.commit()
        report = service.verify_ledger()
        assert report.ok, report.problems
        assert report.transactions == len(self.posted)
        for debits, credits in report.totals.values():
            assert debits == credits
        db.session.commit()


def test_ledger_state_machine(app):
    run_state_machine_as_test(
        LedgerMachine,
        settings=settings(
            max_examples=25,
            stateful_step_count=20,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
        ),
    )
