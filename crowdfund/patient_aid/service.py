"""Patient-aid use cases: hospitals, tranches against invoices, public notice, payout, surplus.

Money of a patient-aid appeal stays in the campaign's escrow when it settles (the kind's
rule `pays_out_through_tranches`, consulted by settlement). From there:

- a **tranche** is requested by a member of the appeal's organisation against an itemised
  invoice of a verified hospital, for at most what the appeal **holds**: escrow less the
  tranches requested, in notice or held (not yet released);
- an operator approves it (the public notice runs PATIENT_AID_NOTICE_HOURS) or rejects it;
  a logged-in user's report holds it until an operator clears the reports;
- `pay_due_tranches` (the `patient_aid.pay` job) pays each tranche whose notice is over in
  three named steps: release escrow -> the hospital's payable (`postings.release_to_provider`,
  key ``tranche:{id}:release``) and mark it *paying*, in one unit of work; the payout to
  the hospital's account (`payments.payout`, key ``tranche:{id}:payout``, exactly once);
  then *paid*;
- when the appeal ends (a member or an operator says the treatment is finished, or
  PATIENT_AID_SURPLUS_DAYS after close) what escrow still holds is split among the
  donations by what each still counts (largest remainder, written once as
  `SurplusRefund` rows) and refunded to each card exactly once (key
  ``patient_aid:surplus:{row id}``); escrow ends at zero.

Lock order: campaign -> tranche (or surplus rows) -> payment operations -> ledger.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from flask import current_app
from sqlalchemy import exists, func, select
from sqlalchemy.exc import IntegrityError

from crowdfund.campaigns.kinds import kind_rules
from crowdfund.campaigns.models import Campaign, CampaignKind, CampaignState, DonationTerms, mask_name
from crowdfund.database import lock, retry_on_lock, unit_of_work, valid_id
from crowdfund.engine import donations
from crowdfund.engine.counters import lock_campaign
from crowdfund.engine.models import Pledge, PledgeState
from crowdfund.errors import Conflict, DomainError, ErrorCode, Forbidden, NotFound, ValidationError
from crowdfund.extensions import db
from crowdfund.ledger import postings
from crowdfund.ledger import service as ledger
from crowdfund.models_base import utcnow
from crowdfund.money import Money, MoneyError
from crowdfund.patient_aid import invoices
from crowdfund.patient_aid.models import (
    OPEN_STATES,
    PUBLIC_STATES,
    RESERVING_STATES,
    Hospital,
    InvoiceItem,
    SurplusReason,
    SurplusRefund,
    SurplusReturn,
    Tranche,
    TrancheReport,
    TrancheState,
)
from crowdfund.payments import service as payments
from crowdfund.payments.models import OperationState, PaymentOperation

if TYPE_CHECKING:
    from crowdfund.accounts.models import User

MAX_ITEMS = 50
MAX_TEXT = 1_000
REQUEST_KEY = re.compile(r"[A-Za-z0-9_-]{8,100}")


def _now(now: datetime | None) -> datetime:
    return now or utcnow()


def _is_operator(user: User | None) -> bool:
    return bool(user is not None and getattr(user, "is_operator", False))


def _operator_only(user: User | None, what: str) -> None:
    if not _is_operator(user):
        raise Forbidden(f"Only operators can {what}.", code=ErrorCode.FORBIDDEN)


def _text(value: str | None, limit: int) -> str:
    return " ".join((value or "").split())[:limit] if value else ""


# --- hospitals -----------------------------------------------------------------------------
def hospitals() -> list[Hospital]:
    """Every registered hospital, by name."""
    return list(db.session.scalars(select(Hospital).order_by(Hospital.name, Hospital.id)))


def verified_hospitals() -> list[Hospital]:
    """The hospitals a tranche may be paid to."""
    return [h for h in hospitals() if h.is_verified]


def _hospital(hospital_id: int | None) -> Hospital:
    hospital = db.session.get(Hospital, hospital_id) if valid_id(hospital_id) else None
    if hospital is None:
        raise NotFound(code=ErrorCode.HOSPITAL_NOT_FOUND, field="hospital_id")
    return hospital


@dataclass(frozen=True)
class HospitalDetails:
    """What an operator enters to register a hospital (sandbox bank details, or a Stripe account)."""

    name: str
    licence_number: str
    city: str
    country: str = "CN"
    bank_name: str = ""
    account_number: str = ""
    account_id: str = ""


def _checked_details(details: HospitalDetails) -> HospitalDetails:
    name, licence, city = (
        _text(details.name, 200),
        _text(details.licence_number, 60),
        _text(details.city, 100),
    )
    for value, field_name, label in (
        (name, "name", "the hospital's name"),
        (licence, "licence_number", "its licence number"),
        (city, "city", "its city"),
    ):
        if not value:
            raise ValidationError(f"Enter {label}.", code=ErrorCode.REQUIRED, field=field_name)
    country = (details.country or "CN").strip().upper()
    if not re.fullmatch(r"[A-Z]{2}", country):
        raise ValidationError(
            "Enter a two-letter country code.", code=ErrorCode.VALIDATION_ERROR, field="country"
        )
    return HospitalDetails(
        name, licence, city, country, details.bank_name, details.account_number, details.account_id
    )


def _licence_taken(licence: str) -> bool:
    return db.session.scalar(select(Hospital.id).where(Hospital.licence_number == licence)) is not None


def register_hospital(operator: User, details: HospitalDetails) -> Hospital:
    """An operator registers a hospital and its payout account (not verified yet)."""
    _operator_only(operator, "register hospitals")
    details = _checked_details(details)
    if _licence_taken(details.licence_number):
        raise Conflict(code=ErrorCode.HOSPITAL_DUPLICATE, params={"licence": details.licence_number})
    info = payments.open_provider_payout_account(
        name=details.name,
        country=details.country,
        bank_name=details.bank_name,
        account_number=details.account_number,
        account_id=details.account_id,
    )
    return _record_hospital(operator, details, info)


@retry_on_lock
def _record_hospital(operator: User, details: HospitalDetails, info) -> Hospital:
    try:
        with unit_of_work():
            if _licence_taken(details.licence_number):
                raise Conflict(code=ErrorCode.HOSPITAL_DUPLICATE, params={"licence": details.licence_number})
            hospital = Hospital(
                name=details.name,
                licence_number=details.licence_number,
                city=details.city,
                country=details.country,
                gateway=payments.gateway_name(),
                account_id=info.account_id,
                bank_name=info.bank_name,
                last4=info.last4,
                payouts_enabled=info.payouts_enabled,
                created_by_id=operator.id,
            )
            db.session.add(hospital)
            db.session.flush()
    except IntegrityError:
        raise Conflict(
            code=ErrorCode.HOSPITAL_DUPLICATE, params={"licence": details.licence_number}
        ) from None
    return hospital


@retry_on_lock
def verify_hospital(operator: User, hospital_id: int, *, now: datetime | None = None) -> Hospital:
    """An operator checked the hospital's licence and bank: tranches may now be paid to it."""
    _operator_only(operator, "verify hospitals")
    with unit_of_work():
        hospital = lock(Hospital, hospital_id)
        if hospital is None:
            raise NotFound(code=ErrorCode.HOSPITAL_NOT_FOUND)
        if not hospital.payouts_enabled:
            raise Conflict(code=ErrorCode.HOSPITAL_NOT_VERIFIED)
        if hospital.verified_at is None:
            hospital.verified_at, hospital.verified_by_id = _now(now), operator.id
    return hospital


