"""The ledger on PostgreSQL: database guards and concurrent writers."""

from __future__ import annotations

import threading
import time

import pytest
from sqlalchemy import func, select, text
from sqlalchemy.exc import DBAPIError

from crowdfund.extensions import db as _db
from crowdfund.ledger import service
from crowdfund.ledger.models import AccountPurpose, LedgerAccount, LedgerEntry, LedgerTransaction
from crowdfund.ledger.service import Leg
from crowdfund.money import Money
from tests.factories import make_campaign
from tests.factories.ledger import equity, post_charge

pytestmark = pytest.mark.postgres


def count(model) -> int:
    return _db.session.scalar(select(func.count()).select_from(model))


# --- guards in the database -----------------------------------------------------------
@pytest.mark.parametrize(
    "sql",
    [
        "UPDATE ledger_entries SET amount = amount + 1",
        "DELETE FROM ledger_entries",
        "UPDATE ledger_transactions SET description = 'rewritten'",
        "DELETE FROM ledger_transactions",
    ],
)
def test_the_database_refuses_to_change_ledger_history(db, sql):
    post_charge(make_campaign(), 1_000)
    with pytest.raises(DBAPIError, match="append-only"), db.engine.begin() as conn:
        conn.execute(text(sql))
    assert service.verify_ledger().ok


def _raw_transaction(conn, key: str, entries: list[tuple[int, str, int]]) -> None:
    txn_id = conn.execute(
        text(
            "INSERT INTO ledger_transactions (sequence, key, kind, description, created_at, prev_hash, hash) "
            "VALUES (999, :key, 'transfer', '', now(), :zero, :h) RETURNING id"
        ),
        {"key": key, "zero": "0" * 64, "h": "a" * 64},
    ).scalar_one()
    for account_id, side, amount in entries:
        conn.execute(
            text(
                "INSERT INTO ledger_entries (transaction_id, account_id, side, amount, currency) "
                "VALUES (:t, :a, :s, :m, 'CNY')"
            ),
            {"t": txn_id, "a": account_id, "s": side, "m": amount},
        )


@pytest.mark.parametrize(
    ("entries", "message"),
    [
        ([("a", "debit", 100), ("b", "credit", 99)], "does not balance"),
        ([("a", "debit", 100)], "at least two"),
        ([], "at least two"),
    ],
)
def test_the_database_refuses_to_commit_an_unbalanced_transaction(db, entries, message):
    a, b = equity().id, service.clearing_account("CNY").id
    db.session.commit()
    ids = {"a": a, "b": b}
    with pytest.raises(DBAPIError, match=message), db.engine.begin() as conn:
        _raw_transaction(conn, "raw:1", [(ids[name], side, amount) for name, side, amount in entries])
    assert count(LedgerTransaction) == 0


def test_the_database_accepts_a_balanced_raw_transaction(db):
    a, b = equity().id, service.clearing_account("CNY").id
    db.session.commit()
    with db.engine.begin() as conn:
        _raw_transaction(conn, "raw:ok", [(a, "debit", 100), (b, "credit", 60), (b, "credit", 40)])
    assert count(LedgerTransaction) == 1


def test_the_database_refuses_an_entry_added_to_an_older_transaction(db):
    """Entries of a new transaction are checked once, at its own row; an entry slipped into a
    transaction committed earlier is still checked, and refused."""
    a, b = equity().id, service.clearing_account("CNY").id
    db.session.commit()
    with db.engine.begin() as conn:
        _raw_transaction(conn, "raw:old", [(a, "debit", 100), (b, "credit", 100)])
    txn_id = db.session.scalar(select(LedgerTransaction.id).where(LedgerTransaction.key == "raw:old"))
    with pytest.raises(DBAPIError, match="does not balance"), db.engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO ledger_entries (transaction_id, account_id, side, amount, currency) "
                "VALUES (:t, :a, 'debit', 5, 'CNY')"
            ),
            {"t": txn_id, "a": a},
        )
    assert count(LedgerEntry) == 2


