"""Donations after a crash, refunds of pledges, the patient-aid cap, replays with another body.

The crash tests call the donation's steps one by one, or let a gateway "die" right after
it charged (`failing_gateway.crash_after_charge()`), and check that a replay, the
engine's job and `flask payments reconcile` finish the story.
"""

from __future__ import annotations

import threading
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import pytest
from sqlalchemy import select
from sqlalchemy.exc import OperationalError

from crowdfund.accounts.models import User
from crowdfund.campaigns.models import Campaign, CampaignKind, CampaignState, HealthCategory
from crowdfund.engine import donations, service
from crowdfund.engine.donations import (
    charge_key,
    finish_pending_donations,
    pledge_disagreements,
    record_donation_outcome,
    record_missing_refunds,
    refund_pledge,
)
from crowdfund.engine.limits import invested_within_window
from crowdfund.engine.models import Pledge, PledgeState
from crowdfund.engine.service import PaymentDeclined, PledgeRequest, place_pledge, preview_pledge
from crowdfund.errors import Conflict, DomainError, Forbidden
from crowdfund.extensions import db
from crowdfund.ledger.service import account_balance, escrow_account
from crowdfund.models_base import utcnow
from crowdfund.money import Money
from crowdfund.payments import service as payments
from crowdfund.payments.models import OperationKind, OperationState, PaymentOperation
from tests.factories import make_campaign, make_user, operator
from tests.factories.engine import cny, make_backer, make_investor
from tests.factories.gateway import EXTENSION as GATEWAY_EXTENSION
from tests.factories.gateway import FailingGateway, ProcessDied
from tests.factories.payments import add_card

API = "/api/v1"


@pytest.fixture
def app_config(app_config):
    class Config(app_config):
        # Enough connections for the threads of the PostgreSQL tests (each thread, and the
        # sandbox gateway's own session, hold one).
        SQLALCHEMY_ENGINE_OPTIONS = {"pool_size": 40, "max_overflow": 40, "pool_timeout": 60}

    return Config


def fresh(obj):
    db.session.expire_all()
    return db.session.get(type(obj), obj.id)


def raised_equals_escrow(campaign: Campaign) -> bool:
    campaign = fresh(campaign)
    return Money(campaign.raised_amount, campaign.currency) == account_balance(escrow_account(campaign))


def pending_after_step_one(donor: User, campaign: Campaign, amount: int, token: str | None = None) -> Pledge:
    req = PledgeRequest(amount=cny(amount), idempotency_token=token)
    return service.record_pledge(
        donor, campaign.id, req, token, service.request_digest(campaign.id, req), utcnow()
    )


# --- item 3: after a crash, charged donations do not stay pending -----------------------------


def test_a_charge_made_before_the_process_died_is_finished_at_once_by_the_job(app):
    campaign = make_campaign(CampaignKind.DONATION)
    donor = make_backer()
    pledge = pending_after_step_one(donor, campaign, 30)
    donations.charge_donation(pledge.id)  # step 2 ran; the process died before step 3
    operation = payments.find_operation(charge_key(pledge.id))
    assert operation.state is OperationState.SUCCEEDED
    assert fresh(pledge).state is PledgeState.PENDING and fresh(campaign).raised_amount == 0

    found = pledge_disagreements()
    assert [(d.kind, d.pledge_id) for d in found] == [("charged_but_not_recorded", pledge.id)]

    # No five-minute wait: the operation is final, so the job finishes the pledge now.
    assert service.reconcile_pending_donations(now=utcnow()) == 1
    pledge = fresh(pledge)
    assert pledge.state is PledgeState.CHARGED and pledge.payment_operation_id == operation.id
    assert (fresh(campaign).raised_amount, fresh(campaign).backer_count) == (3_000, 1)
    assert raised_equals_escrow(campaign)
    assert pledge_disagreements() == []
    assert service.reconcile_pending_donations(now=utcnow()) == 0


