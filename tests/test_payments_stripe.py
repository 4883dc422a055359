"""The Stripe gateway: the real `stripe` library against localstripe (started by the suite).

Connect (accounts, account links, transfers) and idempotency replay, which localstripe
lacks, go through `ConnectAndIdempotencyDouble` from tests/stripe_helpers.py.
"""

from __future__ import annotations

import pytest
import stripe
from sqlalchemy import func, select

from crowdfund.errors import ValidationError
from crowdfund.extensions import db
from crowdfund.ledger import service as ledger
from crowdfund.ledger.models import LedgerTransaction
from crowdfund.money import Money
from crowdfund.payments import service
from crowdfund.payments.gateway import KEY_METADATA
from crowdfund.payments.models import (
    ChargeOutcome,
    GatewayCustomer,
    MethodStatus,
    OperationState,
    PaymentMethod,
)
from crowdfund.payments.stripe_gateway import StripeGateway, metadata_of
from tests.factories import login, make_campaign, make_org, make_user
from tests.factories.gateway import ProcessDied
from tests.factories.ledger import balance, release
from tests.factories.payments import charge
from tests.stripe_helpers import (
    ConnectAndIdempotencyDouble,
    card_saved_in_browser,
    configure_stripe,
    event,
    sign,
    stripe_client,
)

#: The `localstripe` session fixture.
pytest_plugins = ["tests.stripe_fixtures"]
pytestmark = pytest.mark.stripe

VISA = "4242424242424242"


@pytest.fixture
def app_config(app_config, localstripe):
    configure_stripe(app_config, localstripe)
    return app_config


def save_card(user, base_url: str, number: str = VISA):
    setup = service.begin_add_payment_method(user)
    intent = card_saved_in_browser(base_url, setup.client_secret, number)
    return service.save_payment_method(user, {"setup_intent": intent})


def intents_with_key(base_url: str, key: str) -> list:
    page = stripe_client(base_url).v1.payment_intents.list(params={"limit": 100})
    return [pi for pi in page.auto_paging_iter() if metadata_of(pi).get(KEY_METADATA) == key]


def ledger_count(kind: str) -> int:
    return db.session.scalar(
        select(func.count()).select_from(LedgerTransaction).where(LedgerTransaction.kind == kind)
    )


def test_one_stripe_customer_per_user(app, localstripe):
    alice, bob = make_user(), make_user()
    service.begin_add_payment_method(alice)
    service.begin_add_payment_method(alice)
    service.begin_add_payment_method(bob)
    rows = db.session.scalars(select(GatewayCustomer).order_by(GatewayCustomer.user_id)).all()
    assert [r.user_id for r in rows] == [alice.id, bob.id]
    assert all(r.gateway == "stripe" and r.customer_id.startswith("cus_") for r in rows)
    customer = stripe_client(localstripe).v1.customers.retrieve(rows[0].customer_id)
    assert customer.email == alice.email and customer.metadata["user_id"] == str(alice.id)


def test_card_saved_with_a_setup_intent(app, localstripe):
    user = make_user()
    setup = service.begin_add_payment_method(user)
    assert setup.reference.startswith("seti_") and "_secret_" in setup.client_secret
    assert setup.publishable_key == "pk_test_healthfund"

    method = save_card(user, localstripe)

    assert method.gateway == "stripe" and method.gateway_id.startswith("pm_")
    assert (method.brand, method.last4, method.exp_month, method.exp_year) == ("visa", "4242", 12, 2030)
    assert method.status is MethodStatus.USABLE
    assert service.default_payment_method(user).id == method.id


def test_card_declined_when_saved(app, localstripe):
    user = make_user()
    with pytest.raises(ValidationError) as info:
        save_card(user, localstripe, "4000000000000002")
    assert info.value.code == "card_declined"
    assert db.session.scalar(select(func.count()).select_from(PaymentMethod)) == 0


def test_someone_elses_setup_intent_is_refused(app, localstripe):
    alice, mallory = make_user(), make_user()
    setup = service.begin_add_payment_method(alice)
    intent = card_saved_in_browser(localstripe, setup.client_secret, VISA)
    with pytest.raises(ValidationError):
        service.save_payment_method(mallory, {"setup_intent": intent})
    with pytest.raises(ValidationError):
        service.save_payment_method(mallory, {"setup_intent": "not-an-id"})


