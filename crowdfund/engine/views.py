"""Pledge pages: back a campaign (form → review → confirm), my pledges, change and cancel,
the investor profile, and the campaigner's dashboard with the backer CSV export."""

from __future__ import annotations

from datetime import datetime

from flask import Blueprint, abort, current_app, flash, redirect, render_template, request, url_for
from flask_login import current_user, login_required

from crowdfund.accounts.views import safe_next_url
from crowdfund.campaigns.kinds import INVESTMENT_CANCELLATION_CUTOFF, kind_rules
from crowdfund.campaigns.models import Campaign, CampaignKind
from crowdfund.engine import reports, service
from crowdfund.engine.forms import (
    NO_REWARD,
    ChangePledgeForm,
    DebtPledgeForm,
    DonationForm,
    EquityPledgeForm,
    InvestorProfileForm,
    RewardPledgeForm,
    new_form_token,
    parse_money,
)
from crowdfund.engine.models import Pledge, PledgeState
from crowdfund.engine.schedule import add_months, repayment_schedule
from crowdfund.errors import DomainError
from crowdfund.extensions import db
from crowdfund.models_base import utcnow
from crowdfund.money import CURRENCIES, Money
from crowdfund.public import queries as catalogue

bp = Blueprint("engine", __name__)


FORMS = {
    CampaignKind.REWARD: RewardPledgeForm,
    CampaignKind.EQUITY: EquityPledgeForm,
    CampaignKind.DEBT: DebtPledgeForm,
    CampaignKind.DONATION: DonationForm,
}
#: Which form field shows a service error about a request field.
FIELD_FOR = {"tier_id": "tier", "risk_acknowledged": "risk", "idempotency_token": None}


# ---------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------


@bp.app_template_global()
def cancellation_deadline_for(campaign: Campaign) -> datetime:
    """When equity and debt commitments to `campaign` stop being cancellable."""
    return campaign.end_at - INVESTMENT_CANCELLATION_CUTOFF


def _campaign(slug: str) -> Campaign:
    campaign = catalogue.campaign_by_slug(slug)
    if campaign is None or not catalogue.can_view(campaign, current_user):
        abort(404)
    return campaign


def _add_card_url() -> str | None:
    return url_for("payments.add_method", next=request.full_path.rstrip("?"))


def _usable_methods(user) -> list:
    from crowdfund.payments import service as payments

    now = utcnow()
    return [m for m in payments.list_payment_methods(user) if m.is_usable and not m.is_expired_at(now)]


def _fill_methods(form, user) -> None:
    from crowdfund.payments import service as payments

    methods = _usable_methods(user)
    form.payment_method_id.choices = [(str(m.id), m.label) for m in methods]
    if not form.payment_method_id.data or form.payment_method_id.data == "None":
        default = payments.default_payment_method(user)
        form.payment_method_id.data = str(default.id) if default else (str(methods[0].id) if methods else "")


def _attach_error(form, error: DomainError) -> None:
    """Show a service error next to its field, or above the form."""
    name = FIELD_FOR.get(error.field, error.field) if error.field else None
    if isinstance(form, EquityPledgeForm) and name == "amount":
        name = "shares"
    field = getattr(form, name, None) if name else None
    if field is not None and hasattr(field, "errors") and not isinstance(field.errors, tuple):
        field.errors.append(error.message)
    else:
        form.form_errors.append(error.message)


def _tier_choices(campaign: Campaign) -> list[tuple[str, str]]:
    return [(str(t.id), t.title) for t in campaign.tiers] + [(NO_REWARD, "No reward")]


def _form_for(campaign: Campaign, **kwargs):
    form = FORMS[campaign.kind](**kwargs)
    if kind_rules(campaign).has_tiers:
        form.tier.choices = _tier_choices(campaign)
    _fill_methods(form, current_user)
    return form


def _debt_schedule(campaign: Campaign, amount: Money | None) -> dict | None:
    """A debt campaign's repayment schedule for `amount` (None for the other kinds)."""
    terms = campaign.debt_terms
    if terms is None:
        return None
    principal = amount or Money(terms.min_loan_share_amount, campaign.currency)
    first_due = add_months(campaign.end_at.date(), 1)
    return {
        "principal": principal,
        "rows": repayment_schedule(principal, terms.annual_rate_bp, terms.term_months, first_due),
    }


