"""Charges, refunds and their outcomes from many threads at once, on PostgreSQL.

Every money path locks the campaign first, then the payment operations, then the
ledger; refunds lock the charge they refund as it is under the lock. These tests run
real threads (each with its own app context, session and connection) against one
campaign and check what was recorded, not merely that nothing raised.
"""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from sqlalchemy import func, select

from crowdfund.accounts.models import User
from crowdfund.campaigns.models import CampaignKind
from crowdfund.engine.models import Pledge, PledgeState
from crowdfund.engine.service import PledgeRequest, place_pledge
from crowdfund.errors import Conflict
from crowdfund.extensions import db
from crowdfund.ledger import service as ledger
from crowdfund.ledger.models import LedgerTransaction
from crowdfund.money import Money
from crowdfund.payments import service
from crowdfund.payments.models import OperationKind, OperationState, PaymentOperation
from tests.factories import add_card, charge, cny, make_campaign, make_user, make_users_fast

DONATIONS = 80
DONATION_WORKERS = 10
REFUNDERS = 4

pytestmark = pytest.mark.postgres


@pytest.fixture
def app_config(app_config):
    class Config(app_config):
        # Each worker may hold two connections: its own and the sandbox gateway's.
        SQLALCHEMY_ENGINE_OPTIONS = {"pool_size": 2 * (DONATION_WORKERS + REFUNDERS) + 2, "pool_timeout": 60}

    return Config


def in_thread(app, fn, errors: list):
    """Run fn() in an app context of its own; record any exception (none is expected)."""
    with app.app_context():
        try:
            return fn()
        except Exception as exc:  # noqa: BLE001 - every exception is a failure, reported below
            errors.append(exc)
            return None
        finally:
            db.session.remove()


def ops(kind: OperationKind, campaign_id: int) -> list[PaymentOperation]:
    return list(
        db.session.scalars(
            select(PaymentOperation).where(
                PaymentOperation.kind == kind, PaymentOperation.campaign_id == campaign_id
            )
        )
    )


def ledger_count(kind: str) -> int:
    return db.session.scalar(
        select(func.count()).select_from(LedgerTransaction).where(LedgerTransaction.kind == kind)
    )


def refund_recent_charges(campaign_id: int, done: threading.Event, taken: set, guard: threading.Lock) -> int:
    """Refund the newest charges of the campaign, one after another, until the donations are done."""
    refunded = 0
    while True:
        finished = done.is_set()
        db.session.rollback()  # a fresh snapshot: see the charges other threads committed
        recent = db.session.scalars(
            select(PaymentOperation)
            .where(
                PaymentOperation.kind == OperationKind.CHARGE,
                PaymentOperation.campaign_id == campaign_id,
                PaymentOperation.state == OperationState.SUCCEEDED,
            )
            .order_by(PaymentOperation.id.desc())
            .limit(5)
        ).all()
        with guard:
            target = next((op for op in recent if op.id not in taken), None)
            if target is not None:
                taken.add(target.id)
        if target is None:
            if finished:
                return refunded
            time.sleep(0.01)
            continue
        result = service.refund(
            operation=target, amount=None, idempotency_key=f"refund:{target.id}", reason="Donor asked"
        )
        assert result.state is OperationState.SUCCEEDED, (result, result.failure_code)
        refunded += 1
        if refunded >= 6 and finished:
            return refunded


def test_donations_and_refunds_of_one_campaign_at_once_all_go_through(app):
    campaign = make_campaign(CampaignKind.DONATION)
    donors = make_users_fast(DONATIONS)
    for donor in donors:
        add_card(donor)
    donor_ids = [u.id for u in donors]
    campaign_id = campaign.id
    errors: list = []
    done, guard, taken = threading.Event(), threading.Lock(), set()
    start = threading.Event()

    def donate(user_id: int):
        def job():
            start.wait()
            return place_pledge(db.session.get(User, user_id), campaign_id, PledgeRequest(amount=cny(10))).id

        return job

    def refunder():
        start.wait()
        return refund_recent_charges(campaign_id, done, taken, guard)

    with ThreadPoolExecutor(max_workers=REFUNDERS) as refund_pool:
        refunds = [refund_pool.submit(in_thread, app, refunder, errors) for _ in range(REFUNDERS)]
        with ThreadPoolExecutor(max_workers=DONATION_WORKERS) as pool:
            donations = [pool.submit(in_thread, app, donate(u), errors) for u in donor_ids]
            start.set()
            pledge_ids = [f.result(timeout=300) for f in donations]
        done.set()
        refund_counts = [f.result(timeout=300) for f in refunds]

    assert not errors, errors
    assert None not in pledge_ids
    db.session.rollback()  # see what the threads committed

    pledges = db.session.scalars(select(Pledge).where(Pledge.campaign_id == campaign_id)).all()
    assert len(pledges) == DONATIONS
    assert all(p.state not in (PledgeState.PENDING, PledgeState.FAILED) for p in pledges)
    charges = ops(OperationKind.CHARGE, campaign_id)
    assert {p.payment_operation_id for p in pledges} == {op.id for op in charges}
    assert len(charges) == DONATIONS
    assert all(op.state is OperationState.SUCCEEDED for op in charges)

    refunds_made = ops(OperationKind.REFUND, campaign_id)
    assert len(refunds_made) == sum(refund_counts) >= REFUNDERS
    assert all(op.state is OperationState.SUCCEEDED for op in refunds_made)
    refunded = {op.parent_id for op in refunds_made}
    for op in charges:
        assert op.refunded_amount == (op.amount_amount if op.id in refunded else 0)

    charged = sum(op.amount_amount for op in charges)
    paid_back = sum(op.amount_amount for op in refunds_made)
    assert ledger.balance_of_escrow(campaign_id, "CNY") == Money(charged - paid_back, "CNY")
    assert ledger_count("charge") == DONATIONS and ledger_count("refund") == len(refunds_made)
    assert ledger.verify_ledger().ok


def test_concurrent_refunds_of_one_charge_add_up(app):
    user, campaign = make_user(), make_campaign()
    add_card(user)
    paid = charge(user, campaign, 10_000)
    paid_id = paid.id
    workers = 4
    barrier = threading.Barrier(workers)
    errors: list = []

    def refund_part(n: int):
        def job():
            op = db.session.get(PaymentOperation, paid_id)
            op.refunded_amount  # noqa: B018 - load the charge as it is before the others refund it
            barrier.wait()
            return service.refund(
                operation=op, amount=Money(1_000, "CNY"), idempotency_key=f"refund:part:{n}", reason="x"
            ).state

        return job

    with ThreadPoolExecutor(max_workers=workers) as pool:
        states = list(pool.map(lambda n: in_thread(app, refund_part(n), errors), range(workers)))

    assert not errors, errors
    assert states == [OperationState.SUCCEEDED] * workers
    db.session.rollback()
    paid = db.session.get(PaymentOperation, paid_id)
    assert paid.refunded_amount == workers * 1_000

    with pytest.raises(Conflict) as info:
        service.refund(operation=paid, amount=Money(6_001, "CNY"), idempotency_key="refund:over", reason="x")
    assert info.value.code == "refund_too_large"
    rest = service.refund(operation=paid, amount=None, idempotency_key="refund:rest", reason="x")
    assert rest.state is OperationState.SUCCEEDED and rest.amount == Money(6_000, "CNY")
    db.session.rollback()
    assert db.session.get(PaymentOperation, paid_id).refunded_amount == 10_000
    assert ledger.balance_of_escrow(campaign.id, "CNY") == Money(0, "CNY")
    assert ledger.verify_ledger().ok