# --- the appeal ----------------------------------------------------------------------------
def is_member(user: User | None, organisation_id: int) -> bool:
    from crowdfund.campaigns import access

    return access.is_member(user, organisation_id)


def is_patient_aid(campaign: Campaign) -> bool:
    return kind_rules(campaign).pays_out_through_tranches(campaign)


def appeal_for(user: User | None, campaign_id: int) -> Campaign:
    """A patient-aid appeal `user` may manage (a member of its organisation, or an operator);
    NotFound for anyone else and for any other campaign."""
    campaign = db.session.get(Campaign, campaign_id) if valid_id(campaign_id) else None
    if (
        campaign is None
        or not is_patient_aid(campaign)
        or not (_is_operator(user) or is_member(user, campaign.organisation_id))
    ):
        raise NotFound("We could not find that appeal.", code=ErrorCode.NOT_FOUND)
    return campaign


def _reserved(campaign_id: int, *, besides: int | None = None) -> int:
    conditions = [Tranche.campaign_id == campaign_id, Tranche.state.in_(list(RESERVING_STATES))]
    if besides is not None:
        conditions.append(Tranche.id != besides)
    return int(
        db.session.scalar(select(func.coalesce(func.sum(Tranche.amount_amount), 0)).where(*conditions))
    )


def held(campaign: Campaign, *, besides: int | None = None) -> Money:
    """What the appeal holds for tranches: escrow less the tranches requested, in notice or held
    (not counting tranche `besides`)."""
    escrow = ledger.balance_of_escrow(campaign.id, campaign.currency)
    return Money(max(escrow.amount - _reserved(campaign.id, besides=besides), 0), campaign.currency)