# --- concurrency ----------------------------------------------------------------------
def _run_in_threads(app, n: int, work) -> list:
    """Run work(i) in n threads, each with its own app context and session, started together."""
    barrier = threading.Barrier(n)
    results: list = [None] * n

    def run(i: int) -> None:
        with app.app_context():
            try:
                barrier.wait(timeout=10)
                results[i] = work(i)
            except Exception as exc:  # reported to the test below
                _db.session.rollback()
                results[i] = exc
            finally:
                _db.session.remove()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    return results


def test_two_processes_posting_the_same_key_at_once_make_one_transaction(app, db):
    campaign = make_campaign()
    campaign_id, currency = campaign.id, campaign.currency
    service.escrow_account(campaign)
    service.clearing_account(currency)
    db.session.commit()

    def post(_i: int) -> int:
        escrow = service.get_account(AccountPurpose.CAMPAIGN_ESCROW, currency, "campaign", campaign_id)
        clearing = service.clearing_account(currency)
        txn = service.post_transaction(
            "pledge:77:charge",
            "charge",
            [Leg.debit(clearing, Money(2_500, currency)), Leg.credit(escrow, Money(2_500, currency))],
            kind="charge",
            campaign_id=campaign_id,
        )
        time.sleep(0.2)  # hold the chain lock so the other writer has to wait for it
        txn_id = txn.id
        _db.session.commit()
        return txn_id

    results = _run_in_threads(app, 2, post)
    assert all(isinstance(r, int) for r in results), results
    assert results[0] == results[1]
    assert count(LedgerTransaction) == 1
    assert service.account_balance(service.escrow_account(campaign)).amount == 2_500
    assert service.verify_ledger().ok


def test_concurrent_writers_form_one_unbroken_chain(app, db):
    campaigns = [make_campaign() for _ in range(4)]
    ids = [c.id for c in campaigns]
    per_thread = 5

    def post(i: int) -> int:
        campaign = _db.session.get(type(campaigns[0]), ids[i])
        for n in range(per_thread):
            post_charge(campaign, 100 + n, key=f"thread:{i}:{n}")
        return i

    results = _run_in_threads(app, len(ids), post)
    assert results == list(range(len(ids))), results
    sequences = _db.session.scalars(
        select(LedgerTransaction.sequence).order_by(LedgerTransaction.sequence)
    ).all()
    assert sequences == list(range(1, len(ids) * per_thread + 1))
    report = service.verify_ledger()
    assert report.ok, report.problems
    assert report.totals == {"CNY": (len(ids) * sum(100 + n for n in range(per_thread)),) * 2}


def test_accounts_asked_for_at_once_are_created_once(app, db):
    def open_wallet(_i: int) -> int:
        account = service.wallet_account(42, "CNY")
        time.sleep(0.1)
        account_id = account.id
        _db.session.commit()
        return account_id

    results = _run_in_threads(app, 4, open_wallet)
    assert len(set(results)) == 1 and isinstance(results[0], int), results
    assert count(LedgerAccount) == 1


def test_overdraw_races_cannot_take_escrow_below_zero(app, db):
    campaign = make_campaign()
    post_charge(campaign, 1_000)
    campaign_id = campaign.id

    def refund(i: int) -> str:
        c = _db.session.get(type(campaign), campaign_id)
        escrow, clearing = service.escrow_account(c), service.clearing_account("CNY")
        service.post_transaction(
            f"refund:{i}",
            "refund",
            [Leg.debit(escrow, Money(700, "CNY")), Leg.credit(clearing, Money(700, "CNY"))],
            kind="refund",
            campaign_id=campaign_id,
        )
        _db.session.commit()
        return "ok"

    results = _run_in_threads(app, 3, refund)
    assert results.count("ok") == 1, results
    assert service.account_balance(service.escrow_account(campaign)).amount == 300
    assert service.verify_ledger().ok
