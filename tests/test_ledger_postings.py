"""The named movements of money: each builds its legs, kind and key in one place."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from crowdfund.database import unit_of_work
from crowdfund.errors import ErrorCode
from crowdfund.extensions import db as _db
from crowdfund.ledger import postings, service
from crowdfund.ledger.models import (
    KIND_LABELS,
    AccountPurpose,
    LedgerError,
    LedgerTransaction,
    TransactionKind,
)
from crowdfund.money import Money
from tests.factories import make_campaign


def cny(amount: int) -> Money:
    return Money(amount, "CNY")


def legs(txn: LedgerTransaction) -> list[tuple[str, str, int]]:
    """(account code, side, amount) of each entry, sorted."""
    return sorted((e.account.code, e.side.value, e.amount) for e in txn.entries)


def balance(purpose: AccountPurpose, owner_type: str | None = None, owner_id: int | None = None) -> int:
    return service.account_balance(service.get_account(purpose, "CNY", owner_type, owner_id)).amount


def test_every_kind_has_a_label_and_no_other_kinds_exist():
    assert set(KIND_LABELS) == set(TransactionKind)
    assert {k.value for k in TransactionKind} == {
        "charge",
        "refund",
        "release",
        "payout",
        "processing_fee",
        "repayment",
        "transfer",
        "reversal",
        "platform_fee",
        "recovery",
    }


def test_charge_refund_release_and_payout_move_the_money_they_say(db):
    campaign = make_campaign()
    org, c = campaign.organisation_id, campaign.id
    charge = postings.charge_into_escrow(payment_id=11, campaign_id=c, amount=cny(10_000))
    refund = postings.refund_from_escrow(
        payment_id=12, charge_payment_id=11, campaign_id=c, amount=cny(1_000)
    )
    release = postings.release_to_organisation(
        campaign_id=c,
        organisation_id=org,
        amount=cny(9_000),
        platform_fee=cny(450),
        key=f"settlement:{c}:release",
    )
    payout = postings.payout(payment_id=13, organisation_id=org, amount=cny(8_550), campaign_id=c)

    assert [(t.key, t.kind) for t in (charge, refund, release, payout)] == [
        ("payment:11:charge", "charge"),
        ("payment:12:refund", "refund"),
        (f"settlement:{c}:release", "release"),
        ("payment:13:payout", "payout"),
    ]
    assert legs(charge) == [
        (f"campaign_escrow:campaign:{c}:CNY", "credit", 10_000),
        ("gateway_clearing:CNY", "debit", 10_000),
    ]
    assert legs(refund) == [
        (f"campaign_escrow:campaign:{c}:CNY", "debit", 1_000),
        ("gateway_clearing:CNY", "credit", 1_000),
    ]
    assert legs(release) == [
        (f"campaign_escrow:campaign:{c}:CNY", "debit", 9_000),
        (f"org_payable:organisation:{org}:CNY", "credit", 8_550),
        ("platform_fee_revenue:CNY", "credit", 450),
    ]
    assert legs(payout) == [
        ("gateway_clearing:CNY", "credit", 8_550),
        (f"org_payable:organisation:{org}:CNY", "debit", 8_550),
    ]
    assert balance(AccountPurpose.CAMPAIGN_ESCROW, "campaign", c) == 0
    assert balance(AccountPurpose.ORG_PAYABLE, "organisation", org) == 0
    assert balance(AccountPurpose.PLATFORM_FEE_REVENUE) == 450
    assert balance(AccountPurpose.GATEWAY_CLEARING) == 450
    assert [t.kind_label for t in (charge, release)] == ["Backer payment received", "Released from escrow"]
    assert service.verify_ledger().ok


def test_a_movement_posted_again_returns_the_first_and_changes_nothing(db):
    campaign = make_campaign()
    first = postings.charge_into_escrow(payment_id=5, campaign_id=campaign.id, amount=cny(700))
    again = postings.charge_into_escrow(payment_id=5, campaign_id=campaign.id, amount=cny(700))
    assert again.id == first.id
    assert balance(AccountPurpose.CAMPAIGN_ESCROW, "campaign", campaign.id) == 700
    with pytest.raises(LedgerError) as conflict:
        postings.charge_into_escrow(payment_id=5, campaign_id=campaign.id, amount=cny(800))
    assert conflict.value.code is ErrorCode.LEDGER_IDEMPOTENCY_CONFLICT


def test_release_without_fee_and_with_everything_as_fee(db):
    campaign = make_campaign()
    c, org = campaign.id, campaign.organisation_id
    postings.charge_into_escrow(payment_id=1, campaign_id=c, amount=cny(2_000))
    no_fee = postings.release_to_organisation(
        campaign_id=c, organisation_id=org, amount=cny(1_000), platform_fee=cny(0), key="r:1"
    )
    all_fee = postings.release_to_organisation(
        campaign_id=c, organisation_id=org, amount=cny(1_000), platform_fee=cny(1_000), key="r:2"
    )
    assert len(no_fee.entries) == 2 and len(all_fee.entries) == 2
    assert balance(AccountPurpose.ORG_PAYABLE, "organisation", org) == 1_000
    assert balance(AccountPurpose.PLATFORM_FEE_REVENUE) == 1_000


@pytest.mark.parametrize("fee", [Money(-1, "CNY"), Money(1_001, "CNY"), Money(10, "USD")])
def test_release_refuses_a_fee_outside_the_amount(db, fee):
    campaign = make_campaign()
    postings.charge_into_escrow(payment_id=1, campaign_id=campaign.id, amount=cny(2_000))
    with pytest.raises(LedgerError) as refused:
        postings.release_to_organisation(
            campaign_id=campaign.id,
            organisation_id=campaign.organisation_id,
            amount=cny(1_000),
            platform_fee=fee,
            key="r:1",
        )
    assert refused.value.code in (ErrorCode.LEDGER_AMOUNT, ErrorCode.LEDGER_CURRENCY)
    assert _db.session.scalar(select(func.count()).select_from(LedgerTransaction)) == 1


def test_payout_to_a_provider_processing_fee_and_repayment(db):
    campaign = make_campaign()
    c = campaign.id
    postings.charge_into_escrow(payment_id=1, campaign_id=c, amount=cny(5_000))
    provider = service.provider_payable_account(8, "CNY")
    postings.transfer(
        key="opening:provider:8", debit=service.clearing_account("CNY"), credit=provider, amount=cny(300)
    )
    paid = postings.payout(payment_id=2, provider_id=8, organisation_id=99, amount=cny(300))
    assert legs(paid)[1] == ("provider_payable:provider:8:CNY", "debit", 300)

    fee = postings.processing_fee(payment_id=1, amount=cny(35), campaign_id=c)
    assert (fee.key, fee.kind) == ("payment:1:processing_fee", "processing_fee")
    assert balance(AccountPurpose.PROCESSING_FEE_EXPENSE) == 35

    repaid = postings.repayment(payment_id=3, campaign_id=c, shares={7: cny(60), 4: cny(40)})
    assert (repaid.key, repaid.kind) == ("payment:3:repayment", "repayment")
    assert legs(repaid) == [
        ("gateway_clearing:CNY", "debit", 100),
        ("user_wallet:user:4:CNY", "credit", 40),
        ("user_wallet:user:7:CNY", "credit", 60),
    ]
    assert service.verify_ledger().ok


@pytest.mark.parametrize(
    ("call", "code"),
    [
        (lambda: postings.payout(payment_id=1, amount=cny(1)), ErrorCode.LEDGER_OWNER),
        (lambda: postings.repayment(payment_id=1, campaign_id=1, shares={}), ErrorCode.LEDGER_AMOUNT),
        (
            lambda: postings.repayment(payment_id=1, campaign_id=1, shares={1: cny(1), 2: Money(1, "USD")}),
            ErrorCode.LEDGER_CURRENCY,
        ),
    ],
)
def test_movements_refuse_what_makes_no_sense(db, call, code):
    with pytest.raises(LedgerError) as refused:
        call()
    assert refused.value.code is code


def test_a_movement_joins_the_callers_unit_of_work(db):
    campaign = make_campaign()
    campaign_id = campaign.id
    _db.session.commit()
    with pytest.raises(RuntimeError, match="changed my mind"), unit_of_work():
        postings.charge_into_escrow(payment_id=1, campaign_id=campaign_id, amount=cny(500))
        postings.charge_into_escrow(payment_id=2, campaign_id=campaign_id, amount=cny(500))
        raise RuntimeError("changed my mind")
    # Nothing of either posting survived: they did not commit on their own.
    assert _db.session.scalar(select(func.count()).select_from(LedgerTransaction)) == 0
    assert service.chain_head()[0] == 0
    assert service.verify_ledger().ok


@pytest.mark.parametrize("paid_out", [False, True])
def test_a_refund_made_at_the_gateway_after_the_release_is_recovered_from_the_organisation(db, paid_out):
    """A refund made in the gateway's dashboard after settlement released the money: the
    shortfall comes back into escrow from what the organisation is owed, or is recorded as
    owed by it, and the refund then leaves escrow; replaying it changes nothing."""
    campaign = make_campaign()
    org = campaign.organisation_id
    postings.charge_into_escrow(payment_id=1, campaign_id=campaign.id, amount=cny(1_000))
    postings.release_to_organisation(
        campaign_id=campaign.id, organisation_id=org, amount=cny(1_000), platform_fee=cny(0), key="release:1"
    )
    if paid_out:
        postings.payout(payment_id=2, amount=cny(1_000), organisation_id=org, campaign_id=campaign.id)

    refund = postings.refund_from_escrow(
        payment_id=3, charge_payment_id=1, campaign_id=campaign.id, amount=cny(400)
    )
    again = postings.refund_from_escrow(
        payment_id=3, charge_payment_id=1, campaign_id=campaign.id, amount=cny(400)
    )

    assert again.id == refund.id
    assert balance(AccountPurpose.CAMPAIGN_ESCROW, "campaign", campaign.id) == 0
    assert balance(AccountPurpose.ORG_PAYABLE, "organisation", org) == (0 if paid_out else 600)
    assert balance(AccountPurpose.ORG_RECEIVABLE, "organisation", org) == (400 if paid_out else 0)
    recovery = service.find_transaction("payment:3:refund:recovery")
    assert recovery is not None and recovery.kind == TransactionKind.RECOVERY
    assert service.verify_ledger().ok
