"""Exactly once: a crash between "intent persisted" and "outcome recorded", retries, races, reconcile."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest
from sqlalchemy import func, select, update

from crowdfund.extensions import db
from crowdfund.ledger import service as ledger
from crowdfund.ledger.models import LedgerTransaction
from crowdfund.models_base import utcnow
from crowdfund.money import Money
from crowdfund.payments import service
from crowdfund.payments.models import OperationKind, OperationState, PaymentOperation
from crowdfund.payments.sandbox import SandboxCharge, SandboxGateway, SandboxPayout, SandboxRefund
from tests.factories import make_campaign, make_user
from tests.factories.gateway import ProcessDied
from tests.factories.ledger import balance, release
from tests.factories.payments import add_card, charge, customer_id


def count(model) -> int:
    db.session.commit()  # a fresh snapshot: the sandbox commits on its own
    return db.session.scalar(select(func.count()).select_from(model))


def ledger_count(kind: str) -> int:
    return db.session.scalar(
        select(func.count()).select_from(LedgerTransaction).where(LedgerTransaction.kind == kind)
    )


def test_crash_after_the_gateway_charged_then_rerun_charges_once(app, failing_gateway):
    user, campaign = make_user(), make_campaign()
    add_card(user)
    failing_gateway.crash_after_charge()
    deaths = failing_gateway.crashed

    with pytest.raises(ProcessDied):
        charge(user, campaign, 9_900, idempotency_key="pledge:7:charge")
    db.session.rollback()  # the process is gone; what is committed is what a new one sees

    op = service.find_operation("pledge:7:charge")
    assert op.state is OperationState.PENDING and op.gateway_id is None
    assert deaths[0].gateway_id is not None  # the gateway did charge
    assert count(SandboxCharge) == 1
    assert ledger_count("charge") == 0

    op = charge(user, campaign, 9_900, idempotency_key="pledge:7:charge")

    assert op.state is OperationState.SUCCEEDED
    assert op.gateway_id == deaths[0].gateway_id
    assert op.attempts == 1  # found at the gateway, not charged again
    assert count(SandboxCharge) == 1
    assert ledger_count("charge") == 1
    assert balance(ledger.escrow_account(campaign)) == 9_900


def test_crash_then_reconcile_command_settles_it_once(app, failing_gateway):
    user, campaign = make_user(), make_campaign()
    add_card(user)
    failing_gateway.crash_after_charge()
    with pytest.raises(ProcessDied):
        charge(user, campaign, 4_200, idempotency_key="pledge:8:charge")
    db.session.rollback()

    result = app.test_cli_runner().invoke(args=["payments", "reconcile", "--stale-after", "0"])

    assert "resolved: charge #1" in result.output and "pending -> succeeded" in result.output
    assert "Everything matches." in result.output, result.output
    assert result.exit_code == 0
    assert count(SandboxCharge) == 1
    assert ledger_count("charge") == 1
    again = app.test_cli_runner().invoke(args=["payments", "reconcile", "--stale-after", "0"])
    assert again.exit_code == 0 and "resolved" not in again.output
    assert ledger_count("charge") == 1


def test_crash_before_the_gateway_call_waits_for_the_lease_then_charges_once(app, failing_gateway):
    user, campaign = make_user(), make_campaign()
    add_card(user)
    failing_gateway.crash_before(OperationKind.CHARGE)
    with pytest.raises(ProcessDied):
        charge(user, campaign, 1_500, idempotency_key="pledge:9:charge")
    db.session.rollback()

    # Right away: the first process might still be calling, so nobody calls again.
    op = charge(user, campaign, 1_500, idempotency_key="pledge:9:charge")
    assert op.state is OperationState.PENDING
    assert count(SandboxCharge) == 0

    # Once its lease has run out, the gateway has never seen it: charge, once.
    db.session.execute(update(PaymentOperation).values(call_lease_until=utcnow() - timedelta(seconds=1)))
    db.session.commit()
    op = charge(user, campaign, 1_500, idempotency_key="pledge:9:charge")
    assert op.state is OperationState.SUCCEEDED and op.attempts == 2
    op = charge(user, campaign, 1_500, idempotency_key="pledge:9:charge")
    assert count(SandboxCharge) == 1 and ledger_count("charge") == 1


def test_crash_during_refund_and_payout_then_rerun_moves_money_once(app, failing_gateway):
    user, campaign = make_user(), make_campaign()
    add_card(user)
    paid = charge(user, campaign, 10_000)
    service.save_sandbox_bank_details(campaign.organisation, bank_name="Bank", account_number="12345678")
    destination = service.payout_destination(campaign.organisation_id)
    release(campaign, 6_000)

    failing_gateway.crash_after(OperationKind.REFUND)
    with pytest.raises(ProcessDied):
        service.refund(operation=paid, amount=Money(1_000, "CNY"), idempotency_key="refund:9", reason="x")
    db.session.rollback()
    refund = service.refund(
        operation=paid, amount=Money(1_000, "CNY"), idempotency_key="refund:9", reason="x"
    )
    assert refund.state is OperationState.SUCCEEDED

    failing_gateway.crash_after(OperationKind.PAYOUT)
    with pytest.raises(ProcessDied):
        service.payout(
            organisation_id=campaign.organisation_id,
            amount=Money(6_000, "CNY"),
            idempotency_key="payout:9",
            destination=destination,
        )
    db.session.rollback()
    payout = service.payout(
        organisation_id=campaign.organisation_id,
        amount=Money(6_000, "CNY"),
        idempotency_key="payout:9",
        destination=destination,
    )
    assert payout.state is OperationState.SUCCEEDED

    assert count(SandboxRefund) == 1 and count(SandboxPayout) == 1
    assert ledger_count("refund") == 1 and ledger_count("payout") == 1
    assert balance(ledger.clearing_account("CNY")) == 10_000 - 1_000 - 6_000
    assert ledger.verify_ledger().ok


def test_reconcile_reports_a_gateway_charge_we_have_no_record_of(app):
    user, campaign = make_user(), make_campaign()
    method = add_card(user)
    charge(user, campaign, 1_000)
    customer = customer_id(user)
    SandboxGateway().charge(
        customer_id=customer,
        payment_method_id=method.gateway_id,
        amount=Money(77, "CNY"),
        idempotency_key="stray",
        description="",
        metadata={},
    )

    result = app.test_cli_runner().invoke(args=["payments", "reconcile"])

    assert result.exit_code == 1
    assert "DIFFERENCE: gateway charge sbch_" in result.output
    assert "1 difference(s)." in result.output


def test_reconcile_with_nothing_wrong(app):
    user, campaign = make_user(), make_campaign()
    add_card(user)
    charge(user, campaign, 1_000)
    result = app.test_cli_runner().invoke(args=["payments", "reconcile"])
    assert result.exit_code == 0, result.output
    assert "1 payment operation(s) checked" in result.output and "Everything matches." in result.output


@pytest.mark.postgres
def test_two_workers_with_the_same_key_charge_once(app):
    user, campaign = make_user(), make_campaign()
    method = add_card(user)
    ids = (user.id, method.id, campaign.id)
    barrier = threading.Barrier(4)
    results, errors = [], []

    def worker():
        with app.app_context():
            try:
                from crowdfund.accounts.models import User
                from crowdfund.payments.models import PaymentMethod

                u = db.session.get(User, ids[0])
                m = db.session.get(PaymentMethod, ids[1])
                barrier.wait()
                op = service.charge(
                    user=u,
                    payment_method=m,
                    amount=Money(2_000, "CNY"),
                    idempotency_key="pledge:race:charge",
                    campaign_id=ids[2],
                    description="race",
                    metadata={},
                )
                results.append((op.id, op.state))
            except Exception as exc:  # pragma: no cover - reported below
                errors.append(exc)
            finally:
                db.session.remove()

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    assert not errors, errors
    assert len({op_id for op_id, _ in results}) == 1
    assert count(SandboxCharge) == 1
    assert ledger_count("charge") == 1
    assert balance(ledger.escrow_account(campaign)) == 2_000
