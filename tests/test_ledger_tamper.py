"""Tamper evidence: what `flask ledger verify` and the database catch (issue 9, item 8).

Each test changes the ledger behind the application's back, as someone with database
access could, and checks that the change is refused (PostgreSQL guards) or reported.
"""

from __future__ import annotations

import pytest
from sqlalchemy import select, text
from sqlalchemy.exc import DBAPIError

from crowdfund.campaigns.models import CampaignEvent
from crowdfund.errors import ErrorCode
from crowdfund.ledger import postings, service
from crowdfund.ledger.models import (
    GENESIS_HASH,
    ImmutableLedgerError,
    LedgerError,
    LedgerTransaction,
    canonical_content,
    sha256_hex,
)
from crowdfund.money import Money
from tests.factories import make_campaign
from tests.test_ledger import count, tamper


def _charge(campaign, amount: int, payment_id: int) -> LedgerTransaction:
    return postings.charge_into_escrow(
        payment_id=payment_id, campaign_id=campaign.id, amount=Money(amount, campaign.currency)
    )


def rehash_chain(db) -> None:
    """Recompute every prev_hash and hash in chain order and move the head to match.

    What someone rewriting history would run after editing a past transaction (with the
    triggers off) — and, with the triggers off for the occasion, how an existing chain is
    re-hashed when the canonical content changes.
    """
    db.session.commit()
    db.session.expire_all()
    prev = GENESIS_HASH
    updates = []
    for txn in db.session.scalars(select(LedgerTransaction).order_by(LedgerTransaction.sequence)):
        content = canonical_content(
            sequence=txn.sequence,
            key=txn.key,
            created_at=txn.created_at,
            kind=txn.kind,
            description=txn.description,
            campaign_id=txn.campaign_id,
            reverses_id=txn.reverses_id,
            entries=[e.hashed_tuple() for e in txn.entries],
            prev_hash=prev,
        )
        new_hash = sha256_hex(content)
        updates.append({"id": txn.id, "p": prev, "h": new_hash})
        prev = new_hash
    db.session.rollback()
    for row in updates:
        # Two steps: the unique hash column must not collide with a neighbour's old hash.
        tamper(
            db,
            "UPDATE ledger_transactions SET hash = :tmp WHERE id = :id",
            tmp=f"tmp{row['id']}",
            id=row["id"],
        )
    for row in updates:
        tamper(db, "UPDATE ledger_transactions SET prev_hash = :p, hash = :h WHERE id = :id", **row)
    tamper(db, "UPDATE ledger_chain_head SET sequence = :s, head_hash = :h", s=len(updates), h=prev)


# --- (a) account identity -------------------------------------------------------------
def test_verify_notices_two_campaigns_escrows_swapping_owners(db):
    first, second = make_campaign(), make_campaign()
    _charge(first, 1_000, 1)
    _charge(second, 9_000, 2)
    a = service.escrow_account(first)
    b = service.escrow_account(second)
    a_id, b_id, a_code, b_code = a.id, b.id, a.code, b.code
    db.session.commit()
    assert service.verify_ledger().ok

    # The second campaign's money now looks like the first's: swap owner and code.
    tamper(db, "UPDATE ledger_accounts SET code = 'tmp', owner_id = :o WHERE id = :id", o=second.id, id=a_id)
    tamper(
        db,
        "UPDATE ledger_accounts SET code = :c, owner_id = :o WHERE id = :id",
        c=a_code,
        o=first.id,
        id=b_id,
    )
    tamper(db, "UPDATE ledger_accounts SET code = :c WHERE id = :id", c=b_code, id=a_id)
    report = service.verify_ledger()
    assert not report.ok
    assert report.first_broken[0] == 1
    assert any("hash does not match" in p for p in report.problems)


def test_verify_notices_an_account_whose_owner_no_longer_matches_its_code(db):
    first, second = make_campaign(), make_campaign()
    _charge(first, 1_000, 1)
    escrow_id = service.escrow_account(first).id
    db.session.commit()
    tamper(db, "UPDATE ledger_accounts SET owner_id = :o WHERE id = :id", o=second.id, id=escrow_id)
    report = service.verify_ledger()
    assert not report.ok
    assert any("does not match its purpose, owner and currency" in p for p in report.problems)


