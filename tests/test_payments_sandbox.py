"""The sandbox gateway through the payment services: test cards, idempotency, ledger, no card numbers."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select, text

from crowdfund.errors import Conflict, ValidationError
from crowdfund.extensions import db
from crowdfund.ledger import service as ledger
from crowdfund.ledger.models import LedgerTransaction
from crowdfund.money import Money
from crowdfund.payments import service
from crowdfund.payments.models import (
    ChargeOutcome,
    MethodStatus,
    OperationKind,
    OperationState,
    PaymentMethod,
    PaymentOperation,
)
from crowdfund.payments.sandbox import (
    SandboxCard,
    SandboxCharge,
    SandboxGateway,
    SandboxPayout,
    SandboxRefund,
)
from tests.factories import make_campaign, make_user
from tests.factories.ledger import balance, release
from tests.factories.payments import (
    DECLINED,
    DECLINES_CHARGES,
    INSUFFICIENT_FUNDS,
    NEEDS_AUTHENTICATION,
    VISA,
    add_card,
    charge,
    customer_id,
)


def count(model) -> int:
    db.session.commit()  # end the read snapshot: the sandbox commits in a transaction of its own
    return db.session.scalar(select(func.count()).select_from(model))


def ledger_count(kind: str | None = None) -> int:
    stmt = select(func.count()).select_from(LedgerTransaction)
    if kind:
        stmt = stmt.where(LedgerTransaction.kind == kind)
    return db.session.scalar(stmt)


# --- test cards --------------------------------------------------------------------------------
def test_4242_is_saved_as_default_and_charged_into_escrow(app):
    user, campaign = make_user(), make_campaign()
    method = add_card(user, VISA, expiry="12/30")
    assert (method.brand, method.last4, method.exp_month, method.exp_year) == ("visa", "4242", 12, 2030)
    assert method.label == "Visa \u2022\u2022\u2022\u2022 4242 (12/30)"
    assert service.default_payment_method(user).id == method.id

    op = charge(user, campaign, 12_345)

    assert op.state is OperationState.SUCCEEDED and op.state == "succeeded"
    assert op.result is ChargeOutcome.SUCCEEDED
    assert op.gateway_id.startswith("sbch_") and op.attempts == 1
    assert balance(ledger.escrow_account(campaign)) == 12_345
    assert balance(ledger.clearing_account("CNY")) == 12_345
    assert ledger.find_transaction(service.ledger_key(op)).kind == "charge"
    assert count(SandboxCharge) == 1


@pytest.mark.parametrize(
    ("number", "code", "words"),
    [
        (DECLINED, "card_declined", "declined"),
        (INSUFFICIENT_FUNDS, "insufficient_funds", "insufficient funds"),
    ],
)
def test_cards_declined_when_saved(app, number, code, words):
    user = make_user()
    with pytest.raises(ValidationError) as info:
        add_card(user, number)
    assert info.value.code == code
    assert words in info.value.message
    assert count(PaymentMethod) == 0
    assert service.default_payment_method(user) is None


def test_3184_needs_authentication_before_it_can_be_charged(app):
    user, campaign = make_user(), make_campaign()
    method = add_card(user, NEEDS_AUTHENTICATION)
    assert method.status is MethodStatus.REQUIRES_AUTHENTICATION
    assert service.default_payment_method(user) is None

    op = charge(user, campaign, 5_000, method=method)
    assert op.state is OperationState.REQUIRES_ACTION
    assert op.result is ChargeOutcome.NEEDS_AUTHENTICATION
    assert "confirm" in op.failure_message
    assert ledger_count() == 0

    service.authenticate_payment_method(user, method.id)
    assert service.default_payment_method(user).id == method.id
    op2 = charge(user, campaign, 5_000, method=method)
    assert op2.state is OperationState.SUCCEEDED
    assert balance(ledger.escrow_account(campaign)) == 5_000


def test_0341_is_saved_but_its_charges_are_declined(app):
    user, campaign = make_user(), make_campaign()
    method = add_card(user, DECLINES_CHARGES)
    assert method.is_usable and service.default_payment_method(user).id == method.id

    op = charge(user, campaign, 7_000)

    assert op.state is OperationState.FAILED
    assert op.result is ChargeOutcome.DECLINED
    assert op.failure_code == "card_declined"
    assert "another card" in op.failure_message
    assert ledger_count() == 0
    assert balance(ledger.escrow_account(campaign)) == 0


@pytest.mark.parametrize(
    ("data", "field"),
    [
        ({"number": "4242 4242 4242 4241"}, "number"),
        ({"number": "abcd"}, "number"),
        ({"expiry": "13/30"}, "expiry"),
        ({"expiry": "01/20"}, "expiry"),
        ({"expiry": "soon"}, "expiry"),
        ({"cvc": "12"}, "cvc"),
    ],
)
def test_bad_card_details_are_refused_with_a_field_message(app, data, field):
    user = make_user()
    form = {"number": VISA, "expiry": "12/30", "cvc": "123", "name": "A"} | data
    with pytest.raises(ValidationError) as info:
        service.save_payment_method(user, form)
    assert info.value.field == field
    assert count(PaymentMethod) == 0


def test_no_card_number_is_stored_anywhere(app):
    user = make_user()
    numbers = [VISA, NEEDS_AUTHENTICATION, DECLINES_CHARGES]
    for number in numbers:
        add_card(user, number)
    with pytest.raises(ValidationError):
        add_card(user, DECLINED)
    campaign = make_campaign()
    charge(user, campaign, 1_000)
    assert count(SandboxCard) == 3

    digits = [n.replace(" ", "") for n in numbers + [DECLINED]]
    seen = 0
    for table in db.metadata.sorted_tables:
        for row in db.session.execute(select(table)).all():
            blob = " ".join(str(v) for v in row)
            seen += 1
            for number in digits:
                assert number not in blob, f"{table.name} holds a full card number"
                assert number[:12] not in blob, f"{table.name} holds most of a card number"
    assert seen > 5


# --- idempotency --------------------------------------------------------------------------------
def test_same_key_charges_once(app):
    user, campaign = make_user(), make_campaign()
    add_card(user)
    first = charge(user, campaign, 2_500, idempotency_key="pledge:1:charge")
    again = charge(user, campaign, 2_500, idempotency_key="pledge:1:charge")

    assert again.id == first.id and again.state is OperationState.SUCCEEDED
    assert count(SandboxCharge) == 1
    assert ledger_count("charge") == 1
    assert balance(ledger.escrow_account(campaign)) == 2_500


def test_same_key_for_a_different_amount_is_refused(app):
    user, campaign = make_user(), make_campaign()
    add_card(user)
    charge(user, campaign, 2_500, idempotency_key="pledge:2:charge")
    with pytest.raises(Conflict) as info:
        charge(user, campaign, 9_999, idempotency_key="pledge:2:charge")
    assert info.value.code == "idempotency_conflict"
    assert count(SandboxCharge) == 1


def test_sandbox_gateway_replays_a_key_and_refuses_reuse(app):
    user = make_user()
    method = add_card(user)
    customer = customer_id(user)
    gw = SandboxGateway()
    args = dict(customer_id=customer, payment_method_id=method.gateway_id, description="", metadata={})
    one = gw.charge(amount=Money(100, "CNY"), idempotency_key="k1", **args)
    two = gw.charge(amount=Money(100, "CNY"), idempotency_key="k1", **args)
    other = gw.charge(amount=Money(200, "CNY"), idempotency_key="k1", **args)
    assert one.gateway_id == two.gateway_id and two.outcome is ChargeOutcome.SUCCEEDED
    assert other.outcome is ChargeOutcome.PERMANENT and other.failure_code == "idempotency_key_reused"
    assert count(SandboxCharge) == 1
    refund = dict(charge_id=one.gateway_id, idempotency_key="r1", metadata={})
    first = gw.refund(amount=Money(40, "CNY"), **refund)
    again = gw.refund(amount=Money(40, "CNY"), **refund)
    changed = gw.refund(amount=Money(60, "CNY"), **refund)
    assert first.gateway_id == again.gateway_id and again.outcome is ChargeOutcome.SUCCEEDED
    assert changed.failure_code == "idempotency_key_reused"


def test_a_declined_charge_is_not_retried_by_the_same_key(app):
    user, campaign = make_user(), make_campaign()
    add_card(user, DECLINES_CHARGES)
    op = charge(user, campaign, 1_000, idempotency_key="pledge:3:charge")
    add_card(user, VISA)
    again = charge(user, campaign, 1_000, idempotency_key="pledge:3:charge")
    assert again.id == op.id and again.state is OperationState.FAILED
    assert count(SandboxCharge) == 1
    retry = charge(user, campaign, 1_000, idempotency_key="pledge:3:charge:retry-1")
    assert retry.state is OperationState.SUCCEEDED


def test_temporary_failure_stays_pending_and_the_same_key_completes_it(app, failing_gateway):
    user, campaign = make_user(), make_campaign()
    add_card(user)
    failing_gateway.fail_next(OperationKind.CHARGE, ChargeOutcome.TEMPORARY, failure_code="processing_error")
    op = charge(user, campaign, 3_000, idempotency_key="pledge:4:charge")
    assert op.state is OperationState.PENDING and op.result is ChargeOutcome.TEMPORARY
    assert op.call_lease_until is None
    assert ledger_count() == 0

    op = charge(user, campaign, 3_000, idempotency_key="pledge:4:charge")
    assert op.state is OperationState.SUCCEEDED and op.attempts == 2
    assert failing_gateway.calls == [(OperationKind.CHARGE, "pledge:4:charge")] * 2
    assert count(SandboxCharge) == 1 and ledger_count("charge") == 1


def test_charge_needs_the_users_own_card(app):
    user, other, campaign = make_user(), make_user(), make_campaign()
    theirs = add_card(other)
    with pytest.raises(ValidationError):
        charge(user, campaign, 1_000, method=theirs)
    with pytest.raises(ValidationError):
        charge(user, campaign, 1_000, method=None)
    assert count(PaymentOperation) == 0


# --- saved cards ----------------------------------------------------------------------------------
def test_newest_card_is_default_and_removing_it_promotes_the_next(app):
    user = make_user()
    first = add_card(user, VISA)
    second = add_card(user, "5555 5555 5555 4444")
    assert second.brand == "mastercard"
    assert service.default_payment_method(user).id == second.id
    service.set_default_payment_method(user, first.id)
    assert service.default_payment_method(user).id == first.id
    service.remove_payment_method(user, first.id)
    assert service.default_payment_method(user).id == second.id
    assert [m.id for m in service.list_payment_methods(user)] == [second.id]
    assert db.session.get(SandboxCard, first.gateway_id).detached is True


def test_expired_default_card_is_not_offered(app):
    user = make_user()
    method = add_card(user)
    method.exp_year = 2020
    db.session.commit()
    assert service.default_payment_method(user) is None


# --- refunds ---------------------------------------------------------------------------------------
def test_partial_and_full_refunds_post_to_the_ledger(app):
    user, campaign = make_user(), make_campaign()
    add_card(user)
    op = charge(user, campaign, 10_000)

    part = service.refund(
        operation=op, amount=Money(3_000, "CNY"), idempotency_key="refund:a", reason="Changed tier"
    )
    assert part.state is OperationState.SUCCEEDED and part.kind is OperationKind.REFUND
    again = service.refund(operation=op, amount=Money(3_000, "CNY"), idempotency_key="refund:a", reason="x")
    assert again.id == part.id
    with pytest.raises(Conflict) as info:
        service.refund(
            operation=op, amount=Money(7_001, "CNY"), idempotency_key="refund:b", reason="too much"
        )
    assert info.value.code == "refund_too_large"

    rest = service.refund(operation=op, amount=None, idempotency_key="refund:c", reason="Cancelled")
    assert rest.amount == Money(7_000, "CNY")
    db.session.refresh(op)
    assert op.refunded == Money(10_000, "CNY")
    assert balance(ledger.escrow_account(campaign)) == 0
    assert balance(ledger.clearing_account("CNY")) == 0
    assert ledger_count("refund") == 2
    assert count(SandboxRefund) == 2
    assert db.session.scalar(select(SandboxCharge.refunded)) == 10_000


def test_refund_of_a_failed_charge_is_refused(app):
    user, campaign = make_user(), make_campaign()
    add_card(user, DECLINES_CHARGES)
    op = charge(user, campaign, 1_000)
    with pytest.raises(Conflict):
        service.refund(operation=op, amount=None, idempotency_key="refund:failed", reason="x")
    assert count(SandboxRefund) == 0


# --- payouts ----------------------------------------------------------------------------------------
def test_payout_needs_money_owed_then_pays_once(app):
    user, campaign = make_user(), make_campaign()
    add_card(user)
    charge(user, campaign, 50_000)
    org = campaign.organisation
    account = service.save_sandbox_bank_details(
        org, bank_name="Bank of Health", account_number="6222 0000 1234 5678"
    )
    assert account.payouts_enabled and account.last4 == "5678"
    destination = service.payout_destination(org.id)
    assert destination.startswith("sbacct_")

    with pytest.raises(Conflict):
        service.payout(
            organisation_id=org.id,
            amount=Money(10_000, "CNY"),
            idempotency_key="payout:1",
            destination=destination,
        )
    assert count(SandboxPayout) == 0

    release(campaign, 40_000)
    paid = service.payout(
        organisation_id=org.id,
        amount=Money(40_000, "CNY"),
        idempotency_key="payout:2",
        destination=destination,
        campaign_id=campaign.id,
        description="Campaign proceeds",
    )
    again = service.payout(
        organisation_id=org.id,
        amount=Money(40_000, "CNY"),
        idempotency_key="payout:2",
        destination=destination,
    )
    assert paid.state is OperationState.SUCCEEDED and again.id == paid.id
    assert count(SandboxPayout) == 1
    assert balance(ledger.org_payable_account(org.id, "CNY")) == 0
    assert balance(ledger.clearing_account("CNY")) == 10_000
    assert balance(ledger.escrow_account(campaign)) == 10_000
    with pytest.raises(Conflict):
        service.payout(
            organisation_id=org.id,
            amount=Money(1, "CNY"),
            idempotency_key="payout:3",
            destination=destination,
        )


def test_payout_without_destination_is_refused(app):
    campaign = make_campaign()
    with pytest.raises(ValidationError):
        service.payout(
            organisation_id=campaign.organisation_id,
            amount=Money(1, "CNY"),
            idempotency_key="p",
            destination="",
        )


# --- the ledger agrees ------------------------------------------------------------------------------
def test_ledger_still_verifies_after_payments(app):
    user, campaign = make_user(), make_campaign()
    add_card(user)
    op = charge(user, campaign, 8_000)
    service.refund(operation=op, amount=Money(1_000, "CNY"), idempotency_key="r1", reason="x")
    assert ledger.verify_ledger().ok
    assert db.session.execute(text("SELECT count(*) FROM payment_operations")).scalar() == 2
