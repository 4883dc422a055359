"""Public pages: home, campaign listing, campaign page, cover images.

Every page takes one `now` per request and decides "open" with `Campaign.is_open_at(now)`,
so a campaign past its end never shows as open, even before the closing job has run.
"""

from __future__ import annotations

import re
from datetime import datetime

from flask import Blueprint, abort, current_app, render_template, request, send_file, url_for
from flask_login import current_user

from crowdfund.campaigns.images import cover_path
from crowdfund.campaigns.kinds import KINDS
from crowdfund.campaigns.models import CLOSED_STATES, Campaign, CampaignKind, CampaignState, HealthCategory
from crowdfund.models_base import utcnow
from crowdfund.money import Money
from crowdfund.public import queries

bp = Blueprint("public", __name__)

#: Cover images are stored under random hex names; nothing else is ever served.
COVER_NAME = re.compile(r"[0-9a-f]{32}\.jpg")
#: Cover names never change content, so browsers may keep them for a week.
COVER_MAX_AGE = 7 * 24 * 3600

#: One line per kind for the home page.
KIND_BLURBS: dict[CampaignKind, str] = {kind: rules.blurb for kind, rules in KINDS.items()}


# ---------------------------------------------------------------------------
# Template helpers
# ---------------------------------------------------------------------------


@bp.app_template_global()
def time_left(campaign: Campaign, now: datetime) -> str:
    """'12 days left', 'Ends today', 'Closed', 'Opens 3 Jun 2026' or the state's name."""
    if campaign.state in CLOSED_STATES or (campaign.state is CampaignState.LIVE and now >= campaign.end_at):
        return "Closed"
    if campaign.state is not CampaignState.LIVE:
        return campaign.state.label
    if now < campaign.start_at:
        return f"Opens {campaign.start_at:%d %b %Y}"
    days = (campaign.end_at - now).days
    if days < 1:
        return "Ends today"
    return "1 day left" if days == 1 else f"{days} days left"


@bp.app_template_global()
def as_money(amount: int, currency: str) -> Money:
    """Money from a stored amount column and its currency, for templates."""
    return Money(amount, currency)


@bp.app_template_global()
def reached_goal(campaign: Campaign) -> bool:
    return campaign.raised_amount >= campaign.goal_amount


@bp.app_template_global()
def cover_url(campaign: Campaign) -> str | None:
    """The URL of the campaign's cover image, or None when it has none (or a bad name)."""
    name = campaign.cover_image
    if name and COVER_NAME.fullmatch(name):
        return url_for("public.cover", name=name)
    return None


def _page_context(now: datetime) -> dict:
    return {
        "now": now,
        "kinds": list(CampaignKind),
        "categories": list(HealthCategory),
        "kind_blurbs": KIND_BLURBS,
    }


# ---------------------------------------------------------------------------
# Pages
# ---------------------------------------------------------------------------


@bp.route("/")
def home():
    now = utcnow()
    data = queries.home_data(now)
    return render_template("public/home.html", data=data, **_page_context(now))


@bp.route("/campaigns")
def campaigns():
    now = utcnow()
    filters = queries.CampaignFilters.from_args(request.args)
    page = queries.search_campaigns(filters, now, current_app.config["CAMPAIGNS_PER_PAGE"])
    return render_template(
        "public/campaigns.html",
        filters=filters,
        page=page,
        statuses=queries.STATUSES,
        sorts=queries.SORTS,
        **_page_context(now),
    )


@bp.route("/campaigns/<slug>")
def campaign(slug: str):
    now = utcnow()
    found = queries.campaign_by_slug(slug)
    if found is None or not queries.can_view(found, current_user):
        abort(404)
    return render_template(
        "public/campaign.html",
        campaign=found,
        is_open=found.is_open_at(now),
        **_page_context(now),
    )


@bp.route("/media/covers/<name>")
def cover(name: str):
    """A cover image: only stored names (32 hex digits + .jpg), always as image/jpeg."""
    path = cover_path(name) if COVER_NAME.fullmatch(name) else None
    if path is None:
        abort(404)
    response = send_file(path, mimetype="image/jpeg", max_age=COVER_MAX_AGE, conditional=True)
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Content-Disposition"] = f'inline; filename="{name}"'
    response.headers["Cache-Control"] = f"public, max-age={COVER_MAX_AGE}, immutable"
    return response