def test_a_declined_charge_found_final_fails_the_pledge_at_once(app):
    campaign = make_campaign(CampaignKind.DONATION)
    donor = make_user()
    add_card(donor, "4000000000000341")  # declined when charged
    pledge = pending_after_step_one(donor, campaign, 30)
    donations.charge_donation(pledge.id)
    assert finish_pending_donations(now=utcnow()) == 1
    pledge = fresh(pledge)
    assert (pledge.state, pledge.failure_code) == (PledgeState.FAILED, "card_declined")
    assert "declined" in pledge.failure_message
    assert fresh(campaign).raised_amount == 0


def test_a_replay_of_a_crashed_donation_finishes_it_without_charging_twice(app, failing_gateway):
    campaign = make_campaign(CampaignKind.DONATION)
    donor = make_backer()
    req = PledgeRequest(amount=cny(25), idempotency_token="form-1")
    failing_gateway.crash_after_charge()
    with pytest.raises(ProcessDied):
        place_pledge(donor, campaign.id, req)
    db.session.rollback()
    pledge = db.session.scalars(select(Pledge)).one()
    assert pledge.state is PledgeState.PENDING

    again = place_pledge(donor, campaign.id, req)
    assert again.id == pledge.id and again.state is PledgeState.CHARGED
    charges = [key for kind, key in failing_gateway.calls if kind.value == "charge"]
    assert charges == [charge_key(pledge.id)]  # looked up, never charged again
    assert fresh(campaign).raised_amount == 2_500 and raised_equals_escrow(campaign)


def test_a_replay_of_a_donation_stopped_before_the_charge_charges_it_once(app):
    campaign = make_campaign(CampaignKind.DONATION)
    donor = make_backer()
    pledge = pending_after_step_one(donor, campaign, 40, token="form-2")
    again = place_pledge(donor, campaign.id, PledgeRequest(amount=cny(40), idempotency_token="form-2"))
    assert again.id == pledge.id and again.state is PledgeState.CHARGED
    assert raised_equals_escrow(campaign) and fresh(campaign).raised_amount == 4_000


def test_api_replay_of_a_pending_donation_answers_with_the_final_state(app, client, failing_gateway):
    from tests.factories.api import bearer, make_token

    campaign = make_campaign(CampaignKind.DONATION)
    donor = make_backer()
    headers = bearer(make_token(donor), **{"Idempotency-Key": "gift-7"})
    body = {"campaign": campaign.id, "amount": {"amount": 5_000, "currency": "CNY"}}
    failing_gateway.crash_after_charge()
    assert client.post(f"{API}/pledges", json=body, headers=headers).status_code == 500  # it "died"
    db.session.rollback()
    replay = client.post(f"{API}/pledges", json=body, headers=headers)
    assert replay.status_code == 201, replay.json
    assert replay.json["state"] == "charged"
    assert raised_equals_escrow(campaign)


def test_reconcile_reports_a_pledge_charged_without_a_succeeded_payment(app):
    campaign = make_campaign(CampaignKind.DONATION)
    donor = make_user()
    add_card(donor, "4000000000000341")
    with pytest.raises(PaymentDeclined):
        place_pledge(donor, campaign.id, PledgeRequest(amount=cny(10)))
    pledge = db.session.scalars(select(Pledge)).one()
    pledge.state = PledgeState.CHARGED  # what a bug (or a hand edit) could leave behind
    db.session.commit()
    found = pledge_disagreements()
    assert [(d.kind, d.pledge_id) for d in found] == [("charged_without_payment", pledge.id)]
    assert "failed" in str(found[0])


def test_flask_payments_reconcile_finishes_pledges_and_reports_what_disagrees(app):
    campaign = make_campaign(CampaignKind.DONATION)
    donor = make_backer()
    pledge = pending_after_step_one(donor, campaign, 30)
    donations.charge_donation(pledge.id)
    result = app.test_cli_runner().invoke(args=["payments", "reconcile"])
    assert fresh(pledge).state is PledgeState.CHARGED
    assert "Everything matches" in result.output, result.output

    other = pending_after_step_one(donor, campaign, 20)
    donations.charge_donation(other.id)
    db.session.execute(
        Pledge.__table__.update().where(Pledge.id == other.id).values(state=PledgeState.FAILED.value)
    )  # the pledge was (wrongly) failed although its charge succeeded
    db.session.commit()
    result = app.test_cli_runner().invoke(args=["payments", "reconcile"])
    assert "Everything matches" not in result.output
    assert f"pledge #{other.id}" in result.output


