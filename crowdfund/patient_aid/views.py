"""Patient-aid pages: operators' hospitals and tranche queue; the appeal's tranches for its
organisation's members (request with the invoice, end the appeal); the invoice download
(members and operators only, as an attachment; anyone else 404); the report form; and the
template global `tranche_notices` the public campaign page shows."""

from __future__ import annotations

from flask import Blueprint, abort, flash, redirect, render_template, request, send_file, url_for
from flask_login import current_user, login_required

from crowdfund.accounts.permissions import operator_required
from crowdfund.campaigns.models import Campaign
from crowdfund.errors import DomainError
from crowdfund.extensions import db
from crowdfund.patient_aid import invoices, service
from crowdfund.patient_aid.forms import (
    ITEM_ROWS,
    ConfirmForm,
    HospitalForm,
    RejectForm,
    ReportForm,
    TrancheForm,
    new_request_key,
)
from crowdfund.patient_aid.models import TrancheState
from crowdfund.web.converters import parse_id

bp = Blueprint("patient_aid", __name__)


@bp.app_template_global()
def tranche_notices(campaign: Campaign) -> list[service.PublicTranche]:
    """A patient-aid appeal's approved tranches for its public page (redacted)."""
    return service.public_tranches(campaign)


@bp.app_template_global()
def manages_appeal(campaign: Campaign) -> bool:
    """Whether the current user may see the appeal's tranches (its members, operators)."""
    if not current_user.is_authenticated or not service.is_patient_aid(campaign):
        return False
    return bool(current_user.is_operator or service.is_member(current_user, campaign.organisation_id))


def _refused(form, exc: DomainError) -> int:
    field = getattr(form, exc.field, None) if exc.field else None
    if field is not None and hasattr(field, "errors"):
        field.errors = [*field.errors, exc.message]
    else:
        form.form_errors.append(exc.message)
    return exc.status if 400 <= exc.status < 500 else 409


# --- operators: hospitals --------------------------------------------------------------------
def _render_hospitals(form: HospitalForm | None = None, status: int = 200):
    return (
        render_template(
            "patient_aid/hospitals.html",
            hospitals=service.hospitals(),
            form=form or HospitalForm(formdata=None),
            confirm=ConfirmForm(formdata=None),
        ),
        status,
    )


@bp.route("/operator/hospitals", methods=["GET", "POST"])
@operator_required
def hospitals():
    if request.method == "GET":
        return _render_hospitals()
    form = HospitalForm()
    if not form.validate_on_submit():
        return _render_hospitals(form, 422)
    details = service.HospitalDetails(
        name=form.name.data,
        licence_number=form.licence_number.data,
        city=form.city.data,
        country=form.country.data or "CN",
        bank_name=form.bank_name.data or "",
        account_number=form.account_number.data or "",
        account_id=form.account_id.data or "",
    )
    try:
        hospital = service.register_hospital(current_user, details)
    except DomainError as exc:
        return _render_hospitals(form, _refused(form, exc))
    flash(f"{hospital.name} is registered. Check its licence and bank, then verify it.", "success")
    return redirect(url_for("patient_aid.hospitals"), 303)


@bp.route("/operator/hospitals/<int:hospital_id>/verify", methods=["POST"])
@operator_required
def verify_hospital(hospital_id: int):
    if not ConfirmForm().validate_on_submit():
        abort(400)
    try:
        hospital = service.verify_hospital(current_user, hospital_id)
    except DomainError as exc:
        if exc.status == 404:
            abort(404)
        flash(exc.message, "danger")
    else:
        flash(f"{hospital.name} is verified: tranches can be paid to it.", "success")
    return redirect(url_for("patient_aid.hospitals"), 303)


