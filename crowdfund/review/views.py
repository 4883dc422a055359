"""Operator review queue: approve, request changes, reject."""

from __future__ import annotations

from flask import Blueprint, abort, flash, redirect, render_template, request, url_for
from flask_login import current_user

from crowdfund.accounts.permissions import operator_required
from crowdfund.campaigns import service as campaigns
from crowdfund.campaigns.kinds import kind_rules
from crowdfund.campaigns.models import Campaign, CampaignState
from crowdfund.campaigns.views import show_errors, studio_cover_url
from crowdfund.errors import DomainError
from crowdfund.extensions import db
from crowdfund.models_base import utcnow
from crowdfund.review import service
from crowdfund.review.forms import decision_forms

bp = Blueprint("review", __name__, url_prefix="/operator")


def _campaign_or_404(campaign_id: int) -> Campaign:
    campaign = db.session.get(Campaign, campaign_id)
    if campaign is None:
        abort(404)
    return campaign


@bp.route("/review")
@operator_required
def queue():
    return render_template("review/queue.html", campaigns=service.review_queue(), now=utcnow())


def _render_review(campaign: Campaign, forms: dict | None = None, status: int = 200):
    now = utcnow()
    problems = [p for p in campaigns.submission_problems(campaign, now) if p.field != "start_at"]
    return (
        render_template(
            "review/campaign.html",
            campaign=campaign,
            organisation=campaign.organisation,
            events=campaigns.campaign_events(campaign),
            forms=forms or decision_forms(),
            problems=problems,
            checklist=kind_rules(campaign).review_checklist,
            own_organisation=campaigns.is_member(current_user, campaign.organisation_id),
            cover_src=studio_cover_url(campaign),
            starts_in_past=campaign.start_at <= now,
        ),
        status,
    )


@bp.route("/review/<int:campaign_id>")
@operator_required
def campaign(campaign_id: int):
    return _render_review(_campaign_or_404(campaign_id))


_DECISIONS = {
    "approve": (service.approve, "comment", "Approved."),
    "changes": (service.request_changes, "comment", "Changes requested; the campaigner has been told."),
    "reject": (service.reject, "reason", "Rejected."),
}


@bp.route("/review/<int:campaign_id>/<any(approve, changes, reject):decision>", methods=["POST"])
@operator_required
def decide(campaign_id: int, decision: str):
    campaign = _campaign_or_404(campaign_id)
    forms = decision_forms(request.form)
    form = forms[decision]
    use_case, field, done = _DECISIONS[decision]
    if form.validate_on_submit():
        try:
            result = use_case(campaign, current_user, getattr(form, field).data or "")
        except DomainError as exc:
            show_errors(form, exc)
        else:
            if decision == "approve" and result.state is CampaignState.LIVE:
                done = "Approved: the campaign is live now."
            elif decision == "approve":
                done = f"Approved: the campaign goes live on {result.start_at:%d %b %Y %H:%M} UTC."
            flash(done, "success")
            return redirect(url_for("review.queue"))
    shown = decision_forms()  # only the posted form keeps its input and errors
    shown[decision] = form
    return _render_review(campaign, shown, 422)
