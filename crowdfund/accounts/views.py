"""Register, log in, log out, change password; organisations."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import urlsplit

from flask import (
    Blueprint,
    abort,
    current_app,
    flash,
    redirect,
    render_template,
    request,
    session,
    url_for,
)
from flask_login import current_user, login_required, login_user, logout_user

bp = Blueprint("accounts", __name__)

from crowdfund.accounts import service, throttling  # noqa: E402
from crowdfund.accounts.countries import country_name  # noqa: E402
from crowdfund.accounts.forms import (  # noqa: E402
    ChangePasswordForm,
    LoginForm,
    LogoutForm,
    OrganisationForm,
    RegisterForm,
    VerificationForm,
)
from crowdfund.accounts.models import User  # noqa: E402
from crowdfund.accounts.permissions import operator_required  # noqa: E402
from crowdfund.errors import DomainError, ErrorCode, NotFound  # noqa: E402
from crowdfund.extensions import db, limiter, login_manager  # noqa: E402

login_manager.login_view = "accounts.login"
login_manager.login_message = "Please log in to continue."
login_manager.login_message_category = "info"

LOGIN_FAILED = "That e-mail and password do not match an account. Check them and try again."
#: What registering answers, whether or not the address already had an account, so the
#: form cannot be used to find out who has one.
REGISTERED = (
    "Thank you for registering. Log in with your e-mail address and the password you chose. "
    "If this address already had an account, that account and its password are unchanged."
)


@login_manager.user_loader
def load_user(session_id: str) -> User | None:
    user_id, _, token = session_id.partition(":")
    if not user_id.isdigit():
        return None
    user = db.session.get(User, int(user_id))
    if user is None or user.session_token != token:
        return None
    return user


# ---------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------


def safe_next_url(target: str | None) -> str | None:
    """`target` if it is a relative path on this site, else None (no open redirects)."""
    if not target or len(target) > 2000:
        return None
    if any(ord(ch) < 32 or ch == "\\" for ch in target):
        return None
    if not target.startswith("/") or target.startswith("//"):
        return None
    parts = urlsplit(target)
    if parts.scheme or parts.netloc:
        return None
    return target


def _posted_next() -> str | None:
    """The form's `next`, judged as it was sent (before any text cleaning could change it)."""
    return safe_next_url(request.form.get("next"))


def _field_error(form, exc: DomainError) -> None:
    """Show a domain error under its form field, or as a flash message."""
    field = getattr(form, exc.field, None) if exc.field else None
    if field is not None and hasattr(field, "errors"):
        field.errors = [*field.errors, exc.message]
    else:
        flash(exc.message, "error")


def _start_session(user: User) -> None:
    """Log `user` in on a brand-new session: nothing from before the login is kept."""
    session.clear()
    login_user(user)
    session.modified = True


@dataclass(frozen=True)
class AccountLink:
    """A card on the account page, pointing to another part of the site."""

    title: str
    endpoint: str
    description: str = ""
    visible: Callable[[User], bool] | None = None


#: Cards shown on /account, in order (endpoints of other packages' pages, named, not imported).
ACCOUNT_LINKS: list[AccountLink] = [
    AccountLink(
        "My pledges",
        "engine.my_pledges",
        "Everything you back, invest in, lend or give; change or cancel it.",
    ),
    AccountLink(
        "Investor profile",
        "engine.investor_profile",
        "Income and net worth that set your 12-month limit for equity and debt.",
    ),
    AccountLink("Payment methods", "payments.methods", "Cards saved for your pledges; add or remove a card."),
    AccountLink(
        "My campaigns", "campaigns.studio", "Draft campaigns, follow their review, and see the live ones."
    ),
    AccountLink(
        "My organisations", "accounts.organisations", "Register the organisations you raise money for."
    ),
    AccountLink(
        "API tokens", "tokens.index", "Personal tokens for scripts that use the HealthFund JSON API."
    ),
    AccountLink(
        "Change password",
        "accounts.password",
        "Choose a new password; other devices are logged out and API tokens revoked.",
    ),
]