# --- item 4: refunds move the pledge and the totals ------------------------------------------


def test_refunds_lower_the_totals_and_mark_the_pledge(app):
    campaign = make_campaign(CampaignKind.DONATION)
    donor, other = make_backer(), make_backer()
    first = place_pledge(donor, campaign.id, PledgeRequest(amount=cny(100)))
    place_pledge(other, campaign.id, PledgeRequest(amount=cny(50)))
    staff = operator()

    part = refund_pledge(staff, first.id, cny(30), "Asked for part back", "refund-1")
    assert part.operation.state is OperationState.SUCCEEDED
    pledge = fresh(first)
    assert (pledge.state, pledge.refunded_amount, pledge.is_partly_refunded) == (
        PledgeState.CHARGED,
        3_000,
        True,
    )
    assert (fresh(campaign).raised_amount, fresh(campaign).backer_count) == (12_000, 2)
    assert raised_equals_escrow(campaign)

    rest = refund_pledge(staff, first.id, None, "The rest", "refund-2")
    assert rest.operation.amount == cny(70)
    pledge = fresh(first)
    assert (pledge.state, pledge.refunded_amount) == (PledgeState.REFUNDED, 10_000)
    assert (fresh(campaign).raised_amount, fresh(campaign).backer_count) == (5_000, 1)
    assert raised_equals_escrow(campaign)

    # The same key again changes nothing; a refunded pledge cannot be refunded again.
    refund_pledge(staff, first.id, cny(30), "Asked for part back", "refund-1")
    assert fresh(campaign).raised_amount == 5_000
    with pytest.raises(Conflict) as exc:
        refund_pledge(staff, first.id, None, "Again", "refund-3")
    assert exc.value.code == "not_refundable"
    assert pledge_disagreements() == []


def test_only_operators_refund_pledges(app):
    campaign = make_campaign(CampaignKind.DONATION)
    donor = make_backer()
    pledge = place_pledge(donor, campaign.id, PledgeRequest(amount=cny(10)))
    with pytest.raises(Forbidden):
        refund_pledge(donor, pledge.id, None, "Mine", "refund-x")
    assert fresh(pledge).state is PledgeState.CHARGED and fresh(campaign).raised_amount == 1_000


def test_a_refund_made_without_the_engine_is_recorded_by_the_job(app):
    campaign = make_campaign(CampaignKind.DONATION)
    donor = make_backer()
    pledge = place_pledge(donor, campaign.id, PledgeRequest(amount=cny(80)))
    charge = db.session.get(PaymentOperation, pledge.payment_operation_id)
    payments.refund(operation=charge, amount=None, idempotency_key="direct-refund", reason="Webhook")
    assert [d.kind for d in pledge_disagreements()] == ["refund_not_recorded"]
    assert record_missing_refunds() == 1
    pledge = fresh(pledge)
    assert pledge.state is PledgeState.REFUNDED and fresh(campaign).backer_count == 0
    assert raised_equals_escrow(campaign) and fresh(campaign).raised_amount == 0
    assert record_missing_refunds() == 0 and pledge_disagreements() == []


def test_my_pledges_shows_a_partial_refund(app, client):
    from tests.factories import login

    campaign = make_campaign(CampaignKind.DONATION)
    donor = make_backer()
    pledge = place_pledge(donor, campaign.id, PledgeRequest(amount=cny(100)))
    refund_pledge(operator(), pledge.id, cny(25), "Part", "refund-p")
    login(client, donor)
    page = client.get("/my/pledges")
    assert "Partly refunded" in page.text and "25.00" in page.text


# --- item 5: the patient-aid cap ----------------------------------------------------------------


