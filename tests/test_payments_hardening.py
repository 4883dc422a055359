"""Payments hardening: webhook timestamps and error bodies, the gateway's open set of codes,
gateway clean-up after the commit."""

from __future__ import annotations

import json
import logging
import time

import pytest
from sqlalchemy import func, select

from crowdfund.errors import DomainError, ErrorCode, ValidationError
from crowdfund.extensions import db
from crowdfund.payments import service
from crowdfund.payments.gateway import CardError
from crowdfund.payments.models import (
    ChargeOutcome,
    MethodStatus,
    OperationKind,
    OperationState,
    PaymentMethod,
    WebhookEvent,
    error_code_for,
)
from crowdfund.payments.sandbox import SandboxGateway
from tests.factories import NEEDS_AUTHENTICATION, VISA, add_card, charge, make_campaign, make_user
from tests.stripe_helpers import WEBHOOK_SECRET, event, sign

URL = "/webhooks/stripe"
GENERIC = {"error": {"code": "invalid_signature", "message": ErrorCode.INVALID_SIGNATURE.text}}


@pytest.fixture
def app_config(app_config):
    app_config.STRIPE_WEBHOOK_SECRET = WEBHOOK_SECRET
    return app_config


def post(client, payload: str, signature: str | None):
    headers = {"Content-Type": "application/json"}
    if signature is not None:
        headers["Stripe-Signature"] = signature
    return client.post(URL, data=payload, headers=headers)


def stored_events() -> int:
    return db.session.scalar(select(func.count()).select_from(WebhookEvent))


# --- webhook signatures --------------------------------------------------------------------------
def test_a_signature_dated_in_the_future_is_refused_beyond_the_clock_skew(app, client):
    skew = app.config["STRIPE_WEBHOOK_CLOCK_SKEW"]
    assert 0 < skew <= 120
    payload = event("customer.created", {"id": "cus_1"}, "evt_future")

    response = post(client, payload, sign(payload, timestamp=int(time.time()) + skew + 30))

    assert response.status_code == 400 and response.json == GENERIC
    assert stored_events() == 0
    slightly_ahead = sign(payload, timestamp=int(time.time()) + skew - 20)
    assert post(client, payload, slightly_ahead).status_code == 200
    assert stored_events() == 1


def test_a_signature_a_day_ahead_is_refused_whatever_the_tolerance(app, client):
    app.config["STRIPE_WEBHOOK_TOLERANCE"] = 10**9
    payload = event("customer.created", {"id": "cus_1"}, "evt_tomorrow")
    response = post(client, payload, sign(payload, timestamp=int(time.time()) + 86_400))
    assert response.status_code == 400 and stored_events() == 0


@pytest.mark.parametrize(
    ("case", "logged"),
    [
        ("no secret", "STRIPE_WEBHOOK_SECRET is not set"),
        ("no header", "Stripe webhook refused"),
        ("garbage", "Stripe webhook refused"),
        ("other secret", "No signatures found"),
        ("not an event", "not a Stripe event"),
        ("not json", "Stripe webhook refused"),
        ("future", "in the future"),
    ],
)
def test_refusals_answer_the_same_generic_body_and_log_the_reason(app, client, caplog, case, logged):
    payload = event("customer.created", {"id": "cus_1"}, "evt_refused")
    signature = sign(payload)
    if case == "no secret":
        app.config["STRIPE_WEBHOOK_SECRET"] = None
    elif case == "no header":
        signature = None
    elif case == "garbage":
        signature = "t=abc,v1=zzz"
    elif case == "other secret":
        signature = sign(payload, secret="whsec_attacker")
    elif case == "not an event":
        payload = json.dumps([1, 2])
        signature = sign(payload)
    elif case == "not json":
        payload = "{not json"
        signature = sign(payload)
    elif case == "future":
        signature = sign(payload, timestamp=int(time.time()) + 3_600)

    with caplog.at_level(logging.WARNING):
        response = post(client, payload, signature)

    assert response.status_code == 400
    assert response.json == GENERIC
    body = response.get_data(as_text=True)
    for leak in ("STRIPE_WEBHOOK_SECRET", "No signatures found", "Expecting", "timestamp", "header"):
        assert leak not in body
    assert logged in caplog.text
    assert stored_events() == 0


