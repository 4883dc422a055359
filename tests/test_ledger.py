"""The ledger service: accounts, posting, idempotency, non-negative accounts, reversals, chain."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select, text

from crowdfund.errors import DomainError
from crowdfund.ledger import postings, service
from crowdfund.ledger.models import (
    GENESIS_HASH,
    AccountPurpose,
    AccountType,
    IdempotencyConflict,
    ImmutableLedgerError,
    InsufficientFunds,
    LedgerAccount,
    LedgerEntry,
    LedgerError,
    LedgerTransaction,
    UnbalancedTransaction,
)
from crowdfund.ledger.service import Leg
from crowdfund.money import Money
from tests.factories import make_campaign
from tests.factories.ledger import equity, post_charge, release, transfer


def count(model) -> int:
    from crowdfund.extensions import db

    return db.session.scalar(select(func.count()).select_from(model))


# --- accounts -------------------------------------------------------------------------
def test_accounts_are_created_on_demand_once_with_their_type(db):
    a = service.escrow_account(make_campaign(currency="USD"))
    b = service.get_account(AccountPurpose.CAMPAIGN_ESCROW, "usd", "campaign", a.owner_id)
    db.session.commit()
    assert a.id == b.id
    assert count(LedgerAccount) == 1
    assert (a.type, a.currency, a.non_negative, a.balance_amount) == (AccountType.LIABILITY, "USD", True, 0)

    clearing = service.clearing_account("USD")
    assert (clearing.type, clearing.owner_type, clearing.non_negative) == (AccountType.ASSET, None, False)
    assert service.fee_revenue_account("USD").type is AccountType.REVENUE
    assert service.processing_fee_account("USD").type is AccountType.EXPENSE
    assert service.wallet_account(7, "USD").code == "user_wallet:user:7:USD"
    assert service.provider_payable_account(3, "USD").non_negative
    assert service.clearing_account("CNY").id != clearing.id
    db.session.commit()
    assert count(LedgerAccount) == 7


@pytest.mark.parametrize(
    ("currency", "owner_type", "owner_id"), [("XYZ", None, None), ("CNY", "user", None), ("CNY", None, 3)]
)
def test_bad_account_requests_are_refused(db, currency, owner_type, owner_id):
    with pytest.raises(LedgerError):
        service.get_account(AccountPurpose.USER_WALLET, currency, owner_type, owner_id)


# --- posting --------------------------------------------------------------------------
def test_a_charge_moves_money_into_escrow_and_starts_the_chain(db):
    campaign = make_campaign()
    txn = post_charge(campaign, 5_000, key="pledge:1:charge")
    escrow, clearing = service.escrow_account(campaign), service.clearing_account("CNY")

    assert service.account_balance(escrow) == Money(5_000, "CNY")
    assert service.account_balance(clearing) == Money(5_000, "CNY")  # an asset grows with debits
    assert (txn.sequence, txn.prev_hash, txn.kind, txn.campaign_id) == (
        1,
        GENESIS_HASH,
        "charge",
        campaign.id,
    )
    assert txn.hash == txn.compute_hash() and len(txn.hash) == 64
    assert sorted((e.side.value, e.amount) for e in txn.entries) == [("credit", 5_000), ("debit", 5_000)]
    assert (escrow.entry_count, clearing.entry_count) == (1, 1)

    second = post_charge(campaign, 2_500)
    assert (second.sequence, second.prev_hash) == (2, txn.hash)
    assert service.chain_head() == (2, second.hash)
    assert service.account_balance(escrow) == Money(7_500, "CNY")


def test_a_split_release_takes_the_fee_and_keeps_every_minor_unit(db):
    campaign = make_campaign()
    post_charge(campaign, 10_001)
    release(campaign, 10_001, fee=500)
    assert service.account_balance(service.escrow_account(campaign)) == Money(0, "CNY")
    assert (
        service.account_balance(service.org_payable_account(campaign.organisation_id, "CNY")).amount == 9_501
    )
    assert service.account_balance(service.fee_revenue_account("CNY")).amount == 500


@pytest.mark.parametrize(
    "legs",
    [
        [("debit", 100), ("credit", 99)],
        [("debit", 100)],
        [("debit", 100), ("debit", 100)],
        [],
    ],
)
def test_unbalanced_transactions_are_refused_and_nothing_is_written(db, legs):
    a, b = equity(), service.clearing_account("CNY")
    db.session.commit()
    built = [Leg(a if i % 2 == 0 else b, Money(amount, "CNY"), side) for i, (side, amount) in enumerate(legs)]
    with pytest.raises(UnbalancedTransaction):
        service.post_transaction("bad:1", "bad", built)
    db.session.rollback()
    assert count(LedgerTransaction) == 0 and count(LedgerEntry) == 0
    assert service.account_balance(a).amount == 0


def test_each_currency_must_balance_on_its_own(db):
    cny, usd = service.clearing_account("CNY"), service.clearing_account("USD")
    eq_cny, eq_usd = equity("CNY"), equity("USD")
    ok = service.post_transaction(
        "fx:1",
        "two currencies",
        [
            Leg.debit(cny, Money(700, "CNY")),
            Leg.credit(eq_cny, Money(700, "CNY")),
            Leg.debit(usd, Money(100, "USD")),
            Leg.credit(eq_usd, Money(100, "USD")),
        ],
    )
    assert ok.totals() == {"CNY": 700, "USD": 100}
    with pytest.raises(UnbalancedTransaction, match="CNY"):
        service.post_transaction(
            "fx:2",
            "a CNY debit cannot pay for a USD credit",
            [Leg.debit(cny, Money(100, "CNY")), Leg.credit(eq_usd, Money(100, "USD"))],
        )


@pytest.mark.parametrize("amount", [0, -5])
def test_legs_need_a_positive_amount(db, amount):
    with pytest.raises(LedgerError):
        Leg.debit(equity(), Money(amount, "CNY"))


def test_a_leg_must_be_in_its_accounts_currency(db):
    with pytest.raises(LedgerError, match="USD amount"):
        Leg.debit(equity("CNY"), Money(1, "USD"))


def test_ledger_errors_are_domain_errors_with_codes(db):
    assert issubclass(LedgerError, DomainError)
    assert InsufficientFunds("x").code == "ledger_insufficient_funds"
    assert IdempotencyConflict("x").status == 409


# --- exactly once ---------------------------------------------------------------------
def test_posting_the_same_key_again_returns_the_first_and_changes_nothing(db):
    campaign = make_campaign()
    first = post_charge(campaign, 3_000, key="pledge:9:charge")
    head = service.chain_head()
    again = post_charge(campaign, 3_000, key="pledge:9:charge")
    assert again.id == first.id
    assert count(LedgerTransaction) == 1 and count(LedgerEntry) == 2
    assert service.account_balance(service.escrow_account(campaign)).amount == 3_000
    assert service.chain_head() == head


@pytest.mark.parametrize("change", ["amount", "kind", "campaign", "account"])
def test_the_same_key_with_different_content_is_an_error(db, change):
    campaign, other = make_campaign(), make_campaign()
    post_charge(campaign, 3_000, key="pledge:9:charge")
    clearing, escrow = service.clearing_account("CNY"), service.escrow_account(campaign)
    amount, kind, campaign_id = 3_000, "charge", campaign.id
    if change == "amount":
        amount = 3_001
    elif change == "kind":
        kind = "transfer"
    elif change == "campaign":
        campaign_id = other.id
    else:
        escrow = service.escrow_account(other)
    with pytest.raises(IdempotencyConflict):
        transfer(clearing, escrow, amount, key="pledge:9:charge", kind=kind, campaign_id=campaign_id)
    db.session.rollback()
    assert count(LedgerTransaction) == 1
    assert service.account_balance(service.escrow_account(campaign)).amount == 3_000


# --- non-negative accounts ------------------------------------------------------------
def test_a_non_negative_account_cannot_be_overdrawn_and_nothing_is_written(db):
    campaign = make_campaign()
    post_charge(campaign, 1_000)
    escrow, clearing = service.escrow_account(campaign), service.clearing_account("CNY")
    head = service.chain_head()
    with pytest.raises(InsufficientFunds, match="Campaign escrow"):
        transfer(escrow, clearing, 1_001, kind="refund", campaign_id=campaign.id)
    db.session.rollback()
    assert count(LedgerTransaction) == 1
    assert service.account_balance(escrow).amount == 1_000
    assert service.chain_head() == head
    # Exactly the balance is fine: it may reach zero.
    transfer(escrow, clearing, 1_000, kind="refund", campaign_id=campaign.id)
    assert service.account_balance(escrow).amount == 0


def test_accounts_without_the_flag_may_go_negative(db):
    # The platform's capital account funds the processor account: equity goes "negative" on
    # its credit-normal side only when debited, which is allowed.
    transfer(equity(), service.clearing_account("CNY"), 500)
    assert service.account_balance(equity()).amount == -500


# --- reversals ------------------------------------------------------------------------
def test_a_reversal_mirrors_the_original_and_points_at_it(db):
    campaign = make_campaign()
    original = post_charge(campaign, 4_200)
    reversal = postings.reverse_transaction(original, f"{original.key}:reversal", "charged twice by mistake")
    db.session.commit()
    assert (reversal.kind, reversal.reverses_id, reversal.campaign_id) == (
        "reversal",
        original.id,
        campaign.id,
    )
    assert sorted((e.account_id, e.side.value, e.amount) for e in reversal.entries) == sorted(
        (e.account_id, "credit" if e.side.value == "debit" else "debit", e.amount) for e in original.entries
    )
    assert service.account_balance(service.escrow_account(campaign)).amount == 0
    assert service.account_balance(service.clearing_account("CNY")).amount == 0
    # Replaying the reversal is harmless; reversing twice under another key is refused.
    assert postings.reverse_transaction(original, f"{original.key}:reversal", "again").id == reversal.id
    with pytest.raises(LedgerError, match="already been reversed"):
        postings.reverse_transaction(original, "another-key", "twice")
    db.session.rollback()
    assert count(LedgerTransaction) == 2


def test_a_reversal_cannot_take_back_money_that_has_moved_on(db):
    campaign = make_campaign()
    original = post_charge(campaign, 1_000)
    release(campaign, 1_000, fee=50)
    with pytest.raises(InsufficientFunds):
        postings.reverse_transaction(original, "rev:1", "too late")
    db.session.rollback()
    assert count(LedgerTransaction) == 2


# --- append-only ----------------------------------------------------------------------
def test_entries_and_transactions_cannot_be_changed_or_deleted_through_the_models(db):
    txn = post_charge(make_campaign(), 1_000)
    entry = txn.entries[0]
    entry.amount = 1
    with pytest.raises(ImmutableLedgerError):
        db.session.flush()
    db.session.rollback()

    txn.description = "rewritten"
    with pytest.raises(ImmutableLedgerError):
        db.session.flush()
    db.session.rollback()

    db.session.delete(txn.entries[0])
    with pytest.raises(ImmutableLedgerError):
        db.session.flush()
    db.session.rollback()

    txn.entries.append(LedgerEntry(account_id=entry.account_id, side=entry.side, amount=5, currency="CNY"))
    with pytest.raises(ImmutableLedgerError, match="cannot be added"):
        db.session.flush()
    db.session.rollback()
    db.session.add(
        LedgerEntry(
            transaction_id=txn.id, account_id=entry.account_id, side=entry.side, amount=5, currency="CNY"
        )
    )
    with pytest.raises(ImmutableLedgerError, match="cannot be added"):
        db.session.flush()
    db.session.rollback()
    assert len(db.session.get(LedgerTransaction, txn.id).entries) == 2
    assert db.session.scalar(select(LedgerEntry.amount).where(LedgerEntry.id == entry.id)) == 1_000


# --- verification ---------------------------------------------------------------------
def test_verify_passes_on_a_healthy_ledger_and_sums_per_currency(db):
    campaign = make_campaign()
    post_charge(campaign, 1_000)
    post_charge(campaign, 2_000)
    release(campaign, 3_000, fee=150)
    transfer(equity("USD"), service.clearing_account("USD"), 77)
    report = service.verify_ledger(batch_size=2)  # several batches
    assert report.ok, report.problems
    assert (report.transactions, report.accounts) == (4, 6)
    assert report.totals == {"CNY": (6_000, 6_000), "USD": (77, 77)}
    assert (report.head_sequence, report.head_hash) == service.chain_head()


def test_verify_on_an_empty_ledger(db):
    report = service.verify_ledger()
    assert report.ok and report.transactions == 0 and report.head_hash == GENESIS_HASH


def tamper(db, sql: str, **params) -> None:
    """Change ledger rows behind the application's back, as someone with database access could."""
    db.session.commit()  # end the session's snapshot so it sees the change
    with db.engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            conn.execute(text("SET LOCAL session_replication_role = replica"))  # triggers off
        conn.execute(text(sql), params)
    db.session.expire_all()


