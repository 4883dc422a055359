"""Equity pages: the organisation's cap table (page, CSV, pre-round shares), an investor's
subscription certificate (PDF), amending a live round, and reconfirming or declining.

Cap tables are for the organisation's members and operators (others get 404); a
certificate and a reconfirmation are the investor's own (others get 404). My pledges
(the engine's page) shows holdings, reconfirmations and notices through the template
global `equity_for_backer`, so the engine never imports this package.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from flask import Blueprint, Response, abort, flash, redirect, render_template, request, url_for
from flask_login import current_user, login_required

from crowdfund.campaigns.access import is_member
from crowdfund.campaigns.models import Campaign
from crowdfund.engine.models import Pledge
from crowdfund.equity import amendments, service
from crowdfund.equity.forms import AmendRoundForm, PreRoundSharesForm
from crowdfund.equity.models import InvestorNotice, Reconfirmation, ShareHolding
from crowdfund.errors import DomainError
from crowdfund.extensions import db
from crowdfund.receipts.pdf import document
from crowdfund.web.csv_files import csv_download

bp = Blueprint("equity", __name__)


@dataclass
class EquityView:
    holdings: dict[int, ShareHolding] = field(default_factory=dict)
    reconfirmations: dict[int, Reconfirmation] = field(default_factory=dict)
    notices: list[InvestorNotice] = field(default_factory=list)


@bp.app_template_global()
def equity_for_backer(pledges: Iterable[Pledge]) -> EquityView:
    """The current user's holdings and pending reconfirmations for `pledges`, and their notices."""
    ids = [p.id for p in pledges]
    if not current_user.is_authenticated:
        return EquityView()
    return EquityView(
        holdings=service.holdings_for_pledges(ids),
        reconfirmations=amendments.pending_for_pledges(ids),
        notices=service.notices_for(current_user),
    )


# ---------------------------------------------------------------------------
# Cap table
# ---------------------------------------------------------------------------


def _cap_table_or_404(organisation_id: int) -> service.CapTable:
    try:
        return service.cap_table_for(current_user, organisation_id)
    except DomainError:
        abort(404)


@bp.route("/organisations/<int:organisation_id>/cap-table", methods=["GET", "POST"])
@login_required
def cap_table(organisation_id: int):
    table = _cap_table_or_404(organisation_id)
    form = PreRoundSharesForm()
    status = 200
    if request.method == "POST":
        status = 422
        if form.validate_on_submit():
            try:
                service.set_pre_round_shares(current_user, organisation_id, form.shares.data)
            except DomainError as exc:
                if exc.status == 404:
                    abort(404)
                form.shares.errors.append(exc.message)
            else:
                flash("Pre-round shares saved: percentages are now of the whole company.", "success")
                return redirect(url_for("equity.cap_table", organisation_id=organisation_id), 303)
    elif table.pre_round is not None:
        form.shares.data = str(table.pre_round)
    can_edit = is_member(current_user, organisation_id)
    return render_template("equity/cap_table.html", table=table, form=form, can_edit=can_edit), status


@bp.route("/organisations/<int:organisation_id>/cap-table.csv")
@login_required
def cap_table_csv(organisation_id: int):
    table = _cap_table_or_404(organisation_id)
    return csv_download(table.csv_rows(), f"cap-table-{organisation_id}.csv")


# ---------------------------------------------------------------------------
# Certificates
# ---------------------------------------------------------------------------


def certificate_pdf(h: ShareHolding) -> bytes:
    tx = h.ledger_transaction
    rows = [
        ("Certificate number", h.certificate_number),
        ("Issuer", h.organisation.legal_name),
        ("Holder", h.holder_name),
        ("Shares", f"{h.shares:,}"),
        ("Price per share", h.price.format()),
        ("Paid", h.paid.format()),
        ("Round", h.campaign.title),
        ("Date of issue", h.issued_at.strftime("%d %B %Y")),
        ("Ledger transaction", tx.key if tx is not None else "-"),
        ("Transaction hash", tx.hash if tx is not None else "-"),
    ]
    return document(
        "Subscription certificate",
        f"{h.organisation.legal_name} has issued the shares below to {h.holder_name}.",
        rows,
        "The payment for these shares is the ledger transaction above; anyone can check it in "
        "HealthFund's public, hash-chained ledger.",
    )


@bp.route("/my/certificates/<int:holding_id>.pdf")
@login_required
def certificate(holding_id: int):
    try:
        holding = service.own_holding(current_user, holding_id)
    except DomainError:
        abort(404)
    return Response(
        certificate_pdf(holding),
        mimetype="application/pdf",
        headers={
            "Content-Disposition": f'attachment; filename="certificate-{holding.certificate_number}.pdf"'
        },
    )


# ---------------------------------------------------------------------------
# Amending a live round; reconfirming
# ---------------------------------------------------------------------------


def _amendable_or_404(campaign_id: int) -> Campaign:
    campaign = db.session.get(Campaign, campaign_id)
    if campaign is None or not amendments.can_amend(current_user, campaign):
        abort(404)
    return campaign


@bp.route("/studio/<int:campaign_id>/amend-round", methods=["GET", "POST"])
@login_required
def amend_round(campaign_id: int):
    """Change a live equity round's terms; committed investors are asked to reconfirm."""
    campaign = _amendable_or_404(campaign_id)
    form = AmendRoundForm()
    status = 200
    if request.method == "POST":
        status = 422
        if form.validate_on_submit():
            try:
                amendment = amendments.amend_round(current_user, campaign.id, dict(request.form))
            except DomainError as exc:
                if exc.status == 404:
                    abort(404)
                _show_errors(form, exc)
            else:
                flash(
                    f"Terms amended: {amendment.asked} investors were asked to reconfirm by "
                    f"{amendment.reconfirm_by:%d %b %Y %H:%M} UTC.",
                    "success",
                )
                return redirect(url_for("equity.amend_round", campaign_id=campaign.id), 303)
    elif campaign.equity_terms is not None:
        t = campaign.equity_terms
        form.security_type.data = t.security_type.value
        for name in ("price_per_share", "pre_money_valuation", "max_target", "min_investment"):
            getattr(form, name).data = t.money(name).format_plain()
    return render_template("equity/amend.html", campaign=campaign, form=form), status


def _show_errors(form: AmendRoundForm, exc: DomainError) -> None:
    """Each field's message next to it (a `DraftInvalid` has several), the summary on top."""
    for name, message in getattr(exc, "errors", {}).items():
        if name in form._fields:
            form[name].errors.append(message)
    form.form_errors.append(exc.message)


def _answer(pledge_id: int, use_case, done: str):
    try:
        use_case(current_user, pledge_id)
    except DomainError as exc:
        if exc.status == 404:
            abort(404)
        flash(exc.message, "danger")
    else:
        flash(done, "success")
    return redirect(url_for("engine.my_pledges") + f"#pledge-{pledge_id}", 303)


@bp.route("/pledges/<int:pledge_id>/reconfirm", methods=["POST"])
@login_required
def reconfirm(pledge_id: int):
    return _answer(pledge_id, amendments.reconfirm, "Thank you: your commitment stands at the new terms.")


@bp.route("/pledges/<int:pledge_id>/decline", methods=["POST"])
@login_required
def decline(pledge_id: int):
    return _answer(pledge_id, amendments.decline, "Your commitment was cancelled; nothing was charged.")
