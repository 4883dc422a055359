"""POST /webhooks/stripe: signatures, replays, order, and state changed exactly once.

Signature tests need no Stripe server; tests marked `stripe` re-read objects from
localstripe, as the handler does in production with Stripe.
"""

from __future__ import annotations

import json
import time

import pytest
from sqlalchemy import func, select

from crowdfund import create_app
from crowdfund.extensions import db
from crowdfund.ledger import service as ledger
from crowdfund.ledger.models import LedgerTransaction
from crowdfund.money import Money
from crowdfund.payments import service
from crowdfund.payments.models import OperationKind, OperationState, PaymentOperation, WebhookEvent
from tests.factories import make_campaign, make_user
from tests.factories.gateway import FailingGateway, ProcessDied
from tests.factories.ledger import balance
from tests.factories.payments import charge
from tests.stripe_helpers import (
    WEBHOOK_SECRET,
    card_saved_in_browser,
    configure_stripe,
    event,
    sign,
    stripe_client,
)

#: The `localstripe` session fixture.
pytest_plugins = ["tests.stripe_fixtures"]

URL = "/webhooks/stripe"


@pytest.fixture
def app_config(app_config, request):
    if request.node.get_closest_marker("stripe"):
        configure_stripe(app_config, request.getfixturevalue("localstripe"))
    else:
        app_config.STRIPE_WEBHOOK_SECRET = WEBHOOK_SECRET
    return app_config


def post(client, payload: str, signature: str | None):
    headers = {"Content-Type": "application/json"}
    if signature is not None:
        headers["Stripe-Signature"] = signature
    return client.post(URL, data=payload, headers=headers)


def stored_events() -> int:
    return db.session.scalar(select(func.count()).select_from(WebhookEvent))


def ledger_count(kind: str) -> int:
    return db.session.scalar(
        select(func.count()).select_from(LedgerTransaction).where(LedgerTransaction.kind == kind)
    )


# --- signatures -------------------------------------------------------------------------------------
def test_correctly_signed_event_of_a_type_we_do_not_act_on_is_stored_and_acknowledged(app, client):
    payload = event("customer.created", {"id": "cus_123", "object": "customer"}, "evt_ignored_1")
    response = post(client, payload, sign(payload))
    assert response.status_code == 200
    assert response.json["duplicate"] is False and response.json["outcome"] == "ignored"
    stored = db.session.scalars(select(WebhookEvent)).one()
    assert (stored.event_id, stored.type, stored.outcome) == ("evt_ignored_1", "customer.created", "ignored")
    assert stored.processed_at is not None and json.loads(stored.payload)["id"] == "evt_ignored_1"


@pytest.mark.parametrize(
    "signature",
    [
        None,
        "",
        "t=123",
        "garbage",
        "forged-with-another-secret",
        "forged-over-another-body",
    ],
)
def test_forged_signatures_are_refused_and_change_nothing(app, client, signature):
    payload = event("payment_intent.succeeded", {"id": "pi_1", "object": "payment_intent"}, "evt_forged")
    if signature == "forged-with-another-secret":
        signature = sign(payload, secret="whsec_attacker")
    elif signature == "forged-over-another-body":
        signature = sign(payload.replace("pi_1", "pi_2"))
    response = post(client, payload, signature)
    assert response.status_code == 400
    assert response.json["error"]["code"] == "invalid_signature"
    assert stored_events() == 0


def test_event_older_than_the_tolerance_is_refused(app, client):
    payload = event("customer.created", {"id": "cus_1"}, "evt_old")
    old = int(time.time()) - app.config["STRIPE_WEBHOOK_TOLERANCE"] - 5
    response = post(client, payload, sign(payload, timestamp=old))
    assert response.status_code == 400
    assert stored_events() == 0
    fresh_enough = int(time.time()) - app.config["STRIPE_WEBHOOK_TOLERANCE"] + 30
    assert post(client, payload, sign(payload, timestamp=fresh_enough)).status_code == 200


def test_a_signed_body_that_is_not_an_event_is_refused(app, client):
    for payload in ("not json", "[1, 2]", json.dumps({"type": "x"})):
        assert post(client, payload, sign(payload)).status_code == 400
    assert stored_events() == 0


def test_no_secret_configured_refuses_everything(app, client):
    app.config["STRIPE_WEBHOOK_SECRET"] = None
    payload = event("customer.created", {"id": "cus_1"})
    assert post(client, payload, sign(payload)).status_code == 400
    assert stored_events() == 0


def test_replayed_event_is_acknowledged_and_ignored(app, client):
    payload = event("customer.created", {"id": "cus_1"}, "evt_replay")
    first = post(client, payload, sign(payload))
    second = post(client, payload, sign(payload))
    assert first.status_code == second.status_code == 200
    assert second.json["duplicate"] is True
    assert stored_events() == 1