def test_verify_names_the_transaction_whose_entry_was_edited(db):
    campaign = make_campaign()
    post_charge(campaign, 1_000)
    victim = post_charge(campaign, 2_000, key="pledge:2:charge")
    post_charge(campaign, 3_000)
    entry_id = victim.entries[0].id
    db.session.commit()
    tamper(db, "UPDATE ledger_entries SET amount = amount + 100 WHERE id = :id", id=entry_id)

    report = service.verify_ledger()
    assert not report.ok
    assert report.first_broken == (2, victim.id, "pledge:2:charge")
    assert any("hash does not match" in p for p in report.problems)
    assert any("does not balance" in p for p in report.problems)


def test_verify_notices_a_rewritten_hash_and_a_changed_balance(db):
    campaign = make_campaign()
    first = post_charge(campaign, 1_000)
    post_charge(campaign, 2_000)
    first_id, first_hash = first.id, first.hash
    tamper(db, "UPDATE ledger_transactions SET hash = :h WHERE id = :id", h="f" * 64, id=first_id)
    report = service.verify_ledger()
    assert report.first_broken[0] == 1
    assert any("#2" in p and "prev_hash" in p for p in report.problems)

    tamper(db, "UPDATE ledger_transactions SET hash = :h WHERE id = :id", h=first_hash, id=first_id)
    assert service.verify_ledger().ok
    tamper(db, "UPDATE ledger_accounts SET balance_amount = balance_amount + 1")
    report = service.verify_ledger()
    assert not report.ok and report.first_broken is None
    assert any("stored balance" in p for p in report.problems)


def test_verify_notices_a_deleted_transaction(db):
    campaign = make_campaign()
    post_charge(campaign, 1_000)
    middle = post_charge(campaign, 2_000)
    post_charge(campaign, 3_000)
    tamper(db, "DELETE FROM ledger_entries WHERE transaction_id = :id", id=middle.id)
    tamper(db, "DELETE FROM ledger_transactions WHERE id = :id", id=middle.id)
    report = service.verify_ledger()
    assert report.first_broken[0] == 3
    assert any("gap" in p for p in report.problems)