def test_code_cannot_change_an_accounts_identity_or_delete_it(db):
    campaign = make_campaign()
    _charge(campaign, 1_000, 1)
    escrow = service.escrow_account(campaign)
    escrow.owner_id = campaign.id + 1
    with pytest.raises(ImmutableLedgerError):
        db.session.flush()
    db.session.rollback()
    escrow = service.escrow_account(campaign)
    db.session.delete(escrow)
    with pytest.raises(ImmutableLedgerError):
        db.session.flush()
    db.session.rollback()
    assert service.verify_ledger().ok


@pytest.mark.postgres
@pytest.mark.parametrize(
    "sql",
    [
        "UPDATE ledger_accounts SET owner_id = owner_id + 1 WHERE owner_type = 'campaign'",
        "UPDATE ledger_accounts SET code = code || 'x'",
        "UPDATE ledger_accounts SET purpose = 'org_payable' WHERE purpose = 'campaign_escrow'",
        "UPDATE ledger_accounts SET currency = 'USD'",
        "UPDATE ledger_accounts SET non_negative = false",
        "DELETE FROM ledger_accounts",
    ],
)
def test_the_database_refuses_to_change_an_accounts_identity(db, sql):
    _charge(make_campaign(), 1_000, 1)
    db.session.commit()
    with pytest.raises(DBAPIError, match="keep their identity"), db.engine.begin() as conn:
        conn.execute(text(sql))
    assert service.verify_ledger().ok


@pytest.mark.postgres
def test_the_database_still_lets_balances_move(db):
    _charge(make_campaign(), 1_000, 1)
    db.session.commit()
    with db.engine.begin() as conn:
        conn.execute(text("UPDATE ledger_accounts SET balance_amount = balance_amount + 1"))
    assert any("stored balance" in p for p in service.verify_ledger().problems)


# --- (b) escrow never pays into another escrow ----------------------------------------
def test_a_transfer_between_two_escrows_is_refused_and_writes_nothing(db):
    first, second = make_campaign(), make_campaign()
    _charge(first, 5_000, 1)
    a, b = service.escrow_account(first), service.escrow_account(second)
    db.session.commit()
    with pytest.raises(LedgerError) as refused:
        postings.transfer(key="steal:1", debit=a, credit=b, amount=Money(4_000, "CNY"))
    assert refused.value.code is ErrorCode.LEDGER_FORBIDDEN_MOVEMENT
    assert count(LedgerTransaction) == 1
    assert service.account_balance(a).amount == 5_000
    assert service.account_balance(b).amount == 0


def _post_escrow_to_escrow(db, monkeypatch, first, second) -> None:
    """Append a correctly hashed escrow-to-escrow transfer, with the code's check taken out."""
    monkeypatch.setattr(service, "_check_movement", lambda accounts: None)
    postings.transfer(
        key="steal:1",
        debit=service.escrow_account(first),
        credit=service.escrow_account(second),
        amount=Money(4_000, "CNY"),
    )


def test_verify_reports_a_correctly_hashed_transfer_between_escrows(db, monkeypatch, is_postgres):
    first, second = make_campaign(), make_campaign()
    _charge(first, 5_000, 1)
    service.escrow_account(second)  # opened (and committed) before the guard is turned off
    db.session.commit()
    if is_postgres:
        db.session.execute(text("SET LOCAL session_replication_role = replica"))  # the guard off
    _post_escrow_to_escrow(db, monkeypatch, first, second)
    report = service.verify_ledger()
    assert not report.ok
    assert report.first_broken[0] == 2
    assert any("between campaign escrows" in p for p in report.problems)
    assert not any("hash does not match" in p for p in report.problems)