# --- operators: the tranche queue -------------------------------------------------------------
def _render_queue(reject: RejectForm | None = None, rejecting: int | None = None, status: int = 200):
    queue = service.operator_queue()
    return (
        render_template(
            "patient_aid/operator_tranches.html",
            tranches=queue,
            reports={t.id: service.open_reports(t.id) for t in queue},
            confirm=ConfirmForm(formdata=None),
            reject=reject or RejectForm(formdata=None),
            rejecting=rejecting,
            held={t.campaign_id: service.held(db_campaign(t.campaign_id)) for t in queue},
        ),
        status,
    )


def db_campaign(campaign_id: int) -> Campaign:
    return db.session.get(Campaign, campaign_id)


@bp.route("/operator/tranches")
@operator_required
def operator_tranches():
    return _render_queue()


def _decide(tranche_id: int, action):
    try:
        action(tranche_id)
    except DomainError as exc:
        if exc.status == 404:
            abort(404)
        flash(exc.message, "danger")
        return False
    return True


@bp.route("/operator/tranches/<int:tranche_id>/approve", methods=["POST"])
@operator_required
def approve(tranche_id: int):
    if not ConfirmForm().validate_on_submit():
        abort(400)
    if _decide(tranche_id, lambda i: service.approve_tranche(current_user, i)):
        flash(f"Tranche #{tranche_id} is approved: its public notice has started.", "success")
    return redirect(url_for("patient_aid.operator_tranches"), 303)


@bp.route("/operator/tranches/<int:tranche_id>/reject", methods=["POST"])
@operator_required
def reject(tranche_id: int):
    form = RejectForm()
    if not form.validate_on_submit():
        return _render_queue(form, tranche_id, 422)
    try:
        service.reject_tranche(current_user, tranche_id, form.reason.data)
    except DomainError as exc:
        if exc.status == 404:
            abort(404)
        return _render_queue(form, tranche_id, _refused(form, exc))
    flash(f"Tranche #{tranche_id} is rejected.", "success")
    return redirect(url_for("patient_aid.operator_tranches"), 303)


@bp.route("/operator/tranches/<int:tranche_id>/clear", methods=["POST"])
@operator_required
def clear(tranche_id: int):
    if not ConfirmForm().validate_on_submit():
        abort(400)
    if _decide(tranche_id, lambda i: service.clear_reports(current_user, i)):
        flash(
            f"The reports on tranche #{tranche_id} are cleared: it is paid once its notice is over.",
            "success",
        )
    return redirect(url_for("patient_aid.operator_tranches"), 303)


# --- the appeal's members ---------------------------------------------------------------------
def _appeal_or_404(campaign_id: int) -> Campaign:
    try:
        return service.appeal_for(current_user, campaign_id)
    except DomainError:
        abort(404)


def _tranche_form(form: TrancheForm | None = None) -> TrancheForm:
    form = form or TrancheForm(formdata=None)
    choices = [("", "Choose a verified hospital")] + [
        (str(h.id), f"{h.name} ({h.city})") for h in service.verified_hospitals()
    ]
    form.hospital_id.choices = choices
    form.invoice_hospital_id.choices = choices
    if not form.key.data:
        form.key.data = new_request_key()
    return form


def _render_appeal(campaign: Campaign, form: TrancheForm | None = None, status: int = 200, rows=None):
    is_member = service.is_member(current_user, campaign.organisation_id)
    return (
        render_template(
            "patient_aid/appeal.html",
            campaign=campaign,
            held=service.held(campaign),
            tranches=service.tranches_of(campaign.id),
            surplus=service.surplus_return_for(campaign.id),
            form=_tranche_form(form),
            rows=rows or [("", "")] * ITEM_ROWS,
            confirm=ConfirmForm(formdata=None),
            can_request=is_member,
            states=TrancheState,
        ),
        status,
    )


@bp.route("/appeals/<int:campaign_id>/tranches")
@login_required
def appeal(campaign_id: int):
    return _render_appeal(_appeal_or_404(campaign_id))