def _check_held(campaign: Campaign, amount: Money, *, besides: int | None = None) -> None:
    available = held(campaign, besides=besides)
    if amount > available:
        raise Conflict(
            code=ErrorCode.TRANCHE_ABOVE_HELD,
            field="amount",
            params={"held": available.format(with_code=True), "amount": amount.format(with_code=True)},
        )


def surplus_return_for(campaign_id: int) -> SurplusReturn | None:
    return db.session.scalar(select(SurplusReturn).where(SurplusReturn.campaign_id == campaign_id))


def _check_open_for_tranches(campaign: Campaign) -> None:
    if not is_patient_aid(campaign):
        raise Conflict(code=ErrorCode.NOT_PATIENT_AID)
    if campaign.state is not CampaignState.SETTLED:
        raise Conflict(code=ErrorCode.APPEAL_NOT_SETTLED, params={"state": campaign.state.value})
    if surplus_return_for(campaign.id) is not None:
        raise Conflict(code=ErrorCode.APPEAL_ENDED)


def tranches_of(campaign_id: int) -> list[Tranche]:
    """The appeal's tranches, newest first."""
    return list(
        db.session.scalars(
            select(Tranche).where(Tranche.campaign_id == campaign_id).order_by(Tranche.id.desc())
        )
    )


# --- requesting a tranche ------------------------------------------------------------------
@dataclass
class TrancheRequest:
    """A campaigner's tranche request as the form sent it (parsed by `request_tranche`)."""

    hospital_id: int | None
    #: The hospital that issued the invoice: it must be the one the tranche pays.
    invoice_hospital_id: int | None
    purpose: str
    invoice_number: str
    #: (description, amount as typed) per invoice line; blank lines are skipped.
    items: Sequence[tuple[str, str]]
    #: The invoice file's bytes (checked by content).
    invoice_data: bytes
    #: One per form: the same request sent twice is refused.
    request_key: str
    #: What to pay now, as typed; blank: the invoice's total.
    amount: str = ""
    #: Parsed lines, filled in by `_parse`.
    parsed_items: list[tuple[str, Money]] = field(default_factory=list)


def _parse_items(req: TrancheRequest, currency: str) -> list[tuple[str, Money]]:
    lines = []
    for description, amount in req.items:
        description, amount = _text(description, 200), (amount or "").strip()
        if not description and not amount:
            continue
        try:
            money = Money.parse(amount, currency) if description else None
        except MoneyError:
            money = None
        if money is None or money.amount <= 0:
            raise ValidationError(code=ErrorCode.INVOICE_ITEMS, field="items")
        lines.append((description, money))
    if not lines or len(lines) > MAX_ITEMS:
        raise ValidationError(code=ErrorCode.INVOICE_ITEMS, field="items")
    return lines


def _parse_amount(req: TrancheRequest, total: Money) -> Money:
    if not (req.amount or "").strip():
        return total
    try:
        amount = Money.parse(req.amount, total.currency)
    except MoneyError as exc:
        raise ValidationError(str(exc), code=ErrorCode.AMOUNT, field="amount") from None
    if amount.amount <= 0:
        raise ValidationError("Enter an amount above zero.", code=ErrorCode.AMOUNT, field="amount")
    if amount > total:
        raise ValidationError(
            code=ErrorCode.TRANCHE_ABOVE_INVOICE,
            field="amount",
            params={"total": total.format(with_code=True)},
        )
    return amount


def _existing_request(key: str) -> Tranche | None:
    return db.session.scalar(select(Tranche).where(Tranche.request_key == key))


def _check_key(key: str) -> str:
    key = (key or "").strip()
    if not REQUEST_KEY.fullmatch(key):
        raise ValidationError(code=ErrorCode.IDEMPOTENCY_KEY, field="request_key")
    found = _existing_request(key)
    if found is not None:
        raise Conflict(code=ErrorCode.TRANCHE_DUPLICATE, params={"number": f"#{found.id}"})
    return key