def patient_aid_appeal(raised: int = 0) -> Campaign:
    campaign = make_campaign(CampaignKind.DONATION, goal=50_000_000, category=HealthCategory.PATIENT_AID)
    campaign.donation_terms.is_patient_aid = True
    campaign.donation_terms.patient_name = "Li Wei"
    campaign.raised_amount = raised
    db.session.commit()
    return campaign


def test_an_appeal_takes_no_more_than_the_cap(app):
    campaign = patient_aid_appeal()
    outcomes = []
    for _ in range(3):
        try:
            place_pledge(make_backer(), campaign.id, PledgeRequest(amount=cny(300_000)))
            outcomes.append("ok")
        except DomainError as exc:
            outcomes.append(exc.code)
    assert outcomes == ["ok", "over_campaign_cap", "over_campaign_cap"]
    # What is left still fits, exactly.
    place_pledge(make_backer(), campaign.id, PledgeRequest(amount=cny(200_000)))
    assert fresh(campaign).raised_amount == 50_000_000 and raised_equals_escrow(campaign)
    with pytest.raises(Conflict) as exc:
        preview_pledge(make_backer(), campaign.id, PledgeRequest(amount=cny(1)))
    assert (exc.value.code, exc.value.status) == ("over_campaign_cap", 409)


def test_pending_donations_hold_their_room_under_the_cap(app):
    campaign = patient_aid_appeal(raised=30_000_000)
    pending_after_step_one(make_backer(), campaign, 150_000)
    with pytest.raises(Conflict) as exc:
        place_pledge(make_backer(), campaign.id, PledgeRequest(amount=cny(60_000)))
    assert exc.value.code == "over_campaign_cap"
    place_pledge(make_backer(), campaign.id, PledgeRequest(amount=cny(50_000)))


def test_an_ordinary_donation_campaign_has_no_cap(app):
    campaign = make_campaign(CampaignKind.DONATION, goal=100_000)
    for _ in range(2):
        place_pledge(make_backer(), campaign.id, PledgeRequest(amount=cny(300_000)))
    assert fresh(campaign).raised_amount == 60_000_000


@pytest.mark.postgres
def test_concurrent_donations_never_pass_the_appeal_cap(app):
    campaign = patient_aid_appeal(raised=45_000_000)  # 50,000.00 CNY left
    users = [make_backer().id for _ in range(12)]  # real sandbox cards: donations are charged
    start = threading.Event()

    def donate(user_id: int) -> str:
        start.wait()
        with app.app_context():
            try:
                place_pledge(db.session.get(User, user_id), campaign.id, PledgeRequest(amount=cny(10_000)))
                return "ok"
            except DomainError as exc:
                return exc.code
            finally:
                db.session.remove()

    with ThreadPoolExecutor(max_workers=len(users)) as pool:
        futures = [pool.submit(donate, u) for u in users]
        start.set()
        outcomes = Counter(f.result(timeout=120) for f in futures)
    assert outcomes == {"ok": 5, "over_campaign_cap": 7}
    assert fresh(campaign).raised_amount == 50_000_000
    assert account_balance(escrow_account(fresh(campaign))) == cny(50_000)


# --- item 6: the investor's limit counts only money invested or still committed ----------------


def test_released_failed_refunded_and_cancelled_commitments_do_not_use_the_limit(app):
    investor = make_investor(income=0, net_worth=0, currency="CNY")  # limit: 2,500 USD in CNY
    campaigns = [make_campaign(CampaignKind.EQUITY) for _ in range(3)]
    for campaign in campaigns:
        place_pledge(investor, campaign.id, PledgeRequest(amount=cny(5_000), risk_acknowledged=True))
    now = utcnow()
    assert invested_within_window(investor.id, "CNY", now) == cny(15_000)

    failed = fresh(campaigns[0])
    failed.state = CampaignState.FAILED  # closed without reaching its target: nobody pays
    db.session.commit()
    assert invested_within_window(investor.id, "CNY", now) == cny(10_000)

    pledges = {p.campaign_id: p for p in db.session.scalars(select(Pledge))}
    charged = pledges[campaigns[1].id]
    charged.state, charged.refunded_amount = PledgeState.CHARGED, 200_000  # charged, 2,000.00 refunded
    released = pledges[campaigns[2].id]
    released.state = PledgeState.RELEASED
    db.session.commit()
    assert invested_within_window(investor.id, "CNY", now) == cny(3_000)
    for state in (PledgeState.REFUNDED, PledgeState.FAILED, PledgeState.CANCELLED):
        charged.state = state
        db.session.commit()
        assert invested_within_window(investor.id, "CNY", now) == cny(0), state
    # The room given back can be used again.
    place_pledge(
        investor,
        make_campaign(CampaignKind.EQUITY).id,
        PledgeRequest(amount=cny(15_000), risk_acknowledged=True),
    )


