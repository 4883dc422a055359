"""Pages for saved cards and payout accounts, and the Stripe webhook endpoint."""

from __future__ import annotations

from flask import Blueprint, abort, current_app, flash, redirect, render_template, request, url_for
from flask_login import current_user, login_required

from crowdfund.accounts.models import Organisation
from crowdfund.accounts.views import safe_next_url
from crowdfund.errors import DomainError
from crowdfund.extensions import csrf, db
from crowdfund.payments import service, webhooks
from crowdfund.payments.forms import ActionForm, SandboxBankForm, SandboxCardForm, StripeSetupForm
from crowdfund.payments.sandbox import TEST_CARDS

bp = Blueprint("payments", __name__)


DEFAULT_STRIPE_JS_URL = "https://js.stripe.com/v3/"


def _next_url() -> str | None:
    return safe_next_url(request.args.get("next") or request.form.get("next"))


def _show_error(form, exc: DomainError) -> None:
    field = getattr(form, exc.field, None) if exc.field else None
    if field is not None and hasattr(field, "errors"):
        field.errors = [*field.errors, exc.message]
    else:
        form.form_errors.append(exc.message)


# --- saved cards ---------------------------------------------------------------------------
@bp.route("/account/payment-methods")
@login_required
def methods():
    return render_template(
        "payments/methods.html",
        methods=service.list_payment_methods(current_user),
        default=service.default_payment_method(current_user),
        gateway=service.gateway_name(),
        action_form=ActionForm(),
    )


@bp.route("/account/payment-methods/new", methods=["GET", "POST"])
@login_required
def add_method():
    next_url = _next_url()
    gateway = service.gateway_name()
    form = SandboxCardForm() if gateway == "sandbox" else StripeSetupForm()
    if form.validate_on_submit():
        try:
            method = service.save_payment_method(
                current_user, {k: v for k, v in form.data.items() if k != "csrf_token"}
            )
        except DomainError as exc:
            _show_error(form, exc)
        else:
            if not method.is_usable:
                return redirect(url_for("payments.authenticate_method", method_id=method.id, next=next_url))
            flash(f"{method.label} is saved and is now your default card.", "success")
            return redirect(next_url or url_for("payments.methods"))
    elif request.method == "POST" and gateway != "sandbox":
        form.form_errors.append("The card form was not completed. Please enter your card again.")
    setup = None
    if gateway != "sandbox":
        try:
            setup = service.begin_add_payment_method(current_user)
        except DomainError as exc:
            flash(exc.message, "error")
            return redirect(url_for("payments.methods"))
    status = 422 if request.method == "POST" else 200
    return (
        render_template(
            "payments/add_method.html",
            form=form,
            gateway=gateway,
            setup=setup,
            test_cards=TEST_CARDS,
            next_url=next_url,
            stripe_js_url=current_app.config["STRIPE_JS_URL"] or DEFAULT_STRIPE_JS_URL,
        ),
        status,
    )


def _method_or_404(method_id: int):
    try:
        return service.get_payment_method(current_user, method_id)
    except DomainError:
        abort(404)


@bp.route("/account/payment-methods/<int:method_id>/authenticate", methods=["GET", "POST"])
@login_required
def authenticate_method(method_id: int):
    method = _method_or_404(method_id)
    next_url = _next_url()
    form = ActionForm()
    if form.validate_on_submit():
        try:
            method = service.authenticate_payment_method(current_user, method_id)
        except DomainError as exc:
            flash(exc.message, "error")
        else:
            flash(f"{method.label} is confirmed and is now your default card.", "success")
            return redirect(next_url or url_for("payments.methods"))
    if method.is_usable:
        return redirect(next_url or url_for("payments.methods"))
    return render_template(
        "payments/authenticate.html",
        method=method,
        form=form,
        next_url=next_url,
        gateway=service.gateway_name(),
    )


@bp.route("/account/payment-methods/<int:method_id>/default", methods=["POST"])
@login_required
def set_default(method_id: int):
    _method_or_404(method_id)
    if ActionForm().validate_on_submit():
        try:
            method = service.set_default_payment_method(current_user, method_id)
        except DomainError as exc:
            flash(exc.message, "error")
        else:
            flash(f"{method.label} is now your default card.", "success")
    return redirect(url_for("payments.methods"))


@bp.route("/account/payment-methods/<int:method_id>/remove", methods=["POST"])
@login_required
def remove_method(method_id: int):
    method = _method_or_404(method_id)
    if ActionForm().validate_on_submit():
        label = method.label
        service.remove_payment_method(current_user, method_id)
        flash(f"{label} is removed.", "success")
    return redirect(url_for("payments.methods"))


# --- payout accounts -------------------------------------------------------------------------
def _organisation_for_member(org_id: int) -> Organisation:
    org = db.session.get(Organisation, org_id)
    if org is None or not org.has_member(current_user):
        abort(404)
    return org


@bp.route("/organisations/<int:org_id>/payouts", methods=["GET", "POST"])
@login_required
def payouts(org_id: int):
    org = _organisation_for_member(org_id)
    gateway = service.gateway_name()
    form = SandboxBankForm() if gateway == "sandbox" else ActionForm()
    if form.validate_on_submit():
        try:
            if gateway == "sandbox":
                service.save_sandbox_bank_details(
                    org, bank_name=form.bank_name.data, account_number=form.account_number.data
                )
            else:
                link = service.start_payout_onboarding(
                    org,
                    return_url=url_for("payments.payouts_return", org_id=org.id, _external=True),
                    refresh_url=url_for("payments.payouts", org_id=org.id, _external=True),
                    email=current_user.email,
                )
                if link:
                    return redirect(link)
        except DomainError as exc:
            _show_error(form, exc)
        else:
            flash("Payout details saved. Payouts for this organisation go to this account.", "success")
            return redirect(url_for("payments.payouts", org_id=org.id))
    status = 422 if request.method == "POST" else 200
    return (
        render_template(
            "payments/payouts.html",
            organisation=org,
            account=service.payout_account(org.id),
            gateway=gateway,
            form=form,
        ),
        status,
    )


@bp.route("/organisations/<int:org_id>/payouts/return")
@login_required
def payouts_return(org_id: int):
    """Where Stripe sends the campaigner back after onboarding: ask Stripe how it went."""
    org = _organisation_for_member(org_id)
    account = service.refresh_payout_account(org.id)
    if account is not None and account.payouts_enabled:
        flash("Your Stripe account is ready to receive payouts.", "success")
    else:
        flash(
            "Stripe still needs some details before it can pay you. Continue the setup when you are ready.",
            "info",
        )
    return redirect(url_for("payments.payouts", org_id=org.id))


# --- webhooks --------------------------------------------------------------------------------
@bp.route("/webhooks/stripe", methods=["POST"])
@csrf.exempt
def stripe_webhook():
    try:
        receipt = webhooks.receive_stripe_event(request.get_data(), request.headers.get("Stripe-Signature"))
    except webhooks.WebhookRejected as exc:
        return {"error": {"code": exc.code.value, "message": exc.message}}, exc.status
    except DomainError as exc:  # Stripe could not be reached to re-read the object: it delivers again
        return {"error": {"code": exc.code.value, "message": exc.message}}, 503
    return {
        "received": True,
        "event": receipt.event_id,
        "duplicate": receipt.duplicate,
        "outcome": receipt.outcome,
    }
