"""Patient aid: the money goes to the hospital in tranches against its invoices, after an
operator's approval and a public notice; a report holds a tranche; the surplus goes back to
the donors pro rata, exactly."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import func, select

from crowdfund.accounts.models import User
from crowdfund.campaigns.models import CampaignKind
from crowdfund.engine.models import Pledge, PledgeState
from crowdfund.errors import Conflict, ErrorCode, Forbidden, NotFound, ValidationError
from crowdfund.extensions import db
from crowdfund.jobs import run_jobs, select_jobs
from crowdfund.ledger import service as ledger
from crowdfund.ledger.models import LedgerTransaction, TransactionKind
from crowdfund.models_base import InvalidTransition
from crowdfund.money import Money
from crowdfund.patient_aid import invoices
from crowdfund.patient_aid import service as aid
from crowdfund.patient_aid.models import (
    SurplusRefund,
    SurplusReturn,
    Tranche,
    TrancheReport,
    TrancheState,
)
from crowdfund.payments import service as payments
from crowdfund.payments.models import OperationKind, PaymentOperation
from crowdfund.payments.sandbox import SandboxPayout, SandboxRefund
from crowdfund.settlement import service as settlement
from tests.factories import make_org, make_user, operator
from tests.factories.campaigns import image_bytes
from tests.factories.gateway import ProcessDied
from tests.patient_aid_world import DAY, PDF, hospital, request, settled_appeal
from tests.settlement_world import escrow

HOUR = timedelta(hours=1)


def _count(model) -> int:
    return db.session.scalar(select(func.count()).select_from(model))


def _cny(amount: int) -> Money:
    return Money(amount, "CNY")


def _stored_invoices() -> int:
    folder = invoices.invoices_dir()
    return len(list(folder.iterdir())) if folder.exists() else 0


def _payouts_to(h) -> list[SandboxPayout]:
    return list(db.session.scalars(select(SandboxPayout).where(SandboxPayout.destination == h.account_id)))


# --- settlement keeps a patient-aid appeal's money in escrow ------------------------------
def test_settlement_of_an_appeal_releases_nothing_to_the_family(app):
    campaign, _, _ = settled_appeal(3, 10_000)
    s = settlement.settlement_for(campaign.id)
    assert s.state.value == "settled"
    assert s.released_amount == 0 and s.paid_out_amount in (0, None)
    assert escrow(campaign) == _cny(30_000 - s.platform_fee_amount - s.processing_fee_amount)
    assert ledger.balance_owed(currency="CNY", organisation_id=campaign.organisation_id) == _cny(0)
    assert not db.session.scalar(
        select(func.count(PaymentOperation.id)).where(PaymentOperation.kind == OperationKind.PAYOUT)
    )


# --- the lifecycle --------------------------------------------------------------------------
def test_tranche_requested_approved_in_notice_then_paid_once_by_the_job(app):
    campaign, owner, settled = settled_appeal(3, 10_000)
    h = hospital()
    held_before = aid.held(campaign)
    tranche = request(owner, campaign, h, now=settled)
    assert tranche.state is TrancheState.REQUESTED and tranche.amount == _cny(8_000)
    assert aid.held(campaign) == held_before - _cny(8_000)
    assert aid.public_tranches(campaign) == []  # not public before approval

    approved_at = settled + HOUR
    aid.approve_tranche(operator(), tranche.id, now=approved_at)
    tranche = db.session.get(Tranche, tranche.id)
    assert tranche.state is TrancheState.IN_NOTICE
    assert tranche.notice_ends_at == approved_at + timedelta(hours=24)
    notice = aid.public_tranches(campaign)
    assert [(n.amount, n.hospital, n.in_notice) for n in notice] == [(_cny(8_000), h.name, True)]
    # the patient's name is masked in the public summary
    assert "Xiaoyu" not in notice[0].purpose and "Xiaoyu" not in notice[0].items[0][0]
    assert [a for _, a in notice[0].items] == [_cny(6_000), _cny(2_000)]

    pay = select_jobs(["patient_aid.pay"])
    assert [o.count for o in run_jobs(approved_at + 23 * HOUR, pay)] == [0]
    assert escrow(campaign) == held_before
    assert [o.count for o in run_jobs(approved_at + 24 * HOUR, pay)] == [1]
    tranche = db.session.get(Tranche, tranche.id)
    assert tranche.state is TrancheState.PAID and tranche.payout_operation_id
    assert escrow(campaign) == held_before - _cny(8_000)
    assert ledger.balance_owed(currency="CNY", provider_id=h.id) == _cny(0)
    assert [p.amount for p in _payouts_to(h)] == [8_000]

    # again: nothing moves twice
    assert [o.count for o in run_jobs(approved_at + 48 * HOUR, pay)] == [0]
    aid.pay_tranche(tranche.id, now=approved_at + 49 * HOUR)
    assert len(_payouts_to(h)) == 1
    assert ledger.find_transaction(aid.release_key(tranche.id)).kind == TransactionKind.RELEASE
    assert ledger.verify_ledger().ok


def test_rejected_tranche_frees_what_it_held(app):
    campaign, owner, settled = settled_appeal(2, 10_000)
    h = hospital()
    before = aid.held(campaign)
    tranche = request(owner, campaign, h, now=settled)
    aid.reject_tranche(operator(), tranche.id, "The invoice is not itemised.", now=settled)
    tranche = db.session.get(Tranche, tranche.id)
    assert tranche.state is TrancheState.REJECTED and tranche.rejection_reason
    assert aid.held(campaign) == before
    with pytest.raises(Conflict) as exc:
        aid.approve_tranche(operator(), tranche.id)
    assert exc.value.code is ErrorCode.TRANCHE_STATE


# --- bad input: a clear message, nothing changed --------------------------------------------
def _nothing_stored(before_files: int) -> None:
    assert _count(Tranche) == 0
    assert _stored_invoices() == before_files


def test_a_tranche_above_what_is_held_is_refused(app):
    campaign, owner, settled = settled_appeal(2, 10_000)  # holds 190.00 after the 5 % fee
    h = hospital()
    files = _stored_invoices()
    with pytest.raises(Conflict) as exc:
        request(owner, campaign, h, [("Transplant", "190.01")], now=settled)
    assert exc.value.code is ErrorCode.TRANCHE_ABOVE_HELD
    assert "¥190.00" in exc.value.message or "190.00" in exc.value.message
    _nothing_stored(files)
    # what is requested counts as promised
    request(owner, campaign, h, [("Ward", "150.00")], now=settled)
    with pytest.raises(Conflict) as exc:
        request(owner, campaign, h, [("Ward", "40.01")], now=settled)
    assert exc.value.code is ErrorCode.TRANCHE_ABOVE_HELD
    assert _count(Tranche) == 1


def test_an_invoice_from_another_hospital_is_refused(app):
    campaign, owner, settled = settled_appeal(2, 10_000)
    h, other = hospital(), hospital("Zhejiang Provincial Hospital")
    files = _stored_invoices()
    with pytest.raises(ValidationError) as exc:
        request(owner, campaign, h, invoice_hospital=other, now=settled)
    assert exc.value.code is ErrorCode.INVOICE_OTHER_HOSPITAL and "another hospital" in exc.value.message
    _nothing_stored(files)


def test_the_same_request_twice_is_refused_and_recorded_once(app):
    campaign, owner, settled = settled_appeal(2, 10_000)
    h = hospital()
    first = request(owner, campaign, h, key="same-key-123", now=settled)
    files = _stored_invoices()
    with pytest.raises(Conflict) as exc:
        request(owner, campaign, h, key="same-key-123", now=settled)
    assert exc.value.code is ErrorCode.TRANCHE_DUPLICATE and f"#{first.id}" in exc.value.message
    assert _count(Tranche) == 1 and _stored_invoices() == files


@pytest.mark.parametrize(
    "items, amount, data, code",
    [
        ([("", "10.00")], "", PDF, ErrorCode.INVOICE_ITEMS),
        ([("Scan", "abc")], "", PDF, ErrorCode.INVOICE_ITEMS),
        ([("Scan", "-5")], "", PDF, ErrorCode.INVOICE_ITEMS),
        ([("Scan", "10.00")], "10.01", PDF, ErrorCode.TRANCHE_ABOVE_INVOICE),
        ([("Scan", "10.00")], "", b"<html><script>alert(1)</script></html>", ErrorCode.INVOICE_FILE_INVALID),
        ([("Scan", "10.00")], "", b"just some text", ErrorCode.INVOICE_FILE_INVALID),
        ([("Scan", "10.00")], "", b"%PDF-1.4 truncated", ErrorCode.INVOICE_FILE_INVALID),
        ([("Scan", "10.00")], "", b"", ErrorCode.INVOICE_FILE_MISSING),
    ],
)
def test_bad_invoices_are_refused_with_nothing_stored(app, items, amount, data, code):
    campaign, owner, settled = settled_appeal(1, 10_000)
    h = hospital()
    files = _stored_invoices()
    with pytest.raises(ValidationError) as exc:
        request(owner, campaign, h, items, amount=amount, data=data, now=settled)
    assert exc.value.code is code and exc.value.message
    _nothing_stored(files)


def test_an_image_invoice_is_kept_re_encoded(app):
    campaign, owner, settled = settled_appeal(1, 10_000)
    tranche = request(owner, campaign, hospital(), data=image_bytes(fmt="JPEG"), now=settled)
    assert tranche.invoice_content_type == "image/png"
    assert invoices.invoice_path(tranche.invoice_file).read_bytes().startswith(b"\x89PNG")


def test_only_members_request_and_only_operators_decide(app):
    campaign, owner, settled = settled_appeal(2, 10_000)
    h = hospital()
    for outsider in (make_user(), db.session.get(User, make_org().created_by_id)):
        with pytest.raises(NotFound):
            request(outsider, campaign, h, now=settled)
    with pytest.raises(NotFound):  # an operator decides, but does not ask
        request(operator(), campaign, h, now=settled)
    tranche = request(owner, campaign, h, now=settled)
    for who in (owner, make_user()):
        with pytest.raises(Forbidden):
            aid.approve_tranche(who, tranche.id)
        with pytest.raises(Forbidden):
            aid.reject_tranche(who, tranche.id, "no")
        with pytest.raises(Forbidden):
            aid.clear_reports(who, tranche.id)
    assert db.session.get(Tranche, tranche.id).state is TrancheState.REQUESTED


def test_an_unverified_hospital_cannot_be_paid(app):
    campaign, owner, settled = settled_appeal(1, 10_000)
    h = hospital(verified=False)
    with pytest.raises(Conflict) as exc:
        request(owner, campaign, h, now=settled)
    assert exc.value.code is ErrorCode.HOSPITAL_NOT_VERIFIED
    assert _count(Tranche) == 0


def test_a_hospital_is_registered_once_per_licence(app):
    h = hospital()
    with pytest.raises(Conflict) as exc:
        aid.register_hospital(
            operator(),
            aid.HospitalDetails(
                name="Copy",
                licence_number=h.licence_number,
                city="X",
                bank_name="B",
                account_number="12345678",
            ),
        )
    assert exc.value.code is ErrorCode.HOSPITAL_DUPLICATE
    with pytest.raises(Forbidden):
        aid.register_hospital(make_user(), aid.HospitalDetails(name="A", licence_number="L1", city="C"))


def test_tranches_wait_for_the_settlement(app):
    from tests.settlement_world import campaign_with_pledges

    campaign, _ = campaign_with_pledges(1, kind=CampaignKind.DONATION)
    campaign.donation_terms.is_patient_aid = True
    db.session.commit()
    with pytest.raises(Conflict) as exc:
        request(db.session.get(User, campaign.organisation.created_by_id), campaign, hospital())
    assert exc.value.code is ErrorCode.APPEAL_NOT_SETTLED


# --- reports hold the payment ---------------------------------------------------------------
def test_a_report_holds_the_tranche_until_an_operator_clears_it(app):
    campaign, owner, settled = settled_appeal(2, 10_000)
    h = hospital()
    tranche = request(owner, campaign, h, now=settled)
    aid.approve_tranche(operator(), tranche.id, now=settled)
    reporter = make_user()
    aid.report_tranche(reporter, tranche.id, "The family already paid this invoice.", now=settled + HOUR)
    assert db.session.get(Tranche, tranche.id).state is TrancheState.HELD
    with pytest.raises(Conflict) as exc:
        aid.report_tranche(reporter, tranche.id, "again", now=settled + HOUR)
    assert exc.value.code is ErrorCode.REPORT_DUPLICATE
    with pytest.raises(ValidationError):
        aid.report_tranche(make_user(), tranche.id, "   ")
    assert _count(TrancheReport) == 1

    before = escrow(campaign)
    assert aid.pay_due_tranches(now=settled + 3 * DAY) == 0
    assert escrow(campaign) == before and _payouts_to(h) == []
    assert aid.public_tranches(campaign)[0].in_notice  # still shown

    aid.clear_reports(operator(), tranche.id, now=settled + 3 * DAY)
    assert db.session.get(TrancheReport, 1).cleared_at is not None
    assert aid.pay_due_tranches(now=settled + 3 * DAY) == 1
    assert db.session.get(Tranche, tranche.id).state is TrancheState.PAID
    with pytest.raises(Conflict) as exc:
        aid.report_tranche(make_user(), tranche.id, "too late")
    assert exc.value.code is ErrorCode.REPORT_CLOSED


def test_a_held_tranche_can_be_rejected(app):
    campaign, owner, settled = settled_appeal(1, 10_000)
    tranche = request(owner, campaign, hospital(), now=settled)
    aid.approve_tranche(operator(), tranche.id, now=settled)
    aid.report_tranche(make_user(), tranche.id, "Forged invoice", now=settled)
    aid.reject_tranche(operator(), tranche.id, "The hospital does not know this invoice.", now=settled)
    assert db.session.get(Tranche, tranche.id).state is TrancheState.REJECTED
    assert aid.pay_due_tranches(now=settled + 5 * DAY) == 0


# --- the surplus goes back to the donors ----------------------------------------------------
def test_surplus_returned_pro_rata_exactly_once_and_escrow_ends_at_zero(app):
    campaign, owner, settled = settled_appeal(3, 10_001)  # 300.03 given, 285.03 held
    h = hospital()
    tranche = request(owner, campaign, h, [("Surgery", "100.00")], now=settled)
    aid.approve_tranche(operator(), tranche.id, now=settled)
    with pytest.raises(Conflict) as exc:  # a tranche still open
        aid.end_appeal(owner, campaign.id, now=settled + HOUR)
    assert exc.value.code is ErrorCode.TRANCHES_OPEN
    assert aid.pay_due_tranches(now=settled + DAY) == 1

    surplus = escrow(campaign)
    assert surplus.amount == 30_003 - 1_500 - 10_000
    record = aid.end_appeal(owner, campaign.id, now=settled + 2 * DAY)
    parts = db.session.scalars(select(SurplusRefund).order_by(SurplusRefund.pledge_id)).all()
    assert record.surplus == surplus and record.finished_at is not None
    assert sum(p.amount_amount for p in parts) == surplus.amount
    assert [p.amount_amount for p in parts] == [a.amount for a in surplus.allocate([10_001] * 3)]
    assert all(p.refunded_at is not None for p in parts)
    assert escrow(campaign) == _cny(0)
    for p in parts:
        pledge = db.session.get(Pledge, p.pledge_id)
        assert pledge.refunded_amount == p.amount_amount and pledge.state is PledgeState.CHARGED
    refunds = db.session.scalar(
        select(func.count(PaymentOperation.id)).where(PaymentOperation.kind == OperationKind.REFUND)
    )
    assert refunds == 3

    # exactly once: ending again is refused, the jobs find nothing to do
    with pytest.raises(Conflict) as exc:
        aid.end_appeal(operator(), campaign.id)
    assert exc.value.code is ErrorCode.APPEAL_ENDED
    assert aid.finish_surplus_returns(now=settled + 3 * DAY) == 0
    assert aid.end_due_appeals(now=settled + 900 * DAY) == 0
    with pytest.raises(Conflict) as exc:
        request(owner, campaign, h, now=settled + 3 * DAY)
    assert exc.value.code is ErrorCode.APPEAL_ENDED
    assert _count(SurplusReturn) == 1
    assert (
        db.session.scalar(
            select(func.count(PaymentOperation.id)).where(PaymentOperation.kind == OperationKind.REFUND)
        )
        == 3
    )
    assert ledger.verify_ledger().ok


def test_uneven_gifts_split_by_largest_remainder(app):
    campaign, owner, settled = settled_appeal(3, 10_000)
    # make the gifts uneven: refund part of the first one
    first = db.session.scalars(
        select(Pledge).where(Pledge.campaign_id == campaign.id).order_by(Pledge.id)
    ).first()
    settlement.refund_item(operator(), first.id, _cny(3_333), "partial", now=settled)
    surplus = escrow(campaign)
    aid.end_appeal(operator(), campaign.id, now=settled + DAY)
    parts = db.session.scalars(select(SurplusRefund).order_by(SurplusRefund.pledge_id)).all()
    assert [p.amount_amount for p in parts] == [a.amount for a in surplus.allocate([6_667, 10_000, 10_000])]
    assert sum(p.amount_amount for p in parts) == surplus.amount
    assert escrow(campaign) == _cny(0)
    assert ledger.verify_ledger().ok


def test_an_appeal_ends_by_itself_after_the_period(app):
    campaign, owner, settled = settled_appeal(2, 10_000)
    ends = campaign.closed_at + timedelta(days=app.config["PATIENT_AID_SURPLUS_DAYS"])
    assert aid.end_due_appeals(now=ends - HOUR) == 0
    out = run_jobs(ends, select_jobs(["patient_aid.end"]))
    assert [o.count for o in out] == [1] and out[0].error is None
    assert escrow(campaign) == _cny(0)
    assert aid.surplus_return_for(campaign.id).reason.value == "period_over"


def test_a_surplus_refund_the_gateway_refused_is_finished_later(app, failing_gateway):
    campaign, owner, settled = settled_appeal(2, 10_000)
    failing_gateway.fail_next(OperationKind.REFUND)
    record = aid.end_appeal(owner, campaign.id, now=settled)
    assert record.finished_at is None and escrow(campaign).amount > 0
    assert aid.finish_surplus_returns(now=settled + DAY) == 1
    assert escrow(campaign) == _cny(0)
    assert _count(SandboxRefund) == 2
    assert ledger.verify_ledger().ok


def test_a_payout_cut_off_midway_is_resumed_without_paying_twice(app, failing_gateway):
    campaign, owner, settled = settled_appeal(2, 10_000)
    h = hospital()
    tranche = request(owner, campaign, h, now=settled)
    aid.approve_tranche(operator(), tranche.id, now=settled)
    failing_gateway.crash_after(OperationKind.PAYOUT)
    with pytest.raises(ProcessDied):
        aid.pay_due_tranches(now=settled + DAY)
    assert db.session.get(Tranche, tranche.id).state is TrancheState.PAYING
    assert aid.pay_due_tranches(now=settled + DAY + HOUR) == 1
    assert len(_payouts_to(h)) == 1
    assert ledger.verify_ledger().ok


# --- the state machine ----------------------------------------------------------------------
S = TrancheState
ALLOWED = {
    (S.REQUESTED, S.IN_NOTICE),
    (S.REQUESTED, S.REJECTED),
    (S.IN_NOTICE, S.HELD),
    (S.IN_NOTICE, S.PAYING),
    (S.HELD, S.IN_NOTICE),
    (S.HELD, S.REJECTED),
    (S.PAYING, S.PAID),
}


@pytest.mark.parametrize("current", list(S))
@pytest.mark.parametrize("target", list(S))
def test_tranche_moves(current, target):
    tranche = Tranche(state=current)
    if (current, target) in ALLOWED:
        tranche.transition_to(target)
        assert tranche.state is target
    else:
        with pytest.raises(InvalidTransition):
            tranche.transition_to(target)
        assert tranche.state is current


def test_payments_never_pay_a_hospital_more_than_it_is_owed(app):
    campaign, owner, settled = settled_appeal(1, 10_000)
    h = hospital()
    with pytest.raises(Conflict):
        payments.payout(
            organisation_id=campaign.organisation_id,
            provider_id=h.id,
            amount=_cny(1),
            idempotency_key="tranche:x:payout",
            destination=h.account_id,
        )
    assert (
        db.session.scalar(
            select(func.count(LedgerTransaction.id)).where(LedgerTransaction.kind == TransactionKind.PAYOUT)
        )
        == 0
    )
