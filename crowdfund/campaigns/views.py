"""Campaign drafting for campaigners: create, edit, reward tiers, cover, preview, submit.

Everything here is for members of the campaign's organisation; anyone else gets 404, so
a draft's existence never leaks.
"""

from __future__ import annotations

from flask import Blueprint, abort, flash, redirect, render_template, request, send_file, url_for
from flask_login import current_user, login_required
from wtforms.fields.choices import SelectChoice

from crowdfund.accounts.models import Organisation
from crowdfund.campaigns import images, service
from crowdfund.campaigns.forms import (
    ActionForm,
    CoverForm,
    NewCampaignForm,
    SubmitForm,
    TierForm,
    campaign_form,
)
from crowdfund.campaigns.kinds import kind_rules
from crowdfund.campaigns.models import Campaign, CampaignKind, RewardTier
from crowdfund.errors import DomainError
from crowdfund.extensions import db
from crowdfund.models_base import utcnow

bp = Blueprint("campaigns", __name__)


# ---------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------


def _member_campaign(campaign_id: int) -> Campaign:
    try:
        return service.campaign_for_member(campaign_id, current_user)
    except DomainError:
        abort(404)


def show_errors(form, exc: DomainError) -> None:
    """Put a domain error's messages under their form fields, or in a flash message."""
    errors = getattr(exc, "errors", None) or {exc.field: exc.message}
    for field_name, message in errors.items():
        field = form._fields.get(field_name) if field_name else None
        if field is not None:
            field.errors = [*field.errors, message]
        else:
            flash(message, "error")


def public_url(campaign: Campaign) -> str | None:
    """The campaign's public page once it is public."""
    return url_for("public.campaign", slug=campaign.slug) if campaign.is_public else None


def new_organisation_url() -> str:
    return url_for("accounts.organisation_new")


def studio_cover_url(campaign: Campaign) -> str | None:
    if not campaign.cover_image:
        return None
    return url_for("campaigns.cover", campaign_id=campaign.id, v=campaign.cover_image[:8])


@bp.app_context_processor
def _campaign_helpers():
    return {"campaign_public_url": public_url, "studio_cover_url": studio_cover_url}


def _render_edit(
    campaign: Campaign,
    form=None,
    tier_form: TierForm | None = None,
    cover_form: CoverForm | None = None,
    submit_form: SubmitForm | None = None,
    status: int = 200,
):
    if not campaign.is_editable:
        flash(f"This campaign is {campaign.state.label.lower()} and can no longer be edited.", "info")
        return redirect(url_for("campaigns.preview", campaign_id=campaign.id))
    return (
        render_template(
            "campaigns/edit.html",
            campaign=campaign,
            form=form or campaign_form(campaign),
            tier_form=tier_form or TierForm(formdata=None),
            cover_form=cover_form or CoverForm(formdata=None),
            submit_form=submit_form or SubmitForm(formdata=None),
            action_form=ActionForm(formdata=None),
            problems=service.submission_problems(campaign, utcnow()),
            review_comment=service.latest_review_comment(campaign),
            kind_description=kind_rules(campaign).description,
        ),
        status,
    )


# ---------------------------------------------------------------------------
# Start and list
# ---------------------------------------------------------------------------


@bp.route("/campaigns/new", methods=["GET", "POST"])
@login_required
def new():
    organisations = service.organisations_for(current_user)
    form = NewCampaignForm()
    form.organisation.choices = [SelectChoice(o.id, o.legal_name) for o in organisations]
    if not organisations:
        return render_template(
            "campaigns/new.html", form=form, organisations=[], new_org_url=new_organisation_url()
        )
    if request.method == "GET" and request.args.get("kind") in {k.value for k in CampaignKind}:
        form.kind.data = request.args["kind"]
    if form.validate_on_submit():
        organisation = db.session.get(Organisation, form.organisation.data)
        data = {name: getattr(form, name).data for name in ("title", "category", "currency", "goal")}
        try:
            campaign = service.create_draft(current_user, organisation, form.kind.data, data)
        except DomainError as exc:
            show_errors(form, exc)
        else:
            flash("Draft created. Fill in the rest, then submit it for review.", "success")
            return redirect(url_for("campaigns.edit", campaign_id=campaign.id))
    status = 422 if request.method == "POST" else 200
    return render_template(
        "campaigns/new.html", form=form, organisations=organisations, new_org_url=new_organisation_url()
    ), status


@bp.route("/studio")
@login_required
def studio():
    campaigns = service.campaigns_for_user(current_user)
    comments = {c.id: service.latest_review_comment(c) for c in campaigns}
    return render_template(
        "campaigns/studio.html",
        campaigns=campaigns,
        comments=comments,
        organisations=service.organisations_for(current_user),
        new_org_url=new_organisation_url(),
    )


# ---------------------------------------------------------------------------
# Edit
# ---------------------------------------------------------------------------


@bp.route("/studio/<int:campaign_id>", methods=["GET", "POST"])
@login_required
def edit(campaign_id: int):
    campaign = _member_campaign(campaign_id)
    if request.method == "GET":
        return _render_edit(campaign)
    form = campaign_form(campaign, request.form)
    if form.validate_on_submit():
        try:
            service.update_draft(campaign, current_user, form.campaign_data())
        except DomainError as exc:
            show_errors(form, exc)
        else:
            flash("Saved.", "success")
            return redirect(url_for("campaigns.edit", campaign_id=campaign.id))
    return _render_edit(campaign, form=form, status=422)