def test_off_session_charge_with_our_key_and_metadata(app, localstripe):
    user, campaign = make_user(), make_campaign()
    save_card(user, localstripe)

    op = charge(user, campaign, 25_000, idempotency_key="pledge:41:charge", metadata={"pledge_id": "41"})

    assert op.state is OperationState.SUCCEEDED and op.result is ChargeOutcome.SUCCEEDED
    assert op.gateway_id.startswith("pi_")
    pi = stripe_client(localstripe).v1.payment_intents.retrieve(op.gateway_id)
    assert pi.status == "succeeded" and pi.amount == 25_000 and pi.currency == "cny"
    assert pi.metadata["pledge_id"] == "41"
    assert pi.metadata["campaign_id"] == str(campaign.id)
    assert pi.metadata[KEY_METADATA] == "pledge:41:charge"
    assert balance(ledger.escrow_account(campaign)) == 25_000

    again = charge(user, campaign, 25_000, idempotency_key="pledge:41:charge")
    assert again.id == op.id
    assert len(intents_with_key(localstripe, "pledge:41:charge")) == 1
    assert ledger_count("charge") == 1


def test_declined_charge(app, localstripe):
    user, campaign = make_user(), make_campaign()
    save_card(user, localstripe, "4000000000000341")  # saved fine, declined when charged

    op = charge(user, campaign, 5_000)

    assert op.state is OperationState.FAILED and op.result is ChargeOutcome.DECLINED
    assert op.failure_code == "card_declined"
    assert "another card" in op.failure_message
    assert ledger_count("charge") == 0


def test_card_needing_authentication(app, localstripe):
    user, campaign = make_user(), make_campaign()
    method = save_card(user, localstripe, "4000002760003184")
    assert method.status is MethodStatus.REQUIRES_AUTHENTICATION
    op = charge(user, campaign, 5_000, method=method)
    assert op.state is OperationState.REQUIRES_ACTION and op.result is ChargeOutcome.NEEDS_AUTHENTICATION
    assert ledger_count("charge") == 0


def test_partial_refund(app, localstripe):
    user, campaign = make_user(), make_campaign()
    save_card(user, localstripe)
    op = charge(user, campaign, 10_000)

    refund = service.refund(
        operation=op, amount=Money(4_000, "CNY"), idempotency_key="refund:41", reason="Tier changed"
    )

    assert refund.state is OperationState.SUCCEEDED and refund.gateway_id.startswith("re_")
    stripe_refund = stripe_client(localstripe).v1.refunds.retrieve(refund.gateway_id)
    assert stripe_refund.amount == 4_000 and stripe_refund.metadata[KEY_METADATA] == "refund:41"
    assert balance(ledger.escrow_account(campaign)) == 6_000
    db.session.refresh(op)
    assert op.refunded_amount == 4_000


def test_crash_after_stripe_charged_then_rerun_charges_once(app, localstripe, failing_gateway):
    """localstripe ignores idempotency keys: only our lookup by metadata prevents a second charge."""
    user, campaign = make_user(), make_campaign()
    save_card(user, localstripe)
    failing_gateway.crash_after_charge()
    with pytest.raises(ProcessDied):
        charge(user, campaign, 3_300, idempotency_key="pledge:42:charge")
    db.session.rollback()
    assert service.find_operation("pledge:42:charge").state is OperationState.PENDING

    op = charge(user, campaign, 3_300, idempotency_key="pledge:42:charge")

    assert op.state is OperationState.SUCCEEDED and op.gateway_id == failing_gateway.crashed[0].gateway_id
    assert len(intents_with_key(localstripe, "pledge:42:charge")) == 1
    assert ledger_count("charge") == 1


def test_add_card_page_in_stripe_mode_loads_stripe_js_and_takes_the_setup_intent(app, client, localstripe):
    user = make_user()
    login(client, user)
    page = client.get("/account/payment-methods/new")
    html = page.get_data(as_text=True)
    assert page.status_code == 200
    assert f'<script src="{localstripe}/js.stripe.com/v3/"></script>' in html
    assert 'data-client-secret="seti_' in html and "SANDBOX" not in html

    secret = html.split('data-client-secret="')[1].split('"')[0]
    intent = card_saved_in_browser(localstripe, secret, VISA)
    response = client.post("/account/payment-methods/new?next=/account", data={"setup_intent": intent})
    assert response.status_code == 302 and response.headers["Location"].endswith("/account")
    assert service.default_payment_method(user).last4 == "4242"


# --- Connect, through the test double --------------------------------------------------------------
@pytest.fixture
def connect_double(app, localstripe):
    double = ConnectAndIdempotencyDouble(stripe_client(localstripe))
    app.extensions["payments.gateway"] = StripeGateway(
        secret_key="sk_test_healthfund", publishable_key="pk_test_healthfund", client=double
    )
    yield double
    app.extensions.pop("payments.gateway", None)