def _check_request(user: User, campaign: Campaign, req: TrancheRequest) -> tuple[Hospital, Money, str, str]:
    """Everything about the request that needs no lock; (hospital, amount, purpose, invoice number)."""
    _check_open_for_tranches(campaign)
    hospital = _hospital(req.hospital_id)
    if not hospital.is_verified:
        raise Conflict(code=ErrorCode.HOSPITAL_NOT_VERIFIED, field="hospital_id")
    if req.invoice_hospital_id != hospital.id:
        raise ValidationError(code=ErrorCode.INVOICE_OTHER_HOSPITAL, field="invoice_hospital_id")
    purpose, number = _text(req.purpose, 300), _text(req.invoice_number, 60)
    if not purpose:
        raise ValidationError("Say what this tranche pays for.", code=ErrorCode.REQUIRED, field="purpose")
    if not number:
        raise ValidationError("Enter the invoice's number.", code=ErrorCode.REQUIRED, field="invoice_number")
    req.parsed_items = _parse_items(req, campaign.currency)
    total = Money(sum(m.amount for _, m in req.parsed_items), campaign.currency)
    return hospital, _parse_amount(req, total), purpose, number


def request_tranche(
    user: User, campaign_id: int, req: TrancheRequest, *, now: datetime | None = None
) -> Tranche:
    """A member of the appeal's organisation asks for a tranche to be paid to a hospital.

    Refused, with nothing stored, for: someone who is not a member (NotFound), an appeal not
    settled or already ended, a hospital not verified, an invoice from another hospital,
    bad invoice lines or file, an amount above the invoice's total or above what the
    appeal holds, and a request key used before.
    """
    now = _now(now)
    campaign = appeal_for(user, campaign_id)
    if not is_member(user, campaign.organisation_id):
        raise NotFound("We could not find that appeal.", code=ErrorCode.NOT_FOUND)
    key = _check_key(req.request_key)
    hospital, amount, purpose, number = _check_request(user, campaign, req)
    checked = invoices.check_invoice(req.invoice_data)
    _check_held(campaign, amount)
    name = invoices.store_invoice(checked)
    try:
        return _record_request(
            user, campaign.id, hospital.id, amount, purpose, number, req, name, checked, key, now
        )
    except BaseException:
        invoices.delete_invoice(name)
        raise


@retry_on_lock
def _record_request(
    user: User,
    campaign_id: int,
    hospital_id: int,
    amount: Money,
    purpose: str,
    number: str,
    req: TrancheRequest,
    file_name: str,
    checked: invoices.CheckedInvoice,
    key: str,
    now: datetime,
) -> Tranche:
    try:
        with unit_of_work():
            campaign = lock_campaign(campaign_id)
            _check_open_for_tranches(campaign)
            _check_key(key)
            _check_held(campaign, amount)
            tranche = Tranche(
                campaign_id=campaign.id,
                hospital_id=hospital_id,
                request_key=key,
                state=TrancheState.REQUESTED,
                amount_amount=amount.amount,
                currency=amount.currency,
                purpose=purpose,
                invoice_number=number,
                invoice_file=file_name,
                invoice_content_type=checked.content_type,
                requested_by_id=user.id,
                requested_at=now,
                updated_at=now,
            )
            tranche.items = [
                InvoiceItem(position=i, description=d, amount_amount=m.amount)
                for i, (d, m) in enumerate(req.parsed_items)
            ]
            db.session.add(tranche)
            db.session.flush()
    except IntegrityError:
        found = _existing_request(key)
        raise Conflict(
            code=ErrorCode.TRANCHE_DUPLICATE, params={"number": f"#{found.id}" if found else ""}
        ) from None
    return tranche


# --- operators' decisions ------------------------------------------------------------------
def _lock_tranche(tranche_id: int) -> tuple[Campaign, Tranche]:
    """Lock the tranche's campaign, then the tranche (the global order)."""
    campaign_id = (
        db.session.scalar(select(Tranche.campaign_id).where(Tranche.id == tranche_id))
        if valid_id(tranche_id)
        else None
    )
    if campaign_id is None:
        raise NotFound(code=ErrorCode.TRANCHE_NOT_FOUND)
    campaign = lock_campaign(campaign_id)
    return campaign, lock(Tranche, tranche_id)


def _wrong_state(tranche: Tranche, action: str) -> Conflict:
    return Conflict(
        code=ErrorCode.TRANCHE_STATE, params={"state": tranche.state.label.lower(), "action": action}
    )


def notice_period() -> timedelta:
    return timedelta(hours=int(current_app.config["PATIENT_AID_NOTICE_HOURS"]))