def _item_rows() -> list[tuple[str, str]]:
    descriptions = request.form.getlist("item_description")[:50]
    amounts = request.form.getlist("item_amount")[:50]
    width = max(len(descriptions), len(amounts))
    descriptions += [""] * (width - len(descriptions))
    amounts += [""] * (width - len(amounts))
    return [(d[:200], a[:40]) for d, a in zip(descriptions, amounts, strict=True)]


@bp.route("/appeals/<int:campaign_id>/tranches", methods=["POST"])
@login_required
def request_tranche(campaign_id: int):
    campaign = _appeal_or_404(campaign_id)
    form = _tranche_form(TrancheForm())
    rows = _item_rows()
    if not form.validate_on_submit():
        return _render_appeal(campaign, form, 422, rows)
    upload = request.files.get("invoice_file")
    try:
        data = invoices.read_upload(upload)
        tranche = service.request_tranche(
            current_user,
            campaign.id,
            service.TrancheRequest(
                hospital_id=parse_id(form.hospital_id.data),
                invoice_hospital_id=parse_id(form.invoice_hospital_id.data),
                purpose=form.purpose.data or "",
                invoice_number=form.invoice_number.data or "",
                items=rows,
                invoice_data=data,
                request_key=form.key.data or "",
                amount=form.amount.data or "",
            ),
        )
    except DomainError as exc:
        if exc.status == 404 and exc.field is None:
            abort(404)
        return _render_appeal(campaign, form, _refused(form, exc), rows)
    flash(
        f"Tranche #{tranche.id} of {tranche.amount.format(with_code=True)} is requested; an operator will check "
        "the invoice.",
        "success",
    )
    return redirect(url_for("patient_aid.appeal", campaign_id=campaign.id), 303)


@bp.route("/appeals/<int:campaign_id>/end", methods=["POST"])
@login_required
def end_appeal(campaign_id: int):
    campaign = _appeal_or_404(campaign_id)
    if not ConfirmForm().validate_on_submit():
        abort(400)
    try:
        record = service.end_appeal(current_user, campaign.id)
    except DomainError as exc:
        flash(exc.message, "danger")
    else:
        flash(
            f"The appeal has ended: {record.surplus.format(with_code=True)} goes back to the donors pro rata.",
            "success",
        )
    return redirect(url_for("patient_aid.appeal", campaign_id=campaign.id), 303)


@bp.route("/tranches/<int:tranche_id>/invoice")
@login_required
def invoice(tranche_id: int):
    try:
        tranche = service.tranche_for_viewer(current_user, tranche_id)
    except DomainError:
        abort(404)
    path = invoices.invoice_path(tranche.invoice_file)
    if path is None:
        abort(404)
    extension = path.suffix.lstrip(".")
    response = send_file(
        path,
        mimetype=tranche.invoice_content_type,
        as_attachment=True,
        download_name=f"invoice-tranche-{tranche.id}.{extension}",
        max_age=0,
    )
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Cache-Control"] = "no-store"
    return response


# --- anyone logged in: report a problem -------------------------------------------------------
@bp.route("/tranches/<int:tranche_id>/report", methods=["GET", "POST"])
@login_required
def report(tranche_id: int):
    try:
        tranche = service.reportable_tranche(tranche_id)
    except DomainError:
        abort(404)
    campaign = db_campaign(tranche.campaign_id)
    form = ReportForm()
    status = 200
    if request.method == "POST":
        status = 422
        if form.validate_on_submit():
            try:
                service.report_tranche(current_user, tranche.id, form.reason.data)
            except DomainError as exc:
                status = _refused(form, exc)
            else:
                flash(
                    "Thank you: the payment is held until an operator has looked at your report.", "success"
                )
                return redirect(url_for("public.campaign", slug=campaign.slug), 303)
    notice = next((n for n in service.public_tranches(campaign) if n.id == tranche.id), None)
    return render_template("patient_aid/report.html", campaign=campaign, notice=notice, form=form), status