def test_connect_onboarding_and_payout_by_transfer(app, localstripe, connect_double):
    user, campaign = make_user(), make_campaign()
    save_card(user, localstripe)
    charge(user, campaign, 20_000)
    org = campaign.organisation

    link = service.start_payout_onboarding(org, return_url="http://x/return", refresh_url="http://x/refresh")
    account = service.payout_account(org.id)
    assert account.account_id.startswith("acct_double_") and link.endswith(account.account_id)
    assert service.payout_destination(org.id) is None  # not enabled until Stripe says so
    connect_double.accounts_store[account.account_id].payouts_enabled = True
    service.refresh_payout_account(org.id)
    destination = service.payout_destination(org.id)
    assert destination == account.account_id

    release(campaign, 15_000)
    op = service.payout(
        organisation_id=org.id,
        amount=Money(15_000, "CNY"),
        idempotency_key="payout:41",
        destination=destination,
        campaign_id=campaign.id,
    )

    assert op.state is OperationState.SUCCEEDED and op.gateway_id.startswith("tr_double_")
    transfer = connect_double.transfers_store[op.gateway_id]
    assert (transfer.amount, transfer.currency, transfer.destination) == (15_000, "cny", destination)
    assert transfer.metadata[KEY_METADATA] == "payout:41"
    sent = [params for name, params, key in connect_double.calls if name == "transfers.create"]
    assert sent[-1]["transfer_group"] == f"campaign-{campaign.id}"
    assert balance(ledger.org_payable_account(org.id, "CNY")) == 0
    assert ledger_count("payout") == 1


def test_payout_retry_after_a_timeout_relies_on_lookup_and_idempotency_replay(
    app, localstripe, connect_double
):
    campaign = make_campaign()
    user = make_user()
    save_card(user, localstripe)
    charge(user, campaign, 9_000)
    release(campaign, 9_000)
    destination = "acct_double_manual"
    # The transfer goes through at Stripe but our side sees a timeout.
    connect_double.fail_next_transfer_with = None
    real_create = connect_double.v1.transfers.create

    def timed_out_after_creating(params, options=None):
        real_create(params, options)
        raise stripe.APIConnectionError("read timed out")

    connect_double.v1.transfers.create = timed_out_after_creating
    op = service.payout(
        organisation_id=campaign.organisation_id,
        amount=Money(9_000, "CNY"),
        idempotency_key="payout:42",
        destination=destination,
    )
    assert op.state is OperationState.PENDING and op.result is ChargeOutcome.TEMPORARY
    assert ledger_count("payout") == 0
    connect_double.v1.transfers.create = real_create

    op = service.payout(
        organisation_id=campaign.organisation_id,
        amount=Money(9_000, "CNY"),
        idempotency_key="payout:42",
        destination=destination,
    )

    assert op.state is OperationState.SUCCEEDED
    assert len(connect_double.transfers_store) == 1
    assert ledger_count("payout") == 1


def test_double_replays_the_first_response_for_a_repeated_key(app, localstripe, connect_double):
    gateway = service.get_gateway()
    args = dict(destination="acct_x", amount=Money(100, "CNY"), description="", metadata={"a": "1"})
    first = gateway.payout(idempotency_key="k", **args)
    second = gateway.payout(idempotency_key="k", **args)
    assert first.gateway_id == second.gateway_id and len(connect_double.transfers_store) == 1
    reused = gateway.payout(idempotency_key="k", **(args | {"amount": Money(200, "CNY")}))
    assert reused.outcome is ChargeOutcome.PERMANENT and len(connect_double.transfers_store) == 1


def test_payouts_page_sends_the_campaigner_to_stripe_onboarding(app, client, connect_double):
    owner = make_user()
    org = make_org(owner)
    login(client, owner)
    page = client.get(f"/organisations/{org.id}/payouts")
    assert page.status_code == 200 and "Start Stripe setup" in page.get_data(as_text=True)

    response = client.post(f"/organisations/{org.id}/payouts")

    account = service.payout_account(org.id)
    assert response.status_code == 302
    assert response.headers["Location"] == f"https://connect.stripe.test/setup/{account.account_id}"
    link_call = next(params for name, params, _ in connect_double.calls if name == "account_links.create")
    assert link_call["type"] == "account_onboarding"
    assert link_call["return_url"].endswith(f"/organisations/{org.id}/payouts/return")

    connect_double.accounts_store[account.account_id].payouts_enabled = True
    back = client.get(f"/organisations/{org.id}/payouts/return")
    assert back.status_code == 302
    assert service.payout_destination(org.id) == account.account_id


def test_account_updated_webhook_enables_payouts(app, client, connect_double):
    org = make_org()
    service.start_payout_onboarding(org, return_url="http://x/r", refresh_url="http://x/f")
    account = service.payout_account(org.id)
    connect_double.accounts_store[account.account_id].payouts_enabled = True
    payload = event("account.updated", {"id": account.account_id, "object": "account"}, "evt_account")

    response = client.post("/webhooks/stripe", data=payload, headers={"Stripe-Signature": sign(payload)})

    assert response.status_code == 200
    assert service.payout_destination(org.id) == account.account_id