@retry_on_lock
def approve_tranche(operator: User, tranche_id: int, *, now: datetime | None = None) -> Tranche:
    """An operator approves a requested tranche: its public notice starts now."""
    _operator_only(operator, "approve tranches")
    now = _now(now)
    with unit_of_work():
        campaign, tranche = _lock_tranche(tranche_id)
        if tranche.state is not TrancheState.REQUESTED:
            raise _wrong_state(tranche, "approved")
        if not tranche.hospital.is_verified:
            raise Conflict(code=ErrorCode.HOSPITAL_NOT_VERIFIED)
        _check_held(campaign, tranche.amount, besides=tranche.id)
        tranche.transition_to(TrancheState.IN_NOTICE, now)
        tranche.decided_by_id, tranche.decided_at = operator.id, now
        tranche.notice_ends_at = now + notice_period()
    return tranche


@retry_on_lock
def reject_tranche(operator: User, tranche_id: int, reason: str, *, now: datetime | None = None) -> Tranche:
    """An operator rejects a requested (or held) tranche, with the reason the campaigner reads."""
    _operator_only(operator, "reject tranches")
    reason = (reason or "").strip()
    if not reason or len(reason) > MAX_TEXT:
        raise ValidationError(code=ErrorCode.REJECTION_REASON, field="reason")
    now = _now(now)
    with unit_of_work():
        _, tranche = _lock_tranche(tranche_id)
        if not tranche.can_transition_to(TrancheState.REJECTED):
            raise _wrong_state(tranche, "rejected")
        tranche.transition_to(TrancheState.REJECTED, now)
        tranche.decided_by_id, tranche.decided_at = operator.id, now
        tranche.rejection_reason = reason
    return tranche


# --- reports -------------------------------------------------------------------------------
def open_reports(tranche_id: int) -> list[TrancheReport]:
    return list(
        db.session.scalars(
            select(TrancheReport)
            .where(TrancheReport.tranche_id == tranche_id, TrancheReport.cleared_at.is_(None))
            .order_by(TrancheReport.id)
        )
    )


@retry_on_lock
def report_tranche(user: User, tranche_id: int, reason: str, *, now: datetime | None = None) -> TrancheReport:
    """Someone logged in reports a problem with a tranche in notice: it is held until an
    operator clears it. One report per person and tranche."""
    if user is None or not getattr(user, "is_authenticated", False):
        raise Forbidden("Log in to report a problem.", code=ErrorCode.FORBIDDEN)
    reason = (reason or "").strip()
    if not reason or len(reason) > MAX_TEXT:
        raise ValidationError(code=ErrorCode.REPORT_REASON, field="reason")
    now = _now(now)
    with unit_of_work():
        _, tranche = _lock_tranche(tranche_id)
        if tranche.state not in (TrancheState.IN_NOTICE, TrancheState.HELD):
            raise Conflict(code=ErrorCode.REPORT_CLOSED)
        mine = select(TrancheReport.id).where(
            TrancheReport.tranche_id == tranche.id, TrancheReport.user_id == user.id
        )
        if db.session.scalar(mine) is not None:
            raise Conflict(code=ErrorCode.REPORT_DUPLICATE)
        report = TrancheReport(tranche_id=tranche.id, user_id=user.id, reason=reason, created_at=now)
        db.session.add(report)
        if tranche.state is TrancheState.IN_NOTICE:
            tranche.transition_to(TrancheState.HELD, now)
        db.session.flush()
    return report


@retry_on_lock
def clear_reports(operator: User, tranche_id: int, *, now: datetime | None = None) -> Tranche:
    """An operator looked at the reports and lets the tranche go on (paid once its notice is over)."""
    _operator_only(operator, "clear reports")
    now = _now(now)
    with unit_of_work():
        _, tranche = _lock_tranche(tranche_id)
        if tranche.state is not TrancheState.HELD:
            raise _wrong_state(tranche, "cleared")
        for report in open_reports(tranche.id):
            report.cleared_at, report.cleared_by_id = now, operator.id
        tranche.transition_to(TrancheState.IN_NOTICE, now)
    return tranche


# --- paying --------------------------------------------------------------------------------
def release_key(tranche_id: int) -> str:
    return f"tranche:{tranche_id}:release"


def payout_key(tranche_id: int) -> str:
    return f"tranche:{tranche_id}:payout"


