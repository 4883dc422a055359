"""Drafting a campaign: create, edit the common fields and the kind's terms, set the cover.

A campaign starts as a draft that only members of its organisation can see or edit; it
can be edited while it is a draft or has had changes requested. Each use case is one
unit of work that locks the campaign row, re-checks membership and state under the
lock, and saves everything or nothing: `DraftInvalid` lists every field's problem.
The kind's own terms section is parsed and stored by its class in `kinds`.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

from flask import current_app
from sqlalchemy.exc import IntegrityError

from crowdfund.accounts.models import Organisation, User
from crowdfund.campaigns import images, parsing
from crowdfund.campaigns.access import editable_for, is_member
from crowdfund.campaigns.kinds import KINDS, KindRules, kind_rules
from crowdfund.campaigns.models import Campaign, CampaignKind, CampaignState, FundingModel, HealthCategory
from crowdfund.campaigns.story import render_story, slug_base, unique_slug
from crowdfund.database import after_commit, unit_of_work
from crowdfund.errors import Conflict, ErrorCode, NotFound, ValidationError
from crowdfund.extensions import db
from crowdfund.models_base import utcnow
from crowdfund.money import Money

#: Currencies a campaign can raise money in.
CAMPAIGN_CURRENCIES = ("CNY", "USD", "EUR")
MAX_TITLE_LENGTH = 120
MAX_SUMMARY_LENGTH = 300
MAX_STORY_LENGTH = 20_000
MIN_DURATION = timedelta(days=1)
MAX_DURATION = timedelta(days=60)
#: How far ahead a campaign may be scheduled to start.
MAX_START_AHEAD = timedelta(days=365)
DEFAULT_START_DELAY = timedelta(days=7)
DEFAULT_DURATION = timedelta(days=30)

#: What each kind means, for a campaigner choosing one.
KIND_DESCRIPTIONS: dict[CampaignKind, str] = {kind: rules.description for kind, rules in KINDS.items()}
#: The fields of each kind's terms section (besides the common fields).
TERM_FIELDS: dict[CampaignKind, tuple[str, ...]] = {kind: rules.term_fields for kind, rules in KINDS.items()}


class DraftInvalid(ValidationError):
    """Several fields are wrong at once; `errors` maps each field name to its message."""

    def __init__(self, errors: dict[str, str], message: str | None = None):
        first_field = next(iter(errors), None)
        super().__init__(
            message or "Please correct the marked fields.", code=ErrorCode.DRAFT_INVALID, field=first_field
        )
        self.errors = errors


def default_dates(now: datetime) -> tuple[datetime, datetime]:
    """A week from now (on the hour) for 30 days: what a new draft starts with."""
    start = (now + DEFAULT_START_DELAY).replace(minute=0, second=0, microsecond=0)
    return start, start + DEFAULT_DURATION


def check_dates(start: datetime, end: datetime, errors: dict[str, str]) -> None:
    if end <= start:
        errors["end_at"] = "The end must be after the start."
    elif end - start < MIN_DURATION:
        errors["end_at"] = "A campaign runs for at least one day."
    elif end - start > MAX_DURATION:
        errors["end_at"] = f"A campaign runs for at most {MAX_DURATION.days} days; pick an earlier end."


def _required_for_new(kind: Any, data: Mapping[str, Any]) -> tuple[CampaignKind | None, dict[str, str]]:
    errors: dict[str, str] = {}
    chosen = parsing.choice(CampaignKind, kind, "kind", errors, "the kind of campaign")
    if chosen is None and "kind" not in errors:
        errors["kind"] = "Choose the kind of campaign."
    for field, label in (
        ("title", "a title"),
        ("category", "a category"),
        ("currency", "a currency"),
        ("goal", "the goal"),
    ):
        if parsing.blank(data.get(field)):
            errors.setdefault(field, f"Enter {label}." if field in ("title", "goal") else f"Choose {label}.")
    return chosen, errors


def create_draft(
    user: User, organisation: Organisation, kind: CampaignKind | str, data: Mapping[str, Any]
) -> Campaign:
    """Start a draft campaign of `kind` for `organisation`, of which `user` must be a member.

    `data` needs a title, category, currency and goal; any other campaign field may be
    given too (see `update_draft`). Dates default to a week from now, for 30 days.
    """
    chosen, errors = _required_for_new(kind, data)
    if errors:
        raise DraftInvalid(errors)
    if organisation is None or not is_member(user, organisation.id):
        raise NotFound("We could not find that organisation.", code=ErrorCode.NOT_FOUND, field="organisation")
    now = utcnow()
    start, end = default_dates(now)
    with unit_of_work():
        campaign = Campaign(
            kind=chosen,
            organisation_id=organisation.id,
            created_by_id=user.id,
            title="",
            slug=f"draft-{images.random_token()}",
            summary="",
            story="",
            story_html="",
            currency=current_app.config["DEFAULT_CURRENCY"],
            start_at=start,
            end_at=end,
            state=CampaignState.DRAFT,
            funding_model=kind_rules(chosen).default_funding_model,
            created_at=now,
            updated_at=now,
        )
        _apply(campaign, data, errors)
        if errors:
            raise DraftInvalid(errors)
        db.session.add(campaign)
        db.session.flush()
        campaign.slug = unique_slug(slug_base(campaign.title), campaign.id)
        _flush_draft()
    return campaign


def update_draft(campaign: Campaign, user: User, data: Mapping[str, Any]) -> Campaign:
    """Change the fields present in `data` (common fields and the kind's terms).

    Money fields accept Money or typed text ("1,234.50"); the terms section is saved as a
    whole: all of its required fields, or none of them (which removes the terms).
    Raises DraftInvalid with every field's problem; nothing is saved then.
    """
    with unit_of_work():
        campaign = editable_for(campaign.id, user)
        errors: dict[str, str] = {}
        old_title = campaign.title
        _apply(campaign, data, errors)
        if errors:
            raise DraftInvalid(errors)
        if campaign.title != old_title:
            campaign.slug = unique_slug(slug_base(campaign.title), campaign.id)
        campaign.updated_at = utcnow()
        _flush_draft()
    return campaign


def _flush_draft() -> None:
    """Write now; a slug taken by another draft saved at the same moment becomes a Conflict."""
    try:
        db.session.flush()
    except IntegrityError:
        raise Conflict(
            "Someone saved a campaign with the same title at the same moment; please save again.",
            code=ErrorCode.CONFLICT,
        ) from None


# --- applying what was typed -------------------------------------------------------------------


def _apply(campaign: Campaign, data: Mapping[str, Any], errors: dict[str, str]) -> None:
    """Parse `data` onto `campaign` (common fields, then terms); collect problems in `errors`."""
    rules = kind_rules(campaign)
    _apply_texts(campaign, data, errors)
    currency = _apply_money(campaign, data, errors, rules)
    _apply_dates(campaign, data, errors)
    if any(field in data for field in rules.term_fields):
        _apply_terms(campaign, rules, data, currency, errors)


def _apply_texts(campaign: Campaign, data: Mapping[str, Any], errors: dict[str, str]) -> None:
    if "title" in data:
        title = parsing.text(data["title"], "title", MAX_TITLE_LENGTH, errors, "The title")
        if title is None and "title" not in errors:
            errors["title"] = "Enter a title."
        elif title is not None:
            campaign.title = title
    if "summary" in data:
        summary = parsing.text(data["summary"], "summary", MAX_SUMMARY_LENGTH, errors, "The summary")
        if "summary" not in errors:
            campaign.summary = summary or ""
    if "story" in data:
        story = parsing.text(data["story"], "story", MAX_STORY_LENGTH, errors, "The story")
        if "story" not in errors:
            campaign.story = story or ""
            campaign.story_html = render_story(campaign.story)
    if "category" in data:
        category = parsing.choice(HealthCategory, data["category"], "category", errors, "a category")
        if category is not None:
            campaign.category = category
        elif "category" not in errors:
            errors["category"] = "Choose a category."


def _apply_money(
    campaign: Campaign, data: Mapping[str, Any], errors: dict[str, str], rules: KindRules
) -> str:
    """Currency, goal and funding model; returns the currency amounts are parsed in."""
    if "currency" in data:
        currency = str(data["currency"] or "").strip().upper()
        if currency not in CAMPAIGN_CURRENCIES:
            errors["currency"] = f"Choose one of {', '.join(CAMPAIGN_CURRENCIES)}."
        else:
            campaign.currency = currency
    currency = campaign.currency if campaign.currency in CAMPAIGN_CURRENCIES else CAMPAIGN_CURRENCIES[0]
    if "goal" in data:
        goal = parsing.money(data["goal"], currency, "goal", errors, "The goal")
        if goal is None and "goal" not in errors:
            errors["goal"] = "Enter the goal."
        elif goal is not None:
            campaign.goal_amount = goal.amount
    if "funding_model" in data and rules.chooses_funding_model:
        model = parsing.choice(
            FundingModel, data["funding_model"], "funding_model", errors, "a funding model"
        )
        if model is not None:
            campaign.funding_model = model
    return currency


def _apply_dates(campaign: Campaign, data: Mapping[str, Any], errors: dict[str, str]) -> None:
    start, end = campaign.start_at, campaign.end_at
    if "start_at" in data:
        start = parsing.aware_datetime(data["start_at"], "start_at", errors, "The start")
        if start is None and "start_at" not in errors:
            errors["start_at"] = "Enter when the campaign starts."
    if "end_at" in data:
        end = parsing.aware_datetime(data["end_at"], "end_at", errors, "The end")
        if end is None and "end_at" not in errors:
            errors["end_at"] = "Enter when the campaign ends."
    if start is None or end is None or errors.keys() & {"start_at", "end_at"}:
        return
    if "start_at" in data and start > utcnow() + MAX_START_AHEAD:
        errors["start_at"] = "A campaign can be scheduled at most a year ahead."
    check_dates(start, end, errors)
    if not errors.keys() & {"start_at", "end_at"}:
        campaign.start_at, campaign.end_at = start, end


def _apply_terms(
    campaign: Campaign, rules: KindRules, data: Mapping[str, Any], currency: str, errors: dict[str, str]
) -> None:
    raw = rules.current_terms(campaign)
    for field in rules.term_fields:
        if field in data:
            raw[field] = data[field]
    # When the currency changes, saved amounts keep their figures (every campaign currency has
    # two decimals); amounts typed in this request are parsed in the new currency.
    raw = {
        k: Money(v.amount, currency) if isinstance(v, Money) and k not in data else v for k, v in raw.items()
    }
    if all(parsing.blank(raw.get(f)) or raw.get(f) is False for f in rules.term_fields):
        rules.clear_terms(campaign)  # nothing entered: the campaign has no terms yet
        return
    values = rules.parse_terms(raw, currency, errors)
    rules.missing_terms(values, errors)
    if any(field in errors for field in rules.term_fields):
        return
    rules.store_terms(campaign, values, errors)


# --- cover image ----------------------------------------------------------------------------


def set_cover(campaign: Campaign, user: User, data: bytes) -> Campaign:
    """Check, re-encode and store a cover image (see `images.prepare_cover`); replaces the old one.

    The old file is deleted once the change is committed; the new one if it is not.
    """
    jpeg = images.prepare_cover(data)  # before taking the lock: decoding can take a moment
    name = images.store_cover(jpeg)
    try:
        with unit_of_work():
            campaign = editable_for(campaign.id, user)
            old = campaign.cover_image
            campaign.cover_image = name
            campaign.updated_at = utcnow()
            if old:
                after_commit(lambda: images.delete_cover(old))
    except BaseException:
        images.delete_cover(name)
        raise
    return campaign


def remove_cover(campaign: Campaign, user: User) -> Campaign:
    """Take the cover image off a draft; the file goes once the change is committed."""
    with unit_of_work():
        campaign = editable_for(campaign.id, user)
        old = campaign.cover_image
        campaign.cover_image = None
        campaign.updated_at = utcnow()
        if old:
            after_commit(lambda: images.delete_cover(old))
    return campaign