def _render_form(campaign: Campaign, form, now: datetime, status: int = 200):
    summary = None
    if kind_rules(campaign).investment:
        summary = service.investment_summary(current_user, now=now)
    return (
        render_template(
            "engine/back.html",
            campaign=campaign,
            form=form,
            now=now,
            is_open=campaign.is_open_at(now),
            add_card_url=_add_card_url(),
            has_card=bool(form.payment_method_id.choices),
            investment=summary,
            investor_url=url_for("engine.investor_profile", next=request.full_path.rstrip("?")),
            cancel_cutoff_hours=int(INVESTMENT_CANCELLATION_CUTOFF.total_seconds() // 3600),
            investment_deadline=campaign.end_at - INVESTMENT_CANCELLATION_CUTOFF,
            schedule=_debt_schedule(campaign, None),
        ),
        status,
    )


def _parsed_request(campaign: Campaign, form):
    """The PledgeRequest of a posted form, or None when the form has errors."""
    valid = form.validate()
    req = form.to_request(campaign.currency) if valid else None
    return req


# ---------------------------------------------------------------------------
# Backing a campaign: form → review → confirm
# ---------------------------------------------------------------------------


@bp.route("/campaigns/<slug>/back", methods=["GET", "POST"])
@login_required
def back(slug: str):
    """The pledge form for the campaign's kind (POST: back from the review step to edit)."""
    campaign = _campaign(slug)
    now = utcnow()
    if not campaign.is_open_at(now):
        try:
            service.check_open(campaign, now)
        except DomainError as exc:
            flash(exc.message, "warning")
        return redirect(url_for("public.campaign", slug=campaign.slug))
    form = _form_for(campaign)
    if request.method == "GET" and kind_rules(campaign).has_tiers:
        form.tier.data = request.args.get("tier") or (
            str(campaign.tiers[0].id) if campaign.tiers else NO_REWARD
        )
        form.quantity.data = 1
    form.ensure_token()
    return _render_form(campaign, form, now)


@bp.route("/campaigns/<slug>/back/review", methods=["POST"])
@login_required
def review(slug: str):
    """Exactly what confirming will do; nothing is written yet."""
    campaign = _campaign(slug)
    now = utcnow()
    form = _form_for(campaign)
    form.ensure_token()
    req = _parsed_request(campaign, form)
    if req is None:
        return _render_form(campaign, form, now, 422)
    try:
        preview = service.preview_pledge(current_user, campaign.id, req, now=now)
    except DomainError as exc:
        _attach_error(form, exc)
        return _render_form(campaign, form, now, exc.status)
    schedule = _debt_schedule(campaign, preview.amount)
    return render_template(
        "engine/review.html", campaign=campaign, form=form, preview=preview, schedule=schedule, now=now
    )


@bp.route("/campaigns/<slug>/back/confirm", methods=["POST"])
@login_required
def confirm(slug: str):
    """Place the pledge (or make the donation); the form's token makes it happen once."""
    campaign = _campaign(slug)
    now = utcnow()
    form = _form_for(campaign)
    form.ensure_token()
    req = _parsed_request(campaign, form)
    if req is None:
        return _render_form(campaign, form, now, 422)
    try:
        pledge = service.place_pledge(current_user, campaign.id, req, now=now)
    except service.PaymentDeclined as exc:
        form.token.data = new_form_token()  # the failed donation used this form's token
        _attach_error(form, exc)
        return _render_form(campaign, form, now, exc.status)
    except DomainError as exc:
        _attach_error(form, exc)
        return _render_form(campaign, form, now, exc.status)
    flash(_thanks(pledge), "success")
    return redirect(url_for("engine.my_pledges", _anchor=f"pledge-{pledge.id}"))


def _thanks(pledge: Pledge) -> str:
    rules = kind_rules(pledge.kind)
    if not rules.charge_at_close:
        if pledge.state is PledgeState.PENDING:
            return f"Thank you! We are confirming your donation of {pledge.amount} with your bank."
        return f"Thank you! Your donation of {pledge.amount} to {pledge.campaign.title} went through."
    if rules.has_tiers:
        return f"Thank you! Your pledge of {pledge.amount} is recorded; nothing is charged unless the campaign succeeds."
    return f"Your commitment of {pledge.amount} is recorded; nothing is charged unless the campaign succeeds."


# ---------------------------------------------------------------------------
# My pledges: list, change, cancel
# ---------------------------------------------------------------------------


@bp.route("/my/pledges")
@login_required
def my_pledges():
    now = utcnow()
    return render_template("engine/my_pledges.html", pledges=service.list_own_pledges(current_user), now=now)


def _own_pledge(pledge_id: int) -> Pledge:
    try:
        return service.get_own_pledge(current_user, pledge_id)
    except DomainError:
        abort(404)


@bp.route("/pledges/<int:pledge_id>/change", methods=["GET", "POST"])
@login_required
def change(pledge_id: int):
    """Move a reward pledge to another tier, quantity or amount while the campaign is open."""
    pledge = _own_pledge(pledge_id)
    campaign = pledge.campaign
    now = utcnow()
    if not pledge.can_change_at(now):
        flash("This pledge can no longer be changed.", "warning")
        return redirect(url_for("engine.my_pledges"))
    form = ChangePledgeForm()
    form.tier.choices = _tier_choices(campaign)
    _fill_methods(form, current_user)
    if request.method == "GET":
        form.tier.data = str(pledge.tier_id) if pledge.tier_id else NO_REWARD
        form.quantity.data = pledge.quantity
        if pledge.tier_id:
            form.extra.data = pledge.extra.format_plain() if pledge.extra_amount else ""
        else:
            form.amount.data = pledge.amount.format_plain()
        form.shipping_address.data = pledge.shipping_address or ""
        form.payment_method_id.data = str(pledge.payment_method_id or "")
    else:
        req = _parsed_request(campaign, form)
        if req is not None:
            try:
                changed = service.change_pledge(current_user, pledge.id, req, now=now)
            except DomainError as exc:
                _attach_error(form, exc)
            else:
                flash(f"Your pledge is now {changed.amount}.", "success")
                return redirect(url_for("engine.my_pledges", _anchor=f"pledge-{changed.id}"))
    status = 422 if request.method == "POST" else 200
    return render_template("engine/change.html", pledge=pledge, campaign=campaign, form=form, now=now), status


@bp.route("/pledges/<int:pledge_id>/cancel", methods=["POST"])
@login_required
def cancel(pledge_id: int):
    try:
        pledge = service.cancel_pledge(current_user, pledge_id)
    except DomainError as exc:
        if exc.status == 404:
            abort(404)
        flash(exc.message, "error")
        return redirect(url_for("engine.my_pledges")), 303
    flash(f"Your pledge of {pledge.amount} to {pledge.campaign.title} is cancelled.", "success")
    return redirect(url_for("engine.my_pledges")), 303


# ---------------------------------------------------------------------------
# Investor profile
# ---------------------------------------------------------------------------


@bp.route("/account/investor", methods=["GET", "POST"])
@login_required
def investor_profile():
    """Income, net worth and accreditation, and the 12-month limit they give."""
    profile = service.get_investor_profile(current_user)
    form = InvestorProfileForm()
    currencies = [c for c in CURRENCIES if c in current_app.config["INVESTMENT_LIMIT_FX"]]
    form.currency.choices = [(c, f"{c} – {CURRENCIES[c].name}") for c in currencies]
    status = 200
    if request.method == "GET" and profile is not None:
        form.currency.data = profile.currency
        form.annual_income.data = profile.annual_income.format_plain()
        form.net_worth.data = profile.net_worth.format_plain()
        form.accredited.data = profile.accredited
    elif request.method == "GET":
        form.currency.data = "USD"
    elif form.validate():
        income = parse_money(form.annual_income, form.currency.data, required=True)
        worth = parse_money(form.net_worth, form.currency.data, required=True)
        if income is not None and worth is not None:
            try:
                service.save_investor_profile(
                    current_user,
                    currency=form.currency.data,
                    annual_income=income,
                    net_worth=worth,
                    accredited=form.accredited.data,
                )
            except DomainError as exc:
                _attach_error(form, exc)
            else:
                flash("Your investor profile is saved.", "success")
                return redirect(safe_next_url(request.args.get("next")) or url_for("engine.investor_profile"))
        status = 422
    else:
        status = 422
    summary = service.investment_summary(current_user)
    return (
        render_template(
            "engine/investor.html",
            form=form,
            profile=profile,
            summary=summary,
            window_days=current_app.config["INVESTMENT_LIMIT_WINDOW_DAYS"],
        ),
        status,
    )


# ---------------------------------------------------------------------------
# Campaign dashboard (the campaigner's organisation and operators)
# ---------------------------------------------------------------------------


def _campaign_for_dashboard(campaign_id: int) -> Campaign:
    campaign = db.session.get(Campaign, campaign_id)
    if campaign is None:
        abort(404)
    if not (current_user.is_operator or campaign.organisation.has_member(current_user)):
        abort(404)
    return campaign


@bp.route("/studio/<int:campaign_id>/dashboard")
@login_required
def dashboard(campaign_id: int):
    campaign = _campaign_for_dashboard(campaign_id)
    pledges = reports.campaign_pledges(campaign)
    return render_template(
        "engine/dashboard.html",
        campaign=campaign,
        days=reports.pledges_per_day(pledges, campaign.currency),
        backers=reports.backer_rows(pledges),
        now=utcnow(),
    )


@bp.route("/studio/<int:campaign_id>/backers.csv")
@login_required
def backers_csv(campaign_id: int):
    campaign = _campaign_for_dashboard(campaign_id)
    body = reports.backers_csv(campaign)
    return (
        body,
        200,
        {
            "Content-Type": "text/csv; charset=utf-8",
            "Content-Disposition": f'attachment; filename="backers-{campaign.id}.csv"',
            "Cache-Control": "no-store",
        },
    )