def _account_links(user: User) -> list[AccountLink]:
    return [link for link in ACCOUNT_LINKS if link.visible is None or link.visible(user)]


# ---------------------------------------------------------------------------
# Authentication
# ---------------------------------------------------------------------------


@bp.route("/register", methods=["GET", "POST"])
@limiter.limit(lambda: current_app.config["REGISTER_RATE_LIMIT"], methods=["POST"])
def register():
    """Create an account. A new address and a taken one get the same answer: go and log in."""
    if current_user.is_authenticated:
        return redirect(url_for("accounts.account"))
    form = RegisterForm()
    if request.method == "GET":
        form.next.data = safe_next_url(request.args.get("next")) or ""
    if form.validate_on_submit():
        try:
            service.register_user(form.name.data, form.email.data, form.password.data)
        except DomainError as exc:
            if exc.code is not ErrorCode.EMAIL_TAKEN:
                _field_error(form, exc)
                return render_template("accounts/register.html", form=form)
        session["registered_email"] = form.email.data.strip()
        flash(REGISTERED, "success")
        return redirect(url_for("accounts.login", next=_posted_next()))
    return render_template("accounts/register.html", form=form)


@bp.route("/login", methods=["GET", "POST"])
@limiter.limit(lambda: current_app.config["LOGIN_RATE_LIMIT"], methods=["POST"])
@limiter.limit(
    lambda: current_app.config["LOGIN_ACCOUNT_RATE_LIMIT"],
    key_func=throttling.submitted_account,
    methods=["POST"],
    deduct_when=throttling.password_check_failed,
)
def login():
    """Log in. Throttled per client address (every attempt) and per account (failures)."""
    if current_user.is_authenticated:
        return redirect(safe_next_url(request.args.get("next")) or url_for("accounts.account"))
    form = LoginForm()
    if request.method == "GET":
        form.next.data = safe_next_url(request.args.get("next")) or ""
        form.email.data = session.pop("registered_email", None)
    error = None
    if form.validate_on_submit():
        user = service.authenticate(form.email.data, form.password.data)
        if user is None:
            throttling.note_failed_password_check()
            error = LOGIN_FAILED
            form.password.data = ""
        else:
            target = _posted_next()
            _start_session(user)
            flash(f"Welcome back, {user.name}.", "success")
            return redirect(target or url_for("accounts.account"))
    return render_template("accounts/login.html", form=form, error=error)


@bp.route("/logout", methods=["GET", "POST"])
def logout():
    """GET shows a confirmation button; a POST (with CSRF token) ends every session.

    The account's session token is replaced, so this cookie and every copy of it, and
    the sessions on the account's other devices, are refused from now on.
    """
    form = LogoutForm()
    if request.method == "GET":
        if not current_user.is_authenticated:
            return redirect(url_for("public.home"))
        return render_template("accounts/logout.html", form=form)
    if not form.validate_on_submit():
        abort(400)
    if current_user.is_authenticated:
        service.end_all_sessions(current_user)
    logout_user()
    session.clear()
    flash("You are logged out, here and on every other device.", "info")
    return redirect(url_for("public.home"))


@bp.route("/account")
@login_required
def account():
    return render_template(
        "accounts/account.html", links=_account_links(current_user), country_name=country_name
    )