def pay_due_tranches(*, now: datetime | None = None) -> int:
    """Pay every tranche whose notice is over and that nobody reported (and finish those being
    paid); returns how many were paid."""
    now = _now(now)
    ids = list(
        db.session.scalars(
            select(Tranche.id)
            .where(
                (Tranche.state == TrancheState.PAYING)
                | ((Tranche.state == TrancheState.IN_NOTICE) & (Tranche.notice_ends_at <= now))
            )
            .order_by(Tranche.id)
        )
    )
    db.session.rollback()  # a read: end it before the units of work
    return sum(1 for tranche_id in ids if pay_tranche(tranche_id, now=now).state is TrancheState.PAID)


def pay_tranche(tranche_id: int, *, now: datetime | None = None) -> Tranche:
    """Release the tranche from escrow to the hospital and pay it out, each step exactly once."""
    now = _now(now)
    _release(tranche_id, now)
    tranche = _fresh(tranche_id)
    if tranche.state is not TrancheState.PAYING:
        return tranche
    op = payments.find_operation(payout_key(tranche.id))
    try:
        if op is None:
            op = payments.payout(
                organisation_id=db.session.get(Campaign, tranche.campaign_id).organisation_id,
                provider_id=tranche.hospital_id,
                amount=tranche.amount,
                idempotency_key=payout_key(tranche.id),
                destination=tranche.hospital.account_id,
                campaign_id=tranche.campaign_id,
                description=f"Tranche #{tranche.id} to {tranche.hospital.name}",
            )
        elif op.state is OperationState.PENDING:
            op = payments.reconcile_operation(op)
    except DomainError as exc:
        return _set_status(tranche_id, exc.code)
    if op.state is OperationState.SUCCEEDED:
        return _record_paid(tranche_id, op, now)
    return _set_status(tranche_id, op.error_code or ErrorCode.FAILED)


def _fresh(tranche_id: int) -> Tranche:
    return db.session.execute(
        select(Tranche).where(Tranche.id == tranche_id).execution_options(populate_existing=True)
    ).scalar_one()


@retry_on_lock
def _release(tranche_id: int, now: datetime) -> None:
    with unit_of_work():
        campaign, tranche = _lock_tranche(tranche_id)
        if tranche.state is not TrancheState.IN_NOTICE or tranche.notice_ends_at > now:
            return
        if open_reports(tranche.id):
            return  # reported: held until an operator clears it
        postings.release_to_provider(
            campaign_id=campaign.id,
            provider_id=tranche.hospital_id,
            amount=tranche.amount,
            key=release_key(tranche.id),
        )
        tranche.transition_to(TrancheState.PAYING, now)
        tranche.status_code = None


@retry_on_lock
def _set_status(tranche_id: int, code: ErrorCode | str) -> Tranche:
    with unit_of_work():
        _, tranche = _lock_tranche(tranche_id)
        tranche.status_code = str(code)
    return tranche


@retry_on_lock
def _record_paid(tranche_id: int, op: PaymentOperation, now: datetime) -> Tranche:
    with unit_of_work():
        _, tranche = _lock_tranche(tranche_id)
        if tranche.state is TrancheState.PAYING:
            tranche.transition_to(TrancheState.PAID, now)
            tranche.paid_at, tranche.payout_operation_id, tranche.status_code = now, op.id, None
    return tranche


# --- the public notice ---------------------------------------------------------------------
@dataclass(frozen=True)
class PublicTranche:
    """A tranche as the campaign page shows it: no invoice file, no patient's name."""

    id: int
    amount: Money
    hospital: str
    city: str
    purpose: str
    state: TrancheState
    notice_ends_at: datetime | None
    paid_at: datetime | None
    #: (description, amount) of each invoice line, the patient's name masked.
    items: list[tuple[str, Money]]

    @property
    def in_notice(self) -> bool:
        return self.state in (TrancheState.IN_NOTICE, TrancheState.HELD)


def _redactor(terms: DonationTerms | None):
    """A function masking the patient's name (in full and each part of it) in a text."""
    name = (terms.patient_name or "").strip() if terms is not None else ""
    if not name:
        return lambda text: text
    parts = sorted({name, *(p for p in name.split() if len(p) >= 2)}, key=len, reverse=True)
    pattern = re.compile("|".join(re.escape(p) for p in parts), re.I)
    return lambda text: pattern.sub(lambda m: mask_name(m.group(0)), text)