# --- item 7: the same token with another request ------------------------------------------------


def test_the_same_token_with_another_request_is_a_conflict(app):
    campaign = make_campaign(tiers=[{"title": "Kit", "price_amount": 1_000, "quantity_limit": None}])
    backer = make_backer()
    tier_id = campaign.tiers[0].id
    first = place_pledge(backer, campaign.id, PledgeRequest(tier_id=tier_id, idempotency_token="t-1"))
    assert (
        place_pledge(backer, campaign.id, PledgeRequest(tier_id=tier_id, idempotency_token="t-1")).id
        == first.id
    )
    for other in (
        PledgeRequest(tier_id=tier_id, quantity=2, idempotency_token="t-1"),
        PledgeRequest(amount=cny(10), idempotency_token="t-1"),
        PledgeRequest(tier_id=tier_id, extra=cny(5), idempotency_token="t-1"),
    ):
        with pytest.raises(Conflict) as exc:
            place_pledge(backer, campaign.id, other)
        assert (exc.value.code, exc.value.status) == ("idempotency_conflict", 409)
    assert fresh(campaign).raised_amount == 1_000 and len(db.session.scalars(select(Pledge)).all()) == 1


def test_api_same_key_with_another_body_is_409(app, client):
    from tests.factories.api import bearer, make_token

    campaign = make_campaign(CampaignKind.DONATION)
    headers = bearer(make_token(make_backer()), **{"Idempotency-Key": "gift-9"})
    body = {"campaign": campaign.id, "amount": {"amount": 5_000, "currency": "CNY"}}
    assert client.post(f"{API}/pledges", json=body, headers=headers).status_code == 201
    other = {**body, "amount": {"amount": 9_000, "currency": "CNY"}}
    r = client.post(f"{API}/pledges", json=other, headers=headers)
    assert (r.status_code, r.json["error"]["code"]) == (409, "idempotency_conflict")
    assert fresh(campaign).raised_amount == 5_000


# --- item 10: failures are stored as codes --------------------------------------------------------


def test_a_declined_donation_keeps_a_code_and_shows_its_sentence(app, client):
    from tests.factories.api import bearer, make_token

    campaign = make_campaign(CampaignKind.DONATION)
    donor = make_user()
    add_card(donor, "4000000000000341")
    with pytest.raises(PaymentDeclined) as exc:
        place_pledge(donor, campaign.id, PledgeRequest(amount=cny(10), idempotency_token="gift"))
    pledge = db.session.scalars(select(Pledge)).one()
    assert (pledge.failure_code, exc.value.status) == ("card_declined", 402)
    assert pledge.failure_message == exc.value.message == "Your card was declined; try another card."
    # A replay answers the same way, and the API shows the sentence rendered from the code.
    with pytest.raises(PaymentDeclined):
        place_pledge(donor, campaign.id, PledgeRequest(amount=cny(10), idempotency_token="gift"))
    listed = client.get(f"{API}/pledges", headers=bearer(make_token(donor))).json["pledges"]
    assert listed[0]["failure_message"] == "Your card was declined; try another card."