@bp.route("/account/password", methods=["GET", "POST"])
@limiter.limit(
    lambda: current_app.config["PASSWORD_CHECK_RATE_LIMIT"],
    key_func=throttling.current_account,
    methods=["POST"],
    deduct_when=throttling.password_check_failed,
)
@login_required
def password():
    """Change the password; wrong current passwords are throttled per account."""
    form = ChangePasswordForm()
    if form.validate_on_submit():
        try:
            user = service.change_password(current_user, form.current_password.data, form.new_password.data)
        except DomainError as exc:
            if exc.code is ErrorCode.WRONG_PASSWORD:
                throttling.note_failed_password_check()
            _field_error(form, exc)
        else:
            _start_session(user)
            flash(
                "Your password is changed. Every other device that was logged in has been logged out, "
                "and your API tokens are revoked: create new ones for your scripts.",
                "success",
            )
            return redirect(url_for("accounts.account"))
    return render_template("accounts/password.html", form=form)


# ---------------------------------------------------------------------------
# Organisations
# ---------------------------------------------------------------------------


def _details(form: OrganisationForm) -> service.OrganisationDetails:
    return service.OrganisationDetails(
        type=form.type.data,
        legal_name=form.legal_name.data,
        registration_number=form.registration_number.data,
        country=form.country.data,
        website=form.website.data,
        description=form.description.data,
    )


def _organisation_or_404(org_id: int):
    try:
        return service.get_organisation_for(current_user, org_id)
    except NotFound:
        abort(404)


@bp.route("/organisations")
@login_required
def organisations():
    return render_template(
        "accounts/organisations.html",
        organisations=service.organisations_of(current_user),
        country_name=country_name,
    )


@bp.route("/organisations/new", methods=["GET", "POST"])
@login_required
def organisation_new():
    form = OrganisationForm()
    if form.validate_on_submit():
        try:
            org = service.create_organisation(current_user, _details(form))
        except DomainError as exc:
            _field_error(form, exc)
        else:
            flash(
                f"{org.legal_name} is registered. An operator will verify it before its first campaign goes live.",
                "success",
            )
            return redirect(url_for("accounts.organisation", org_id=org.id))
    return render_template("accounts/organisation_form.html", form=form, organisation=None)


@bp.route("/organisations/<int:org_id>")
@login_required
def organisation(org_id: int):
    org = _organisation_or_404(org_id)
    verification_form = (
        VerificationForm(status=org.verification_status.value) if current_user.is_operator else None
    )
    verified_by = db.session.get(User, org.verified_by_id) if org.verified_by_id else None
    return render_template(
        "accounts/organisation.html",
        organisation=org,
        is_member=org.has_member(current_user),
        verification_form=verification_form,
        verified_by=verified_by,
        country_name=country_name,
    )


@bp.route("/organisations/<int:org_id>/edit", methods=["GET", "POST"])
@login_required
def organisation_edit(org_id: int):
    org = _organisation_or_404(org_id)
    if not org.has_member(current_user):
        abort(403)
    form = OrganisationForm(obj=org) if request.method == "GET" else OrganisationForm()
    if request.method == "GET":
        form.type.data = org.type.value
    if form.validate_on_submit():
        try:
            org, sent_back = service.update_organisation(current_user, org.id, _details(form))
        except DomainError as exc:
            _field_error(form, exc)
        else:
            if sent_back:
                flash(
                    "Saved. Because the legal details changed, an operator will verify them again.", "warning"
                )
            else:
                flash("Saved.", "success")
            return redirect(url_for("accounts.organisation", org_id=org.id))
    return render_template("accounts/organisation_form.html", form=form, organisation=org)


@bp.route("/organisations/<int:org_id>/verification", methods=["POST"])
@operator_required
def organisation_verify(org_id: int):
    org = _organisation_or_404(org_id)
    form = VerificationForm()
    if not form.validate_on_submit():
        flash("Choose verified, rejected or unverified.", "error")
        return redirect(url_for("accounts.organisation", org_id=org.id))
    try:
        org = service.set_verification_status(current_user, org.id, form.status.data)
    except DomainError as exc:
        flash(exc.message, "error")
    else:
        flash(f"{org.legal_name} is now {org.verification_status.value}.", "success")
    return redirect(url_for("accounts.organisation", org_id=org.id))
