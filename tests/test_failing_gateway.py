"""The payment services when the gateway fails on cue (tests/factories/gateway.py)."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from crowdfund.errors import Conflict
from crowdfund.extensions import db
from crowdfund.ledger import service as ledger
from crowdfund.payments import service
from crowdfund.payments.models import ChargeOutcome, OperationKind, OperationState
from crowdfund.payments.sandbox import SandboxCharge
from tests.factories import make_campaign, make_user
from tests.factories.gateway import ProcessDied
from tests.factories.ledger import balance
from tests.factories.payments import add_card, charge


def sandbox_charges() -> int:
    db.session.commit()  # a fresh snapshot: the sandbox commits in a session of its own
    return db.session.scalar(select(func.count()).select_from(SandboxCharge))


def test_without_cues_it_is_the_configured_gateway(app, failing_gateway):
    user, campaign = make_user(), make_campaign()
    add_card(user)
    op = charge(user, campaign, 2_000)
    assert failing_gateway.name == "sandbox"
    assert op.state is OperationState.SUCCEEDED
    assert failing_gateway.calls == [(OperationKind.CHARGE, op.idempotency_key)]
    assert sandbox_charges() == 1


def test_an_unreachable_gateway_leaves_the_charge_pending_until_it_answers(app, failing_gateway):
    user, campaign = make_user(), make_campaign()
    add_card(user)
    failing_gateway.unavailable()

    op = charge(user, campaign, 2_000, idempotency_key="pledge:1:charge")
    assert op.state is OperationState.PENDING and op.result is ChargeOutcome.TEMPORARY
    assert sandbox_charges() == 0
    with pytest.raises(Conflict) as refused:
        add_card(user)
    assert refused.value.code == "gateway_unavailable"

    failing_gateway.available()
    op = charge(user, campaign, 2_000, idempotency_key="pledge:1:charge")
    assert op.state is OperationState.SUCCEEDED
    assert sandbox_charges() == 1
    assert balance(ledger.escrow_account(campaign)) == 2_000


def test_a_decline_on_cue_never_reaches_the_gateway(app, failing_gateway):
    user, campaign = make_user(), make_campaign()
    add_card(user)
    failing_gateway.fail_next(OperationKind.CHARGE, ChargeOutcome.DECLINED, failure_code="card_declined")

    op = charge(user, campaign, 2_000)

    assert op.state is OperationState.FAILED and op.failure_code == "card_declined"
    assert sandbox_charges() == 0
    assert balance(ledger.escrow_account(campaign)) == 0
    assert charge(user, campaign, 2_000).state is OperationState.SUCCEEDED  # the cue was used up


def test_a_crash_after_the_charge_leaves_it_made_at_the_gateway_and_pending_here(app, failing_gateway):
    user, campaign = make_user(), make_campaign()
    add_card(user)
    failing_gateway.crash_after_charge()

    with pytest.raises(ProcessDied):
        charge(user, campaign, 2_000, idempotency_key="pledge:2:charge")
    db.session.rollback()

    assert failing_gateway.crashed[0].outcome is ChargeOutcome.SUCCEEDED
    assert sandbox_charges() == 1
    assert service.find_operation("pledge:2:charge").state is OperationState.PENDING