@bp.route("/studio/<int:campaign_id>/cover", methods=["POST"])
@login_required
def upload_cover(campaign_id: int):
    campaign = _member_campaign(campaign_id)
    cover_form = CoverForm()
    if cover_form.validate_on_submit():
        try:
            data = images.read_upload(cover_form.image.data)
            service.set_cover(campaign, current_user, data)
        except DomainError as exc:
            show_errors(cover_form, exc)
        else:
            flash("Cover image saved.", "success")
            return redirect(url_for("campaigns.edit", campaign_id=campaign.id))
    return _render_edit(campaign, cover_form=cover_form, status=422)


@bp.route("/studio/<int:campaign_id>/cover/remove", methods=["POST"])
@login_required
def remove_cover(campaign_id: int):
    campaign = _member_campaign(campaign_id)
    if ActionForm().validate_on_submit():
        try:
            service.remove_cover(campaign, current_user)
        except DomainError as exc:
            flash(exc.message, "error")
        else:
            flash("Cover image removed.", "success")
    return redirect(url_for("campaigns.edit", campaign_id=campaign.id))


@bp.route("/studio/<int:campaign_id>/cover.jpg")
@login_required
def cover(campaign_id: int):
    """A campaign's cover before it is public: for its organisation's members and operators."""
    campaign = db.session.get(Campaign, campaign_id)
    if campaign is None or not (
        current_user.is_operator or service.is_member(current_user, campaign.organisation_id)
    ):
        abort(404)
    path = images.cover_path(campaign.cover_image)
    if path is None:
        abort(404)
    response = send_file(path, mimetype="image/jpeg", max_age=0, conditional=True)
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Cache-Control"] = "private, no-cache"
    return response


# ---------------------------------------------------------------------------
# Reward tiers
# ---------------------------------------------------------------------------


@bp.route("/studio/<int:campaign_id>/tiers", methods=["POST"])
@login_required
def add_tier(campaign_id: int):
    campaign = _member_campaign(campaign_id)
    if not kind_rules(campaign).has_tiers:
        abort(404)
    tier_form = TierForm()
    if tier_form.validate_on_submit():
        try:
            service.add_tier(campaign, current_user, tier_form.tier_data())
        except DomainError as exc:
            show_errors(tier_form, exc)
        else:
            flash("Reward added.", "success")
            return redirect(url_for("campaigns.edit", campaign_id=campaign.id, _anchor="tiers"))
    return _render_edit(campaign, tier_form=tier_form, status=422)


def _member_tier(campaign: Campaign, tier_id: int) -> RewardTier:
    tier = db.session.get(RewardTier, tier_id)
    if tier is None or tier.campaign_id != campaign.id:
        abort(404)
    return tier


@bp.route("/studio/<int:campaign_id>/tiers/<int:tier_id>", methods=["GET", "POST"])
@login_required
def edit_tier(campaign_id: int, tier_id: int):
    campaign = _member_campaign(campaign_id)
    tier = _member_tier(campaign, tier_id)
    if not campaign.is_editable:
        return _render_edit(campaign)
    if request.method == "GET":
        form = TierForm(
            formdata=None,
            obj=tier,
            price=tier.price.format_plain(),
        )
        return render_template("campaigns/tier.html", campaign=campaign, tier=tier, form=form)
    form = TierForm()
    if form.validate_on_submit():
        try:
            service.update_tier(campaign, current_user, tier.id, form.tier_data())
        except DomainError as exc:
            show_errors(form, exc)
        else:
            flash("Reward saved.", "success")
            return redirect(url_for("campaigns.edit", campaign_id=campaign.id, _anchor="tiers"))
    return render_template("campaigns/tier.html", campaign=campaign, tier=tier, form=form), 422


@bp.route("/studio/<int:campaign_id>/tiers/<int:tier_id>/delete", methods=["POST"])
@login_required
def delete_tier(campaign_id: int, tier_id: int):
    campaign = _member_campaign(campaign_id)
    tier = _member_tier(campaign, tier_id)
    if ActionForm().validate_on_submit():
        try:
            service.remove_tier(campaign, current_user, tier.id)
        except DomainError as exc:
            flash(exc.message, "error")
        else:
            flash("Reward removed.", "success")
    return redirect(url_for("campaigns.edit", campaign_id=campaign.id, _anchor="tiers"))


# ---------------------------------------------------------------------------
# Preview and submit
# ---------------------------------------------------------------------------


@bp.route("/studio/<int:campaign_id>/preview")
@login_required
def preview(campaign_id: int):
    campaign = _member_campaign(campaign_id)
    return render_template(
        "campaigns/preview.html",
        campaign=campaign,
        is_open=False,
        review_comment=service.latest_review_comment(campaign),
        problems=service.submission_problems(campaign, utcnow()) if campaign.is_editable else [],
    )


@bp.route("/studio/<int:campaign_id>/submit", methods=["POST"])
@login_required
def submit(campaign_id: int):
    campaign = _member_campaign(campaign_id)
    submit_form = SubmitForm()
    if submit_form.validate_on_submit():
        try:
            service.submit_for_review(campaign, current_user, submit_form.note.data or "")
        except DomainError as exc:
            if getattr(exc, "errors", None):
                submit_form.form_errors = [*getattr(submit_form, "form_errors", []), *exc.errors.values()]
            else:
                show_errors(submit_form, exc)
        else:
            flash("Submitted. An operator will review your campaign; we will let you know.", "success")
            return redirect(url_for("campaigns.studio"))
    if not campaign.is_editable:
        flash("This campaign has already been submitted.", "info")
        return redirect(url_for("campaigns.studio"))
    return _render_edit(campaign, submit_form=submit_form, status=422)