# --- the gateway's codes -------------------------------------------------------------------------
def test_gateway_codes_map_to_ours_and_unknown_declines_are_card_declined():
    assert error_code_for("insufficient_funds") is ErrorCode.INSUFFICIENT_FUNDS
    assert error_code_for("authentication_required") is ErrorCode.REQUIRES_ACTION
    assert error_code_for("incorrect_number") is ErrorCode.INVALID_NUMBER
    assert error_code_for("do_not_honor") is ErrorCode.CARD_DECLINED
    assert error_code_for("internal_error") is ErrorCode.CARD_DECLINED  # ours, but not a payment code
    assert error_code_for(None) is ErrorCode.CARD_DECLINED


def test_a_decline_code_we_do_not_know_is_kept_for_operators_and_shown_as_a_decline(app, failing_gateway):
    user, campaign = make_user(), make_campaign()
    add_card(user)
    failing_gateway.fail_next(
        OperationKind.CHARGE,
        ChargeOutcome.DECLINED,
        failure_code="do_not_honor",
        failure_message="Do not honor (the issuer's words)",
    )

    op = charge(user, campaign, 5_000)

    assert op.state is OperationState.FAILED
    assert op.failure_code == "do_not_honor"  # the gateway's code, for operators
    assert op.gateway_message == "Do not honor (the issuer's words)"
    assert op.error_code is ErrorCode.CARD_DECLINED
    assert op.failure_message == ErrorCode.CARD_DECLINED.text  # rendered from the code


def test_a_temporary_failure_reads_as_the_service_being_busy(app, failing_gateway):
    user, campaign = make_user(), make_campaign()
    add_card(user)
    failing_gateway.fail_next(OperationKind.CHARGE, ChargeOutcome.TEMPORARY, failure_code="processing_error")
    op = charge(user, campaign, 5_000)
    assert op.state is OperationState.PENDING
    assert op.error_code is ErrorCode.GATEWAY_UNAVAILABLE
    assert op.failure_message == ErrorCode.GATEWAY_UNAVAILABLE.text


def test_a_card_needing_authentication_reads_as_requires_action(app):
    user, campaign = make_user(), make_campaign()
    method = add_card(user, NEEDS_AUTHENTICATION)
    op = charge(user, campaign, 5_000, method=method)
    assert op.state is OperationState.REQUIRES_ACTION
    assert op.error_code is ErrorCode.REQUIRES_ACTION


class RefusingGateway(SandboxGateway):
    """Refuses every card with a decline code of Stripe's open set that we have no code for."""

    def confirm_setup(self, *, customer_id: str, data: dict[str, str]):
        raise CardError("Your bank declined the card.", "do_not_honor")


def test_a_card_refused_with_an_unknown_code_is_a_decline_not_an_error(app):
    app.extensions["payments.gateway"] = RefusingGateway()
    try:
        with pytest.raises(ValidationError) as info:
            add_card(make_user(), VISA)
    finally:
        app.extensions.pop("payments.gateway")
    assert info.value.code is ErrorCode.CARD_DECLINED and info.value.status == 402
    assert info.value.params == {"gateway_code": "do_not_honor"}
    assert db.session.scalar(select(func.count()).select_from(PaymentMethod)) == 0


def test_an_unknown_gateway_name_is_a_configuration_error(app):
    app.config["PAYMENT_GATEWAY"] = "paypal"
    with pytest.raises(DomainError) as info:
        service.get_gateway()
    assert info.value.code is ErrorCode.GATEWAY_CONFIGURATION


# --- clean-up after the commit -------------------------------------------------------------------
class WatchingGateway(SandboxGateway):
    """Records what another connection sees of the card when the gateway is asked to detach it."""

    def __init__(self):
        self.seen: list[str] = []

    def detach(self, *, customer_id: str, gateway_id: str) -> None:
        with db.engine.connect() as conn:
            status = conn.execute(
                select(PaymentMethod.status).where(PaymentMethod.gateway_id == gateway_id)
            ).scalar_one()
        self.seen.append(status)
        super().detach(customer_id=customer_id, gateway_id=gateway_id)


def test_a_removed_card_is_detached_at_the_gateway_only_once_the_removal_is_committed(app):
    gateway = WatchingGateway()
    app.extensions["payments.gateway"] = gateway
    try:
        user = make_user()
        method = add_card(user)
        service.remove_payment_method(user, method.id)
    finally:
        app.extensions.pop("payments.gateway")
    assert gateway.seen == [MethodStatus.REMOVED]