def test_outcome_step_leaves_a_pledge_pending_while_its_charge_is(app, failing_gateway):
    from crowdfund.payments.models import ChargeOutcome

    campaign = make_campaign(CampaignKind.DONATION)
    donor = make_backer()
    failing_gateway.fail_next(OperationKind.CHARGE, ChargeOutcome.TEMPORARY)
    pledge = place_pledge(donor, campaign.id, PledgeRequest(amount=cny(10)))
    assert pledge.state is PledgeState.PENDING and fresh(campaign).raised_amount == 0
    assert record_donation_outcome(pledge.id).state is PledgeState.PENDING
    # Later, the job drives it: the gateway is asked again by the same key.
    assert finish_pending_donations(now=utcnow() + timedelta(minutes=10)) == 1
    assert fresh(pledge).state is PledgeState.CHARGED and raised_equals_escrow(campaign)


# --- item 1: preview leaves nothing behind -------------------------------------------------------


def test_preview_ends_its_transaction_whether_it_passes_or_refuses(app):
    campaign = make_campaign(tiers=[{"title": "Kit", "price_amount": 1_000, "quantity_limit": 1}])
    backer = make_backer()
    preview_pledge(backer, campaign.id, PledgeRequest(tier_id=campaign.tiers[0].id))
    assert not db.session().in_transaction()
    with pytest.raises(Conflict):
        preview_pledge(backer, campaign.id, PledgeRequest(tier_id=campaign.tiers[0].id, quantity=2))
    assert not db.session().in_transaction()


class DatabaseFailsAfterCharge(FailingGateway):
    """The card is charged, then the database connection drops before anything is recorded."""

    def charge(self, **kwargs):
        self.calls.append((OperationKind.CHARGE, kwargs["idempotency_key"]))
        self.inner.charge(**kwargs)
        raise OperationalError("UPDATE payment_operations", {}, Exception("server closed the connection"))


def test_a_donor_is_not_told_error_when_the_database_fails_after_the_charge(app):
    campaign = make_campaign(CampaignKind.DONATION)
    donor = make_backer()
    real = payments.get_gateway()
    app.extensions[GATEWAY_EXTENSION] = DatabaseFailsAfterCharge(real)
    try:
        pledge = place_pledge(donor, campaign.id, PledgeRequest(amount=cny(60)))
    finally:
        app.extensions.pop(GATEWAY_EXTENSION)
    assert pledge.state is PledgeState.PENDING  # "we are confirming your donation", not 500
    assert finish_pending_donations(now=utcnow() + timedelta(minutes=10)) == 1
    assert fresh(pledge).state is PledgeState.CHARGED and raised_equals_escrow(campaign)
    assert fresh(campaign).raised_amount == 6_000


@pytest.mark.postgres
def test_donations_and_refunds_at_once_all_answer_and_the_totals_match(app):
    """Issue 9 item 1: no deadlock between donation outcomes and refunds; nobody charged is told "error"."""
    campaign = make_campaign(CampaignKind.DONATION)
    earlier = [place_pledge(make_backer(), campaign.id, PledgeRequest(amount=cny(50))).id for _ in range(6)]
    donors = [make_backer().id for _ in range(24)]
    staff_id = operator().id
    start = threading.Event()

    def run(job) -> str:
        start.wait()
        with app.app_context():
            try:
                job()
                return "ok"
            except DomainError as exc:
                return exc.code
            finally:
                db.session.remove()

    def donate(user_id: int):
        return lambda: place_pledge(db.session.get(User, user_id), campaign.id, PledgeRequest(amount=cny(20)))

    def refund(pledge_id: int):
        staff = db.session.get(User, staff_id)
        return lambda: refund_pledge(staff, pledge_id, None, "Asked", f"refund-{pledge_id}")

    jobs = [donate(u) for u in donors] + [refund(p) for p in earlier]
    with ThreadPoolExecutor(max_workers=len(jobs)) as pool:
        futures = [pool.submit(run, job) for job in jobs]
        start.set()
        outcomes = [f.result(timeout=120) for f in futures]
    assert outcomes == ["ok"] * len(jobs)
    states = Counter(p.state for p in db.session.scalars(select(Pledge)))
    assert states == {PledgeState.CHARGED: 24, PledgeState.REFUNDED: 6}
    assert fresh(campaign).raised_amount == 24 * 2_000 and fresh(campaign).backer_count == 24
    assert raised_equals_escrow(campaign)
    assert pledge_disagreements() == []
