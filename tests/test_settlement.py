"""Settlement end to end: open at close, charge each pledge once, fees, release, payout; failure; refunds."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select

from crowdfund.campaigns.models import Campaign, CampaignKind, CampaignState
from crowdfund.engine.models import Pledge, PledgeState
from crowdfund.errors import Conflict, ErrorCode
from crowdfund.extensions import db
from crowdfund.ledger import service as ledger
from crowdfund.ledger.models import LedgerTransaction, TransactionKind
from crowdfund.money import Money
from crowdfund.payments import service as payments
from crowdfund.settlement import service
from crowdfund.settlement.models import ItemState, SettlementItem, SettlementState
from tests.factories import operator
from tests.settlement_world import DAY, campaign_with_pledges, close, escrow, sandbox_charges_per_pledge


def _connect_payouts(org_id: int) -> None:
    from crowdfund.accounts.models import Organisation

    org = db.session.get(Organisation, org_id)
    payments.save_sandbox_bank_details(org, bank_name="Bank", account_number="12345678")


def test_a_succeeded_campaign_is_charged_once_fees_posted_released_and_paid_out(app):
    app.config["PROCESSING_FEE_BP"] = 290
    app.config["PROCESSING_FEE_FIXED"] = 30
    campaign, pledge_ids = campaign_with_pledges(5, amount=10_001)
    _connect_payouts(campaign.organisation_id)
    closed = close(campaign)
    assert db.session.get(Campaign, campaign.id).state is CampaignState.SUCCEEDED

    settlement = service.open_settlement(campaign.id, now=closed)
    assert (
        service.open_settlement(campaign.id, now=closed).id == settlement.id
    )  # a second settle does nothing
    assert db.session.get(Campaign, campaign.id).state is CampaignState.SETTLING
    assert service.process_due_items(now=closed) == 5
    assert service.process_due_items(now=closed) == 0
    assert sandbox_charges_per_pledge() == {pid: 1 for pid in pledge_ids}
    assert all(db.session.get(Pledge, pid).state is PledgeState.CHARGED for pid in pledge_ids)
    assert escrow(campaign) == Money(50_005, "CNY")

    assert service.finalise_due_settlements(now=closed + 13 * DAY) == 0  # payout delay not over
    assert service.finalise_due_settlements(now=closed + 14 * DAY) == 1
    s = service.settlement_for(campaign.id)
    db.session.refresh(s)
    assert s.state is SettlementState.SETTLED
    assert s.collected_amount == 50_005
    assert s.platform_fee_amount == 50_005 * 500 // 10_000 == 2_500  # rounded down
    assert s.processing_fee_amount == 5 * (10_001 * 290 // 10_000 + 30) == 5 * 320
    assert s.paid_out_amount == 50_005 - 2_500 - 1_600
    assert escrow(campaign).amount == 0
    assert db.session.get(Campaign, campaign.id).state is CampaignState.SETTLED
    assert ledger.verify_ledger().ok
    kinds = set(
        db.session.scalars(select(LedgerTransaction.kind).where(LedgerTransaction.campaign_id == campaign.id))
    )
    assert {
        TransactionKind.PLATFORM_FEE,
        TransactionKind.PROCESSING_FEE,
        TransactionKind.RELEASE,
        TransactionKind.PAYOUT,
    } <= kinds

    assert service.finalise_due_settlements(now=closed + 20 * DAY) == 0  # a rerun posts nothing twice
    assert service.process_due_items(now=closed + 20 * DAY) == 0
    statement = service.campaign_statement(campaign.id)
    assert dict((w, m.amount) for w, _, m in statement.lines)["paid_out"] == s.paid_out_amount
    assert statement.csv_rows()[0][0] == "item"


def test_payout_waits_for_a_payout_account_then_pays(app):
    campaign, _ = campaign_with_pledges(2)
    closed = close(campaign)
    service.open_settlement(campaign.id, now=closed)
    service.process_due_items(now=closed)
    service.finalise_due_settlements(now=closed + 15 * DAY)
    s = service.settlement_for(campaign.id)
    db.session.refresh(s)
    assert s.state is SettlementState.PAYING_OUT
    assert s.status_code == ErrorCode.NO_DESTINATION
    _connect_payouts(campaign.organisation_id)
    assert service.finalise_due_settlements(now=closed + 16 * DAY) == 1
    db.session.refresh(s)
    assert s.state is SettlementState.SETTLED and s.status_code is None
    assert escrow(campaign).amount == 0


def test_a_failed_all_or_nothing_campaign_releases_every_pledge_and_charges_nobody(app):
    campaign, pledge_ids = campaign_with_pledges(3, amount=1_000, goal=1_000_000)
    closed = close(campaign)
    assert db.session.get(Campaign, campaign.id).state is CampaignState.FAILED
    assert service.open_due_settlements(now=closed) == 1
    s = service.settlement_for(campaign.id)
    assert s.state is SettlementState.RELEASED
    for pid in pledge_ids:
        pledge = db.session.get(Pledge, pid)
        assert pledge.state is PledgeState.RELEASED
        assert pledge.failure_message == "Not funded — you were not charged."
    c = db.session.get(Campaign, campaign.id)
    assert (c.raised_amount, c.backer_count) == (0, 0)
    assert service.process_due_items(now=closed + DAY) == 0
    assert sandbox_charges_per_pledge(succeeded_only=False) == {}
    assert service.open_due_settlements(now=closed) == 0


def test_pledges_cannot_be_cancelled_or_changed_once_the_campaign_closed(app):
    from crowdfund.engine.service import PledgeRequest, cancel_pledge, change_pledge

    campaign, pledge_ids = campaign_with_pledges(1, kind=CampaignKind.EQUITY, amount=100_000, goal=50_000)
    closed = close(campaign)
    service.open_settlement(campaign.id, now=closed)
    pledge = db.session.get(Pledge, pledge_ids[0])
    with pytest.raises(Conflict) as err:
        cancel_pledge(pledge.user, pledge.id, now=closed)
    assert err.value.code is ErrorCode.SETTLEMENT_STARTED
    assert "being settled" in err.value.message

    reward, reward_pledges = campaign_with_pledges(1)
    closed = close(reward)
    pledge = db.session.get(Pledge, reward_pledges[0])
    with pytest.raises(Conflict) as err:
        change_pledge(pledge.user, pledge.id, PledgeRequest(amount=Money(20_000, "CNY")), now=closed)
    assert err.value.code is ErrorCode.SETTLEMENT_STARTED
    with pytest.raises(Conflict) as err:
        cancel_pledge(pledge.user, pledge.id, now=closed)
    assert err.value.code is ErrorCode.SETTLEMENT_STARTED


def test_an_equity_round_below_its_minimum_after_drops_refunds_everyone(app):
    from crowdfund.payments.sandbox import CardBehaviour
    from tests.settlement_world import set_behaviour

    campaign, pledge_ids = campaign_with_pledges(3, kind=CampaignKind.EQUITY, amount=50_000, goal=50_000)
    terms = campaign.equity_terms
    terms.min_target_amount = 120_000
    db.session.commit()
    closed = close(campaign)
    assert db.session.get(Campaign, campaign.id).state is CampaignState.SUCCEEDED
    set_behaviour(db.session.get(Pledge, pledge_ids[0]).user_id, CardBehaviour.LOST_CARD)
    service.open_settlement(campaign.id, now=closed)
    service.process_due_items(now=closed)
    assert escrow(campaign).amount == 100_000
    service.finalise_due_settlements(now=closed + 7 * DAY)
    s = service.settlement_for(campaign.id)
    db.session.refresh(s)
    assert s.state is SettlementState.REFUNDING
    service.process_due_items(now=closed + 7 * DAY)
    service.finalise_due_settlements(now=closed + 7 * DAY)
    db.session.refresh(s)
    assert s.state is SettlementState.REFUNDED
    assert escrow(campaign).amount == 0
    states = {db.session.get(Pledge, pid).state for pid in pledge_ids}
    assert states == {PledgeState.REFUNDED, PledgeState.RELEASED}
    assert ledger.verify_ledger().ok


def test_cancel_campaign_with_refunds_refunds_charged_donations_and_releases_the_rest(app):
    donation, donation_pledges = campaign_with_pledges(2, kind=CampaignKind.DONATION, amount=5_000)
    assert escrow(donation).amount == 10_000
    s = service.cancel_campaign_with_refunds(operator(), donation.id, "Fraud suspected")
    assert s.state is SettlementState.REFUNDED
    assert db.session.get(Campaign, donation.id).state is CampaignState.CANCELLED
    assert all(db.session.get(Pledge, pid).state is PledgeState.REFUNDED for pid in donation_pledges)
    assert escrow(donation).amount == 0

    reward, reward_pledges = campaign_with_pledges(2)
    s = service.cancel_campaign_with_refunds(operator(), reward.id, "Fraud suspected")
    assert s.state is SettlementState.REFUNDED
    assert all(db.session.get(Pledge, pid).state is PledgeState.RELEASED for pid in reward_pledges)
    assert sandbox_charges_per_pledge().keys() == set(donation_pledges)
    assert ledger.verify_ledger().ok


def test_a_refund_after_payout_is_recorded_as_owed_by_the_organisation(app):
    campaign, pledge_ids = campaign_with_pledges(2, amount=10_000)
    _connect_payouts(campaign.organisation_id)
    closed = close(campaign)
    service.open_settlement(campaign.id, now=closed)
    service.process_due_items(now=closed)
    service.finalise_due_settlements(now=closed + 14 * DAY)
    assert escrow(campaign).amount == 0
    item = service.refund_item(
        operator(), pledge_ids[0], None, "Product never shipped", now=closed + 20 * DAY
    )
    assert item.state is ItemState.REFUNDED
    assert db.session.get(Pledge, pledge_ids[0]).state is PledgeState.REFUNDED
    s = service.settlement_for(campaign.id)
    db.session.refresh(s)
    assert s.owed_by_organisation_amount == 10_000
    receivable = ledger.find_account(
        __import__("crowdfund.ledger.models", fromlist=["AccountPurpose"]).AccountPurpose.ORG_RECEIVABLE,
        "CNY",
        "organisation",
        campaign.organisation_id,
    )
    assert ledger.account_balance(receivable).amount == 10_000
    assert escrow(campaign).amount == 0
    assert ledger.verify_ledger().ok


def test_a_refund_before_payout_leaves_escrow_and_lowers_what_is_released(app):
    campaign, pledge_ids = campaign_with_pledges(2, amount=10_000)
    _connect_payouts(campaign.organisation_id)
    closed = close(campaign)
    service.open_settlement(campaign.id, now=closed)
    service.process_due_items(now=closed)
    service.refund_item(operator(), pledge_ids[0], Money(4_000, "CNY"), "Partial", now=closed + DAY)
    assert escrow(campaign).amount == 16_000
    service.finalise_due_settlements(now=closed + 14 * DAY)
    s = service.settlement_for(campaign.id)
    db.session.refresh(s)
    assert s.state is SettlementState.SETTLED
    assert s.collected_amount == 16_000
    assert escrow(campaign).amount == 0
    progress = service.settlement_progress(campaign.id)
    assert progress.collected.amount == 16_000 and progress.charged == 2


def test_settlement_status_command(app):
    campaign, _ = campaign_with_pledges(2)
    closed = close(campaign)
    service.open_settlement(campaign.id, now=closed)
    result = app.test_cli_runner().invoke(args=["settlement", "status", campaign.slug])
    assert result.exit_code == 0, result.output
    assert "left 2" in result.output
    service.process_due_items(now=closed)
    result = app.test_cli_runner().invoke(args=["settlement", "status", str(campaign.id)])
    assert "charged 2" in result.output and "left 0" in result.output
    assert app.test_cli_runner().invoke(args=["settlement", "status", "nope"]).exit_code != 0


def test_a_gateway_timeout_leaves_the_item_unknown_until_reconciliation(app, failing_gateway):
    campaign, pledge_ids = campaign_with_pledges(1)
    closed = close(campaign)
    service.open_settlement(campaign.id, now=closed)
    failing_gateway.unavailable()
    service.process_due_items(now=closed)
    item = service.item_for_pledge(pledge_ids[0])
    assert item.state is ItemState.UNKNOWN and item.attempt == 1
    assert service.process_due_items(now=closed) == 0  # not again at once
    failing_gateway.available()
    service.process_due_items(now=closed + timedelta(minutes=10))
    item = service.item_for_pledge(pledge_ids[0])
    assert item.state is ItemState.CHARGED and item.attempt == 1  # the same attempt, not a new one
    assert {key for _, key in failing_gateway.calls} == {f"pledge:{pledge_ids[0]}:charge:1"}
    assert sandbox_charges_per_pledge() == {pledge_ids[0]: 1}


def test_an_unknown_answer_found_at_the_gateway_is_recorded_without_a_second_call(app, failing_gateway):
    app.config["PAYMENT_CALL_LEASE_SECONDS"] = 0  # the dead worker's lease is over at once
    campaign, pledge_ids = campaign_with_pledges(1)
    closed = close(campaign)
    service.open_settlement(campaign.id, now=closed)
    failing_gateway.crash_after_charge()  # the charge happens; the answer is lost
    from tests.factories import ProcessDied

    with pytest.raises(ProcessDied):
        service.process_due_items(now=closed)
    db.session.rollback()
    service.process_due_items(now=closed)
    item = service.item_for_pledge(pledge_ids[0])
    assert item.state is ItemState.CHARGED
    assert sandbox_charges_per_pledge() == {pledge_ids[0]: 1}
    assert db.session.scalar(select(SettlementItem.attempt)) == 1


def test_a_refund_made_outside_the_site_is_reflected_before_the_release(app):
    from crowdfund.engine.donations import record_missing_refunds

    campaign, pledge_ids = campaign_with_pledges(2, amount=10_000)
    closed = close(campaign)
    service.open_settlement(campaign.id, now=closed)
    service.process_due_items(now=closed)
    charge_op = db.session.get(Pledge, pledge_ids[0]).payment_operation_id
    from crowdfund.payments.models import PaymentOperation

    # As the gateway's dashboard refund reaches us through the webhook: payments records it ...
    payments.refund(
        operation=db.session.get(PaymentOperation, charge_op),
        amount=None,
        idempotency_key="dashboard-refund",
        reason="dashboard",
    )
    # ... and the engine's reconciliation puts it on the pledge.
    assert record_missing_refunds() == 1
    service.finalise_due_settlements(now=closed + 14 * DAY)
    s = service.settlement_for(campaign.id)
    db.session.refresh(s)
    assert s.collected_amount == 10_000
    assert service.item_for_pledge(pledge_ids[0]).state is ItemState.REFUNDED
    assert escrow(campaign).amount == 0
    assert ledger.verify_ledger().ok