@pytest.mark.postgres
def test_the_database_refuses_a_transfer_between_escrows(db, monkeypatch):
    first, second = make_campaign(), make_campaign()
    _charge(first, 5_000, 1)
    db.session.commit()
    with pytest.raises(DBAPIError, match="between campaign escrows"):
        _post_escrow_to_escrow(db, monkeypatch, first, second)
    db.session.rollback()
    assert count(LedgerTransaction) == 1
    assert service.verify_ledger().ok


# --- (c) a published head catches a rewritten or shortened chain -----------------------
def _three_charges(db):
    campaign = make_campaign()
    txns = [_charge(campaign, 1_000 * n, n) for n in (1, 2, 3)]
    db.session.commit()
    return campaign, txns


def test_a_published_head_catches_a_rewritten_and_rehashed_history(db):
    _, txns = _three_charges(db)
    published = service.chain_head()
    assert published == (3, txns[2].hash)
    assert service.verify_ledger(expect_heads=[published]).ok

    # Take 500 from the second charge on both sides and on both balances, then re-hash.
    tamper(db, "UPDATE ledger_entries SET amount = amount - 500 WHERE transaction_id = :id", id=txns[1].id)
    tamper(db, "UPDATE ledger_accounts SET balance_amount = balance_amount - 500")
    rehash_chain(db)
    assert service.verify_ledger().ok  # consistent in itself: only the published head tells

    report = service.verify_ledger(expect_heads=[published])
    assert not report.ok
    assert report.first_broken[0] == 3
    assert any("published head" in p for p in report.problems)


def test_a_published_head_catches_deleted_last_transactions(db):
    _, txns = _three_charges(db)
    published = service.chain_head()
    last = txns[2]
    tamper(db, "DELETE FROM ledger_entries WHERE transaction_id = :id", id=last.id)
    tamper(db, "DELETE FROM ledger_transactions WHERE id = :id", id=last.id)
    tamper(db, "UPDATE ledger_accounts SET balance_amount = 3000, entry_count = 2")
    tamper(db, "UPDATE ledger_chain_head SET sequence = 2, head_hash = :h", h=txns[1].hash)
    assert service.verify_ledger().ok

    report = service.verify_ledger(expect_heads=[published, (2, txns[1].hash)])
    assert not report.ok
    assert any("is missing" in p and "deleted" in p for p in report.problems)


def test_verify_command_checks_an_expected_head(app, db):
    _, txns = _three_charges(db)
    runner = app.test_cli_runner()
    ok = runner.invoke(args=["ledger", "verify", "--expect-head", f"2:{txns[1].hash}"])
    assert ok.exit_code == 0, ok.output
    wrong = runner.invoke(args=["ledger", "verify", "--expect-head", f"2:{'a' * 64}"])
    assert wrong.exit_code == 1
    assert "published head" in wrong.output
    missing = runner.invoke(args=["ledger", "verify", "--expect-head", f"9:{txns[1].hash}"])
    assert missing.exit_code == 1
    malformed = runner.invoke(args=["ledger", "verify", "--expect-head", "banana"])
    assert malformed.exit_code == 2
    assert "SEQUENCE:HASH" in malformed.output


def test_the_head_is_published_for_others_to_keep(client, db):
    _three_charges(db)
    body = client.get("/ledger/head.json").get_json()
    sequence, head_hash = service.chain_head()
    assert (body["head_sequence"], body["head_hash"]) == (3, head_hash) and sequence == 3
    assert body["expect_head"] == f"3:{head_hash}"


# --- (d) review decisions are append-only ----------------------------------------------
@pytest.mark.postgres
@pytest.mark.parametrize(
    "sql",
    ["UPDATE campaign_events SET comment = 'approved without remarks'", "DELETE FROM campaign_events"],
)
def test_the_database_refuses_to_change_campaign_events(db, sql):
    campaign = make_campaign()
    db.session.add(
        CampaignEvent(
            campaign_id=campaign.id, from_state="submitted", to_state="rejected", comment="Documents forged."
        )
    )
    db.session.commit()
    with pytest.raises(DBAPIError, match="append-only"), db.engine.begin() as conn:
        conn.execute(text(sql))
    db.session.expire_all()
    assert db.session.scalars(select(CampaignEvent.comment)).all() == ["Documents forged."]
