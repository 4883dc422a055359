"""The demo's settlement: after `flask demo seed` one campaign is settled (charged at close, one
pledge dropped after the grace period, fees, paid out), one all-or-nothing campaign failed and
charged nobody, the money trail ties to the ledger, and a newcomer can close the campaign that
ends soon and watch it settle with `flask jobs tick --now …`.

The module seeds once (a seed goes through every service); the last test moves time on.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import func, select

from crowdfund.campaigns.models import Campaign, CampaignState
from crowdfund.demo.data import ENDING_SOON, EXTRA_CARDS
from crowdfund.engine.models import Pledge, PledgeState
from crowdfund.errors import ErrorCode
from crowdfund.extensions import db
from crowdfund.ledger import service as ledger
from crowdfund.ledger.models import LedgerTransaction, TransactionKind
from crowdfund.money import Money
from crowdfund.payments import service as payments
from crowdfund.payments.models import OperationKind, OperationState, PaymentOperation
from crowdfund.payments.sandbox import SandboxCharge
from crowdfund.settlement import service as settlement
from crowdfund.settlement.models import ItemState, SettlementItem, SettlementState
from tests.factories import login
from tests.factories.demo import demo_app, demo_campaign, demo_user

SETTLED = "quietcuff-talking-blood-pressure-monitor"
FAILED = "caredose-fall-alert-pendant"
DECLINED_BACKER = next(iter(EXTRA_CARDS))  # Li Na: her card 4000 0000 0000 0341 declines every charge
BEN = "backer@healthfund.example"


@pytest.fixture(scope="module")
def app(_schema, tmp_path_factory):
    with demo_app(_schema, tmp_path_factory.mktemp("demo-settlement-uploads"), seed=True) as app:
        yield app


@pytest.fixture
def seeded(app):
    db.session.rollback()
    db.session.expire_all()
    return app


campaign, user = demo_campaign, demo_user


def items(c: Campaign) -> list[SettlementItem]:
    return list(
        db.session.scalars(
            select(SettlementItem).where(SettlementItem.campaign_id == c.id).order_by(SettlementItem.id)
        )
    )


def closed_ids() -> set[int]:
    return set(db.session.scalars(select(Campaign.id).where(Campaign.closed_at.is_not(None))))


def sandbox_charges(pledge_ids) -> list[SandboxCharge]:
    wanted = {str(i) for i in pledge_ids}
    return [ch for ch in db.session.scalars(select(SandboxCharge)) if ch.details.get("pledge_id") in wanted]


# --- the settled campaign -----------------------------------------------------------------
def test_the_settled_campaign_was_charged_at_close_took_fees_and_was_paid_out(seeded):
    c = campaign(SETTLED)
    s = settlement.settlement_for(c.id)
    assert c.state is CampaignState.SETTLED and s.state is SettlementState.SETTLED
    assert s.closed_at == c.closed_at == c.end_at < c.end_at + timedelta(days=14) == s.paid_out_at
    assert ledger.balance_of_escrow(c.id, c.currency).amount == 0
    assert s.platform_fee_amount > 0 and s.processing_fee_amount > 0
    charged = [i for i in items(c) if i.state is ItemState.CHARGED]
    assert s.collected_amount == sum(i.charged_amount for i in charged) == c.raised_amount
    assert s.paid_out_amount == s.collected_amount - s.platform_fee_amount - s.processing_fee_amount > 0
    payout = db.session.get(PaymentOperation, s.payout_operation_id)
    assert payout.kind is OperationKind.PAYOUT and payout.state is OperationState.SUCCEEDED
    assert payout.amount == Money(s.paid_out_amount, c.currency)
    assert payout.destination == payments.payout_destination(c.organisation_id) is not None
    # Every other pledge charged exactly once, when the campaign closed.
    for item in charged:
        tries = sandbox_charges([item.pledge_id])
        assert [ch.status for ch in tries] == ["succeeded"] and item.attempt == 1, item
        assert item.resolved_at == c.end_at


def test_one_pledge_was_dropped_after_the_grace_period_and_never_charged(seeded):
    c = campaign(SETTLED)
    dropped = [i for i in items(c) if i.state is ItemState.DROPPED]
    assert len(dropped) == 1
    item = dropped[0]
    pledge = db.session.get(Pledge, item.pledge_id)
    assert pledge.user_id == user(DECLINED_BACKER).id and pledge.payment_method.last4 == "0341"
    assert pledge.state is PledgeState.RELEASED and pledge.failure_code == ErrorCode.PLEDGE_DROPPED
    # Tried at close and on each retry day (2, 4, 6 and the last at 7), declined every time.
    tries = sandbox_charges([pledge.id])
    assert item.attempt == len(tries) == 1 + len(settlement.retry_schedule(c.end_at)) == 5
    assert {ch.status for ch in tries} != {"succeeded"} and all(ch.status != "succeeded" for ch in tries)
    assert item.charged_amount == 0 and item.resolved_at == c.end_at + timedelta(days=7)
    # Counted nowhere, charged no fee: the fees come from what was collected without it.
    s = settlement.settlement_for(c.id)
    assert s.pledged_amount == s.collected_amount + item.amount_amount
    assert s.platform_fee_amount == s.collected_amount * 500 // 10_000


def test_the_backers_see_charged_and_dropped_on_my_pledges(client, seeded):
    login(client, user(DECLINED_BACKER))
    page = client.get("/my/pledges").get_data(as_text=True)
    assert "Dropped: the payment could not be collected" in page and "You were not charged." in page
    login(client, user(BEN))
    page = client.get("/my/pledges").get_data(as_text=True)
    assert "QuietCuff" in page and "Charged ¥100.00" in page


# --- the failed campaign ------------------------------------------------------------------
def test_the_failed_campaign_released_every_pledge_and_charged_nobody(seeded):
    c = campaign(FAILED)
    s = settlement.settlement_for(c.id)
    assert c.state is CampaignState.FAILED and s.state is SettlementState.RELEASED
    pledges = list(db.session.scalars(select(Pledge).where(Pledge.campaign_id == c.id)))
    assert len(pledges) == s.item_count >= 5 and user(BEN).id in {p.user_id for p in pledges}
    for p in pledges:
        assert p.state is PledgeState.RELEASED and p.failure_code == ErrorCode.NOT_FUNDED, p
    assert {i.state for i in items(c)} == {ItemState.RELEASED}
    assert (c.raised_amount, c.backer_count) == (0, 0)
    assert sandbox_charges(p.id for p in pledges) == []
    assert not db.session.scalar(
        select(func.count()).select_from(PaymentOperation).where(PaymentOperation.campaign_id == c.id)
    )
    assert not db.session.scalar(
        select(func.count()).select_from(LedgerTransaction).where(LedgerTransaction.campaign_id == c.id)
    )


def test_ben_sees_not_funded_you_were_not_charged(client, seeded):
    login(client, user(BEN))
    page = client.get("/my/pledges").get_data(as_text=True)
    row = page[page.index("CareDose Guardian") :]
    assert "Not funded — you were not charged." in row[: row.index("</tr>")]


# --- the ledger and the money trail -------------------------------------------------------
def test_flask_ledger_verify_passes_after_the_seed(seeded):
    result = seeded.test_cli_runner().invoke(args=["ledger", "verify"])
    assert result.exit_code == 0 and "OK:" in result.output, result.output


def test_the_money_trail_of_the_settled_campaign_ties_to_the_ledger(client, seeded):
    c = campaign(SETTLED)
    s = settlement.settlement_for(c.id)
    body = client.get(f"/campaigns/{c.slug}/money-trail.json").get_json()
    figures = {name: value["amount"] for name, value in body["figures"].items()}
    assert figures["held_in_escrow"] == 0 == ledger.balance_of_escrow(c.id, c.currency).amount
    assert figures["money_in"] == s.collected_amount
    assert (
        figures["platform_fee"] == s.platform_fee_amount
        and figures["processing_fee"] == s.processing_fee_amount
    )
    assert figures["fees"] == s.platform_fee_amount + s.processing_fee_amount > 0
    assert figures["released"] == figures["paid_out"] == s.paid_out_amount
    assert figures["refunded"] == figures["corrections"] == 0
    kinds = {t["kind"] for t in body["transactions"]}
    assert kinds == {k.value for k in (TransactionKind.CHARGE, TransactionKind.PLATFORM_FEE,
                                       TransactionKind.PROCESSING_FEE, TransactionKind.RELEASE,
                                       TransactionKind.PAYOUT)}  # fmt: skip
    page = client.get(f"/campaigns/{c.slug}/money-trail").get_data(as_text=True)
    assert "Settled." in page and 'data-figure="held_in_escrow">¥0.00<' in page
    assert client.get(f"/campaigns/{c.slug}").status_code == 200


def test_the_failed_campaigns_pages_show_nothing_moved(client, seeded):
    c = campaign(FAILED)
    assert client.get(f"/campaigns/{c.slug}").status_code == 200
    trail = client.get(f"/campaigns/{c.slug}/money-trail").get_data(as_text=True)
    assert "No money has moved" in trail


# --- the newcomer closes a campaign and watches it settle (moves time on: keep it last) ---
def test_a_newcomer_closes_the_campaign_ending_soon_and_watches_it_settle(seeded):
    c = campaign(ENDING_SOON)
    assert c.state is CampaignState.LIVE
    runner = seeded.test_cli_runner()
    closed_before = closed_ids()

    after_end = (c.end_at + timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M")
    result = runner.invoke(args=["jobs", "tick", "--now", after_end])
    assert result.exit_code == 0, result.output
    assert "settlements opened: 1" in result.output
    db.session.expire_all()
    assert c.state is CampaignState.SETTLING
    status = runner.invoke(args=["settlement", "status", c.slug]).output
    assert "collecting" in status and "charged 8" in status, status
    assert closed_ids() == closed_before | {c.id}  # the tick closed only the campaign that had ended

    payout_day = (c.end_at + timedelta(days=15)).strftime("%Y-%m-%dT%H:%M")
    result = runner.invoke(args=["jobs", "tick", "--now", payout_day, "--only", "settlement.finalise"])
    assert result.exit_code == 0 and "settlements finalised: 1" in result.output, result.output
    db.session.expire_all()
    s = settlement.settlement_for(c.id)
    assert c.state is CampaignState.SETTLED and s.state is SettlementState.SETTLED
    assert s.paid_out_amount > 0 and ledger.balance_of_escrow(c.id, c.currency).amount == 0
    assert "settled" in runner.invoke(args=["settlement", "status", c.slug]).output
    assert ledger.verify_ledger().ok
