"""The API tokens page: /account/tokens — list, create (secret shown once), revoke."""

from __future__ import annotations

from flask import Blueprint, abort, flash, make_response, redirect, render_template, url_for
from flask_login import current_user, login_required

from crowdfund.api import service
from crowdfund.api.forms import CreateTokenForm, RevokeTokenForm
from crowdfund.errors import DomainError

bp = Blueprint("tokens", __name__)


def _page(form: CreateTokenForm, secret: str | None = None, status: int = 200):
    response = make_response(
        render_template(
            "api/tokens.html",
            form=form,
            revoke_form=RevokeTokenForm(),
            tokens=service.list_tokens(current_user),
            secret=secret,
        ),
        status,
    )
    # The page may show a secret: no cache may keep it.
    response.headers["Cache-Control"] = "no-store"
    return response


@bp.get("/account/tokens")
@login_required
def index():
    return _page(CreateTokenForm())


@bp.post("/account/tokens")
@login_required
def create():
    form = CreateTokenForm()
    if not form.validate_on_submit():
        return _page(form, status=422)
    try:
        created = service.create_token(current_user, form.name.data)
    except DomainError as exc:
        form.name.errors = [*form.name.errors, exc.message]
        return _page(form, status=exc.status)
    return _page(CreateTokenForm(formdata=None), secret=created.secret, status=201)


@bp.post("/account/tokens/<int:token_id>/revoke")
@login_required
def revoke(token_id: int):
    form = RevokeTokenForm()
    if not form.validate_on_submit():
        flash("The form expired; please try again.", "error")
        return redirect(url_for("tokens.index"), 303)
    try:
        token = service.revoke_token(current_user, token_id)
    except DomainError as exc:
        if exc.status == 404:  # another user's token, or none: nothing to say about it
            abort(404)
        flash(exc.message, "error")
        return redirect(url_for("tokens.index"), 303)
    flash(f"Token “{token.name}” is revoked; requests using it are refused from now on.", "success")
    return redirect(url_for("tokens.index"), 303)