def test_webhook_works_with_csrf_protection_on(app_config, client):
    class CsrfOn(app_config):
        WTF_CSRF_ENABLED = True

    real = create_app(CsrfOn)
    with real.app_context():
        web = real.test_client()
        payload = event("customer.created", {"id": "cus_1"}, "evt_csrf")
        assert post(web, payload, sign(payload)).status_code == 200
        forged = post(web, payload, "t=1,v1=00")
        assert forged.status_code == 400 and forged.json["error"]["code"] == "invalid_signature"
        # The rest of the site still wants its CSRF token.
        assert web.post("/account/payment-methods/1/remove").status_code == 400


# --- state changes, re-reading Stripe (localstripe) ----------------------------------------------------
def _pending_charge_at_stripe(gateway: FailingGateway, base_url: str, amount: int = 6_000):
    """A charge Stripe made whose outcome we never recorded (the process died)."""
    user, campaign = make_user(), make_campaign()
    setup = service.begin_add_payment_method(user)
    service.save_payment_method(
        user, {"setup_intent": card_saved_in_browser(base_url, setup.client_secret, "4242424242424242")}
    )
    gateway.crash_after_charge()
    with pytest.raises(ProcessDied):
        charge(user, campaign, amount, idempotency_key=f"pledge:{campaign.id}:charge")
    db.session.rollback()
    op = service.find_operation(f"pledge:{campaign.id}:charge")
    assert op.state is OperationState.PENDING and op.gateway_id is None
    pi = stripe_client(base_url).v1.payment_intents.retrieve(gateway.crashed[0].gateway_id)
    return op, campaign, pi


@pytest.mark.stripe
def test_same_event_three_times_changes_state_once(app, client, failing_gateway, localstripe):
    op, campaign, pi = _pending_charge_at_stripe(failing_gateway, localstripe)
    payload = event("payment_intent.succeeded", pi.to_dict(), "evt_three_times")

    answers = [post(client, payload, sign(payload)) for _ in range(3)]

    assert [a.status_code for a in answers] == [200, 200, 200]
    assert [a.json["duplicate"] for a in answers] == [False, True, True]
    assert answers[0].json["outcome"] == f"charge {op.id}: pending -> succeeded"
    db.session.rollback()
    op = db.session.get(PaymentOperation, op.id)
    assert op.state is OperationState.SUCCEEDED and op.gateway_id == pi.id
    assert stored_events() == 1
    assert ledger_count("charge") == 1
    assert balance(ledger.escrow_account(campaign)) == 6_000


@pytest.mark.stripe
def test_events_out_of_order_follow_the_current_state_at_stripe(app, client, failing_gateway, localstripe):
    op, campaign, pi = _pending_charge_at_stripe(failing_gateway, localstripe)
    stale = pi.to_dict() | {"status": "requires_payment_method"}
    late_failure = event("payment_intent.payment_failed", stale, "evt_stale_failure")
    success = event("payment_intent.succeeded", pi.to_dict(), "evt_success")

    first = post(client, late_failure, sign(late_failure))
    second = post(client, success, sign(success))

    assert first.status_code == second.status_code == 200
    assert first.json["outcome"] == f"charge {op.id}: pending -> succeeded"  # Stripe says succeeded
    assert second.json["outcome"] == f"charge {op.id}: succeeded -> succeeded"
    db.session.rollback()
    assert db.session.get(PaymentOperation, op.id).state is OperationState.SUCCEEDED
    assert ledger_count("charge") == 1
    assert stored_events() == 2


@pytest.mark.stripe
def test_refund_event_completes_a_refund_we_did_not_record(app, client, failing_gateway, localstripe):
    op, campaign, pi = _pending_charge_at_stripe(failing_gateway, localstripe)
    payload = event("payment_intent.succeeded", pi.to_dict(), "evt_pi")
    post(client, payload, sign(payload))
    db.session.rollback()
    op = db.session.get(PaymentOperation, op.id)

    failing_gateway.crash_after(OperationKind.REFUND)
    with pytest.raises(ProcessDied):
        service.refund(operation=op, amount=Money(2_000, "CNY"), idempotency_key="refund:evt", reason="x")
    db.session.rollback()
    refund_obj = stripe_client(localstripe).v1.refunds.retrieve(failing_gateway.crashed[-1].gateway_id)

    payload = event("refund.updated", refund_obj.to_dict(), "evt_refund")
    response = post(client, payload, sign(payload))

    assert response.status_code == 200 and "pending -> succeeded" in response.json["outcome"]
    db.session.rollback()
    assert db.session.get(PaymentOperation, op.id).refunded_amount == 2_000
    assert balance(ledger.escrow_account(campaign)) == 4_000
    assert ledger_count("refund") == 1


@pytest.mark.stripe
def test_event_for_an_object_we_do_not_know_is_acknowledged(app, client, localstripe):
    payload = event(
        "payment_intent.succeeded", {"id": "pi_unknown", "object": "payment_intent", "metadata": {}}
    )
    response = post(client, payload, sign(payload))
    assert response.status_code == 200 and response.json["outcome"] == "no matching operation"
    assert stored_events() == 1