def public_tranches(campaign: Campaign) -> list[PublicTranche]:
    """The appeal's approved tranches for its public page (in notice first, then paid), redacted."""
    if campaign.kind is not CampaignKind.DONATION or not is_patient_aid(campaign):
        return []
    redact = _redactor(campaign.donation_terms)
    rows = db.session.scalars(
        select(Tranche)
        .where(Tranche.campaign_id == campaign.id, Tranche.state.in_(list(PUBLIC_STATES)))
        .order_by(Tranche.id.desc())
        .limit(100)
    ).all()
    shown = [
        PublicTranche(
            id=t.id,
            amount=t.amount,
            hospital=t.hospital.name,
            city=t.hospital.city,
            purpose=redact(t.purpose),
            state=t.state,
            notice_ends_at=t.notice_ends_at,
            paid_at=t.paid_at,
            items=[(redact(i.description), i.amount) for i in t.items],
        )
        for t in rows
    ]
    return sorted(shown, key=lambda p: not p.in_notice)


def tranche_for_viewer(user: User | None, tranche_id: int) -> Tranche:
    """A tranche its appeal's organisation members and operators may see (invoice and all);
    NotFound for anyone else."""
    tranche = db.session.get(Tranche, tranche_id) if valid_id(tranche_id) else None
    if tranche is None:
        raise NotFound(code=ErrorCode.TRANCHE_NOT_FOUND)
    campaign = db.session.get(Campaign, tranche.campaign_id)
    if not (_is_operator(user) or is_member(user, campaign.organisation_id)):
        raise NotFound(code=ErrorCode.TRANCHE_NOT_FOUND)
    return tranche


def reportable_tranche(tranche_id: int) -> Tranche:
    """A tranche the public can see (to report a problem with); NotFound otherwise."""
    tranche = db.session.get(Tranche, tranche_id) if valid_id(tranche_id) else None
    if tranche is None or tranche.state not in PUBLIC_STATES:
        raise NotFound(code=ErrorCode.TRANCHE_NOT_FOUND)
    return tranche


def operator_queue() -> list[Tranche]:
    """Tranches waiting for an operator: requested, or held by a report; oldest first."""
    return list(
        db.session.scalars(
            select(Tranche)
            .where(Tranche.state.in_([TrancheState.REQUESTED, TrancheState.HELD]))
            .order_by(Tranche.id)
        )
    )


# --- the end of the appeal: surplus back to the donors ------------------------------------
def _donations(campaign_id: int) -> list[tuple[int, int]]:
    """(pledge id, what it still counts) of every collected donation, by pledge id."""
    rows = db.session.execute(
        select(Pledge.id, Pledge.amount_amount - Pledge.refunded_amount)
        .where(Pledge.campaign_id == campaign_id, Pledge.state == PledgeState.CHARGED)
        .order_by(Pledge.id)
    ).all()
    return [(pledge_id, int(net)) for pledge_id, net in rows if net > 0]


def _open_tranches(campaign_id: int) -> bool:
    return bool(
        db.session.scalar(
            select(func.count(Tranche.id)).where(
                Tranche.campaign_id == campaign_id, Tranche.state.in_(list(OPEN_STATES))
            )
        )
    )


@retry_on_lock
def _open_return(campaign_id: int, reason: SurplusReason, user: User | None, now: datetime) -> SurplusReturn:
    with unit_of_work():
        campaign = lock_campaign(campaign_id)
        existing = surplus_return_for(campaign.id)
        if existing is not None:
            if user is not None:
                raise Conflict(code=ErrorCode.APPEAL_ENDED)
            return existing
        if not is_patient_aid(campaign):
            raise Conflict(code=ErrorCode.NOT_PATIENT_AID)
        if campaign.state is not CampaignState.SETTLED:
            raise Conflict(code=ErrorCode.APPEAL_NOT_SETTLED, params={"state": campaign.state.value})
        if _open_tranches(campaign.id):
            raise Conflict(code=ErrorCode.TRANCHES_OPEN)
        gifts = _donations(campaign.id)
        escrow = ledger.balance_of_escrow(campaign.id, campaign.currency)
        surplus = Money(min(escrow.amount, sum(net for _, net in gifts)), campaign.currency)
        record = SurplusReturn(
            campaign_id=campaign.id,
            reason=reason,
            ended_by_id=user.id if user is not None else None,
            surplus_amount=surplus.amount,
            currency=surplus.currency,
            created_at=now,
            finished_at=None if surplus.amount else now,
        )
        db.session.add(record)
        db.session.flush()
        if surplus.amount:
            parts = surplus.allocate([net for _, net in gifts])
            db.session.add_all(
                SurplusRefund(surplus_return_id=record.id, pledge_id=pledge_id, amount_amount=part.amount)
                for (pledge_id, _), part in zip(gifts, parts, strict=True)
                if part.amount
            )
            db.session.flush()
    return record


def end_appeal(user: User, campaign_id: int, *, now: datetime | None = None) -> SurplusReturn:
    """A member of the appeal's organisation (or an operator) says the treatment is finished:
    what escrow still holds is returned to the donors pro rata, now."""
    now = _now(now)
    campaign = appeal_for(user, campaign_id)
    record = _open_return(campaign.id, SurplusReason.TREATMENT_FINISHED, user, now)
    return return_surplus(record.id, now=now)


def end_due_appeals(*, now: datetime | None = None) -> int:
    """End every settled patient-aid appeal PATIENT_AID_SURPLUS_DAYS after its close (when no
    tranche is open) and return its surplus; returns how many ended."""
    now = _now(now)
    cutoff = now - timedelta(days=int(current_app.config["PATIENT_AID_SURPLUS_DAYS"]))
    ids = list(
        db.session.scalars(
            select(Campaign.id)
            .join(DonationTerms, DonationTerms.campaign_id == Campaign.id)
            .where(
                DonationTerms.is_patient_aid.is_(True),
                Campaign.state == CampaignState.SETTLED,
                Campaign.closed_at <= cutoff,
                ~exists().where(SurplusReturn.campaign_id == Campaign.id),
                ~exists().where(Tranche.campaign_id == Campaign.id, Tranche.state.in_(list(OPEN_STATES))),
            )
            .order_by(Campaign.id)
        )
    )
    db.session.rollback()
    for campaign_id in ids:
        record = _open_return(campaign_id, SurplusReason.PERIOD_OVER, None, now)
        return_surplus(record.id, now=now)
    return len(ids)


def finish_surplus_returns(*, now: datetime | None = None) -> int:
    """Refund what earlier runs left (gateway down, crash); returns how many returns finished."""
    now = _now(now)
    ids = list(
        db.session.scalars(
            select(SurplusReturn.id).where(SurplusReturn.finished_at.is_(None)).order_by(SurplusReturn.id)
        )
    )
    db.session.rollback()
    return sum(1 for return_id in ids if return_surplus(return_id, now=now).finished_at is not None)


def return_surplus(return_id: int, *, now: datetime | None = None) -> SurplusReturn:
    """Refund each donation's part of the surplus not refunded yet, each exactly once by its key."""
    now = _now(now)
    part_ids = list(
        db.session.scalars(
            select(SurplusRefund.id)
            .where(SurplusRefund.surplus_return_id == return_id, SurplusRefund.refunded_at.is_(None))
            .order_by(SurplusRefund.id)
        )
    )
    for part_id in part_ids:
        _refund_part(part_id, now)
    return _finish_return(return_id, now)


def _refund_part(part_id: int, now: datetime) -> None:
    part = db.session.get(SurplusRefund, part_id)
    pledge = db.session.get(Pledge, part.pledge_id)
    charge = db.session.get(PaymentOperation, pledge.payment_operation_id)
    try:
        op = payments.refund(
            operation=charge,
            amount=Money(part.amount_amount, charge.currency),
            idempotency_key=part.key,
            reason="patient_aid_surplus",
        )
    except DomainError as exc:
        _part_status(part_id, exc.code)
        return
    if op.state is not OperationState.SUCCEEDED:
        _part_status(part_id, op.error_code or ErrorCode.FAILED)
        return
    donations.record_refund(pledge.id, now=now)
    _part_refunded(part_id, op, now)


@retry_on_lock
def _part_status(part_id: int, code: ErrorCode | str) -> None:
    with unit_of_work():
        part = lock(SurplusRefund, part_id)
        part.status_code = str(code)


@retry_on_lock
def _part_refunded(part_id: int, op: PaymentOperation, now: datetime) -> None:
    with unit_of_work():
        part = lock(SurplusRefund, part_id)
        if part.refunded_at is None:
            part.refunded_at, part.refund_operation_id, part.status_code = now, op.id, None


@retry_on_lock
def _finish_return(return_id: int, now: datetime) -> SurplusReturn:
    with unit_of_work():
        record = lock(SurplusReturn, return_id)
        left = db.session.scalar(
            select(func.count(SurplusRefund.id)).where(
                SurplusRefund.surplus_return_id == return_id, SurplusRefund.refunded_at.is_(None)
            )
        )
        if record.finished_at is None and not left:
            record.finished_at = now
    return record
