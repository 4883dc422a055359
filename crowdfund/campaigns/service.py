"""Campaign use cases for campaigners: draft, edit, reward tiers, cover, submit; launching.

A campaign starts as a draft that only members of its organisation can see or edit. It
can be edited while it is a draft or has had changes requested, and is submitted for an
operator's review once `submission_problems` finds nothing missing. Every move of the
lifecycle goes through `transition`, which asks `Campaign.transition_to` and writes a
`CampaignEvent` (who, from, to, why). `launch_due_campaigns` puts approved campaigns live
when their start date arrives; it is safe to run from several workers at once.

Functions that write take the campaign's row lock (`begin_write` + SELECT … FOR UPDATE),
re-check state and membership under the lock, and commit once.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import Decimal
from functools import lru_cache, wraps
from typing import Any, TypeVar

import nh3
from flask import current_app
from markdown_it import MarkdownIt
from sqlalchemy import or_, select
from sqlalchemy.exc import IntegrityError

from crowdfund.accounts.models import Membership, Organisation, User
from crowdfund.campaigns import images
from crowdfund.campaigns.models import (
    Campaign,
    CampaignEvent,
    CampaignKind,
    CampaignState,
    DebtTerms,
    DonationTerms,
    EquityTerms,
    FundingModel,
    HealthCategory,
    InvalidTransition,
    RewardTier,
    SecurityType,
)
from crowdfund.database import begin_write
from crowdfund.errors import Conflict, NotFound, ValidationError
from crowdfund.extensions import db
from crowdfund.models_base import utcnow
from crowdfund.money import Money, MoneyError

F = TypeVar("F", bound=Callable[..., Any])

#: Currencies a campaign can raise money in.
CAMPAIGN_CURRENCIES = ("CNY", "USD", "EUR")
MAX_TITLE_LENGTH = 120
MAX_SUMMARY_LENGTH = 300
MAX_STORY_LENGTH = 20_000
MAX_NAME_LENGTH = 200
MAX_DIAGNOSIS_LENGTH = 2_000
MAX_TIER_DESCRIPTION_LENGTH = 2_000
MAX_SHIPS_TO_LENGTH = 300
MAX_COMMENT_LENGTH = 5_000
MAX_TIERS = 30
MAX_TIER_QUANTITY = 1_000_000
#: Largest goal, target or price: one billion in major units.
MAX_AMOUNT_MINOR = 100_000_000_000
MIN_DURATION = timedelta(days=1)
MAX_DURATION = timedelta(days=60)
#: A start typed as "now" is a minute or so old by the time the draft is submitted.
START_GRACE = timedelta(minutes=10)
#: How far ahead a campaign may be scheduled to start.
MAX_START_AHEAD = timedelta(days=365)
DEFAULT_START_DELAY = timedelta(days=7)
DEFAULT_DURATION = timedelta(days=30)
MAX_ANNUAL_RATE_BP = 3_600
MAX_TERM_MONTHS = 120
#: Slugs that would clash with fixed URLs under /campaigns/.
RESERVED_SLUGS = frozenset({"new", "edit", "studio", "preview", "search"})
MAX_SLUG_BASE = 80

KIND_DESCRIPTIONS: dict[CampaignKind, str] = {
    CampaignKind.REWARD: (
        "Backers pre-order a product or service at a price tier. All-or-nothing by default: "
        "cards are charged only if the goal is reached."
    ),
    CampaignKind.EQUITY: (
        "Investors buy shares in your organisation at a fixed price, between a minimum target "
        "and an oversubscription cap."
    ),
    CampaignKind.DEBT: (
        "Lenders fund a loan at a fixed annual rate over a fixed term; you repay them in instalments."
    ),
    CampaignKind.DONATION: (
        "Donors give without return and receive a receipt. Patient-aid campaigns are paid to the hospital."
    ),
}

#: The fields of each kind's terms section (besides the common fields).
TERM_FIELDS: dict[CampaignKind, tuple[str, ...]] = {
    CampaignKind.REWARD: (),
    CampaignKind.EQUITY: (
        "security_type",
        "price_per_share",
        "pre_money_valuation",
        "min_target",
        "max_target",
        "min_investment",
    ),
    CampaignKind.DEBT: ("annual_rate", "term_months", "min_amount", "max_amount", "min_loan_share"),
    CampaignKind.DONATION: (
        "beneficiary_name",
        "is_patient_aid",
        "patient_name",
        "hospital_name",
        "diagnosis_summary",
    ),
}
#: Term fields that must all be given before the terms can be saved.
REQUIRED_TERM_FIELDS: dict[CampaignKind, tuple[str, ...]] = {
    CampaignKind.REWARD: (),
    CampaignKind.EQUITY: TERM_FIELDS[CampaignKind.EQUITY],
    CampaignKind.DEBT: TERM_FIELDS[CampaignKind.DEBT],
    CampaignKind.DONATION: ("beneficiary_name",),
}
_TERM_LABELS = {
    "security_type": "the type of security",
    "price_per_share": "the price per share",
    "pre_money_valuation": "the pre-money valuation",
    "min_target": "the minimum target",
    "max_target": "the maximum target",
    "min_investment": "the minimum investment",
    "annual_rate": "the annual interest rate",
    "term_months": "the term",
    "min_amount": "the minimum loan amount",
    "max_amount": "the maximum loan amount",
    "min_loan_share": "the smallest loan share",
    "beneficiary_name": "the beneficiary",
}


class DraftInvalid(ValidationError):
    """Several fields are wrong at once; `errors` maps each field name to its message."""

    def __init__(self, errors: dict[str, str], message: str | None = None):
        first_field = next(iter(errors), None)
        super().__init__(
            message or "Please correct the marked fields.", code="draft_invalid", field=first_field
        )
        self.errors = errors


@dataclass(frozen=True)
class Problem:
    """One thing that stops a draft from being submitted; `field` is the form field, if any."""

    field: str | None
    message: str


# ---------------------------------------------------------------------------
# Reading
# ---------------------------------------------------------------------------


def organisations_for(user: User) -> list[Organisation]:
    """The organisations `user` may raise money for, by name."""
    return list(
        db.session.scalars(
            select(Organisation)
            .join(Membership, Membership.organisation_id == Organisation.id)
            .where(Membership.user_id == user.id)
            .order_by(Organisation.legal_name)
        )
    )


def is_member(user: User | None, organisation_id: int) -> bool:
    if user is None or not getattr(user, "is_authenticated", False):
        return False
    return (
        db.session.scalar(
            select(Membership.id).where(
                Membership.user_id == user.id, Membership.organisation_id == organisation_id
            )
        )
        is not None
    )


def campaign_for_member(campaign_id: int, user: User | None) -> Campaign:
    """The campaign if `user` is a member of its organisation; NotFound otherwise (no leak)."""
    campaign = db.session.get(Campaign, campaign_id)
    if campaign is None or not is_member(user, campaign.organisation_id):
        raise NotFound("We could not find that campaign.")
    return campaign


def campaigns_for_user(user: User) -> list[Campaign]:
    """Campaigns of every organisation `user` belongs to, newest first."""
    return list(
        db.session.scalars(
            select(Campaign)
            .join(Membership, Membership.organisation_id == Campaign.organisation_id)
            .where(Membership.user_id == user.id)
            .order_by(Campaign.created_at.desc(), Campaign.id.desc())
        )
    )


def campaign_events(campaign: Campaign) -> list[CampaignEvent]:
    """The campaign's lifecycle history, oldest first."""
    return list(
        db.session.scalars(
            select(CampaignEvent)
            .where(CampaignEvent.campaign_id == campaign.id)
            .order_by(CampaignEvent.created_at, CampaignEvent.id)
        )
    )


def latest_review_comment(campaign: Campaign) -> CampaignEvent | None:
    """The operator's request for changes, while the campaign is waiting for them."""
    if campaign.state is not CampaignState.CHANGES_REQUESTED:
        return None
    return db.session.scalar(
        select(CampaignEvent)
        .where(
            CampaignEvent.campaign_id == campaign.id,
            CampaignEvent.to_state == CampaignState.CHANGES_REQUESTED.value,
        )
        .order_by(CampaignEvent.created_at.desc(), CampaignEvent.id.desc())
        .limit(1)
    )


# ---------------------------------------------------------------------------
# Story, slug
# ---------------------------------------------------------------------------

_STORY_TAGS = {
    "p", "br", "hr", "strong", "em", "b", "i", "u", "s", "del", "ins", "sub", "sup", "mark", "small",
    "h2", "h3", "h4", "h5", "h6", "ul", "ol", "li", "blockquote", "code", "pre", "kbd", "abbr",
    "a", "table", "thead", "tbody", "tr", "th", "td", "caption",
}  # fmt: skip


@lru_cache(maxsize=1)
def _markdown() -> MarkdownIt:
    md = MarkdownIt("commonmark").enable("table")
    # A story's "# Heading" becomes <h2>: the page's only <h1> is the campaign title.
    default_open = md.renderer.rules.get("heading_open")
    default_close = md.renderer.rules.get("heading_close")

    def shift(default):
        def render(self, tokens, idx, options, env):
            token = tokens[idx]
            token.tag = f"h{min(int(token.tag[1]) + 1, 6)}"
            if default is not None:
                return default(tokens, idx, options, env)
            return self.renderToken(tokens, idx, options, env)

        return render

    md.add_render_rule("heading_open", shift(default_open))
    md.add_render_rule("heading_close", shift(default_close))
    return md


def render_story(markdown: str) -> str:
    """Markdown (CommonMark + tables) to safe HTML.

    Normal formatting survives; links get rel="nofollow noopener" and may only be http(s)
    or mailto; images, scripts, styles, iframes, forms and event attributes are removed.
    """
    html = _markdown().render(markdown or "")
    return nh3.clean(
        html,
        tags=_STORY_TAGS,
        clean_content_tags={
            "script",
            "style",
            "iframe",
            "object",
            "embed",
            "noscript",
            "template",
            "textarea",
        },
        attributes={"a": {"href", "title"}, "abbr": {"title"}, "th": {"style"}, "td": {"style"}},
        filter_style_properties={"text-align"},
        link_rel="nofollow noopener",
        url_schemes={"http", "https", "mailto"},
        strip_comments=True,
    ).strip()


def slug_base(title: str) -> str:
    """Lower-case ASCII words joined by hyphens; '' when the title has no Latin letters."""
    ascii_text = unicodedata.normalize("NFKD", title or "").encode("ascii", "ignore").decode("ascii")
    slug = re.sub(r"[^a-z0-9]+", "-", ascii_text.lower()).strip("-")
    if len(slug) > MAX_SLUG_BASE:
        slug = slug[:MAX_SLUG_BASE].rsplit("-", 1)[0] or slug[:MAX_SLUG_BASE]
    return slug


def _unique_slug(base: str, campaign_id: int) -> str:
    if not base or base in RESERVED_SLUGS:
        base = f"campaign-{campaign_id}" if not base else f"{base}-campaign"
    taken = set(
        db.session.scalars(
            select(Campaign.slug).where(
                Campaign.id != campaign_id, or_(Campaign.slug == base, Campaign.slug.like(f"{base}-%"))
            )
        )
    )
    if base not in taken:
        return base
    n = 2
    while f"{base}-{n}" in taken:
        n += 1
    return f"{base}-{n}"


# ---------------------------------------------------------------------------
# Parsing what a campaigner typed
# ---------------------------------------------------------------------------


def _blank(value: Any) -> bool:
    return value is None or (isinstance(value, str) and value.strip() == "")


def _text(value: Any, field: str, max_length: int, errors: dict[str, str], label: str) -> str | None:
    if _blank(value):
        return None
    text = str(value).strip()
    if "\x00" in text:  # PostgreSQL cannot store it, and no one types it
        errors[field] = f"{label} contains a NUL character; remove it."
        return None
    if len(text) > max_length:
        errors[field] = f"{label} can be at most {max_length:,} characters (it has {len(text):,})."
        return None
    return text


def _money(value: Any, currency: str, field: str, errors: dict[str, str], label: str) -> Money | None:
    if _blank(value):
        return None
    try:
        if isinstance(value, Money):
            if value.currency != currency:
                raise MoneyError(f"{label} must be in {currency}.")
            amount = value
        else:
            amount = Money.parse(str(value), currency)
    except MoneyError as exc:
        errors[field] = f"{label}: {exc}"
        return None
    if not amount.is_positive:
        errors[field] = f"{label} must be more than zero."
        return None
    if amount.amount > MAX_AMOUNT_MINOR:
        errors[field] = f"{label} can be at most {Money(MAX_AMOUNT_MINOR, currency).format()}."
        return None
    return amount


def _enum(enum_cls, value: Any, field: str, errors: dict[str, str], label: str):
    if _blank(value):
        return None
    if isinstance(value, enum_cls):
        return value
    try:
        return enum_cls(str(value))
    except ValueError:
        errors[field] = f"Choose {label} from the list."
        return None


def _int(value: Any, field: str, errors: dict[str, str], label: str, low: int, high: int) -> int | None:
    if _blank(value):
        return None
    if isinstance(value, bool):
        errors[field] = f"{label} must be a whole number."
        return None
    try:
        number = int(str(value).strip()) if not isinstance(value, int) else value
    except ValueError:
        errors[field] = f"{label} must be a whole number."
        return None
    if not low <= number <= high:
        errors[field] = f"{label} must be between {low:,} and {high:,}."
        return None
    return number


_RATE = re.compile(r"\d{1,3}(\.\d{1,2})?")


def _rate_bp(value: Any, field: str, errors: dict[str, str]) -> int | None:
    """An annual percentage ("8.5", "8.50 %") as basis points."""
    if _blank(value):
        return None
    text = str(value).strip().rstrip("%").strip()
    if not _RATE.fullmatch(text):
        errors[field] = "Write the interest rate as a percentage with at most two decimals, like 8.25."
        return None
    bp = int(Decimal(text) * 100)
    if bp > MAX_ANNUAL_RATE_BP:
        errors[field] = f"The interest rate must be between 0 and {MAX_ANNUAL_RATE_BP // 100} %."
        return None
    return bp


def _datetime(value: Any, field: str, errors: dict[str, str], label: str) -> datetime | None:
    if _blank(value):
        return None
    if not isinstance(value, datetime) or value.tzinfo is None:
        errors[field] = f"{label} must be a date and time in UTC."
        return None
    return value


def _check_dates(start: datetime, end: datetime, errors: dict[str, str]) -> None:
    if end <= start:
        errors["end_at"] = "The end must be after the start."
    elif end - start < MIN_DURATION:
        errors["end_at"] = "A campaign runs for at least one day."
    elif end - start > MAX_DURATION:
        errors["end_at"] = f"A campaign runs for at most {MAX_DURATION.days} days; pick an earlier end."


# ---------------------------------------------------------------------------
# Drafting
# ---------------------------------------------------------------------------


def use_case(func: F) -> F:
    """Roll the session back when a use case fails, so no half-made change or lock survives."""

    @wraps(func)
    def wrapper(*args, **kwargs):
        try:
            return func(*args, **kwargs)
        except BaseException:
            db.session.rollback()
            raise

    return wrapper  # type: ignore[return-value]


def lock_campaign(campaign_id: int) -> Campaign:
    """Load the campaign afresh and lock its row until the transaction ends."""
    campaign = db.session.execute(
        select(Campaign)
        .where(Campaign.id == campaign_id)
        .with_for_update()
        .execution_options(populate_existing=True)
    ).scalar_one_or_none()
    if campaign is None:
        raise NotFound("We could not find that campaign.")
    return campaign


def _editable_for(campaign_id: int, user: User) -> Campaign:
    """Lock the campaign and check `user` may edit it now."""
    begin_write()
    campaign = lock_campaign(campaign_id)
    if not is_member(user, campaign.organisation_id):
        raise NotFound("We could not find that campaign.")
    if not campaign.is_editable:
        raise Conflict(
            f"This campaign is {campaign.state.label.lower()} and can no longer be edited.",
            code="not_editable",
        )
    return campaign


def default_dates(now: datetime) -> tuple[datetime, datetime]:
    """A week from now (on the hour) for 30 days: what a new draft starts with."""
    start = (now + DEFAULT_START_DELAY).replace(minute=0, second=0, microsecond=0)
    return start, start + DEFAULT_DURATION


@use_case
def create_draft(
    user: User, organisation: Organisation, kind: CampaignKind | str, data: Mapping[str, Any]
) -> Campaign:
    """Start a draft campaign of `kind` for `organisation`, of which `user` must be a member.

    `data` needs a title, category, currency and goal; any other campaign field may be
    given too (see `update_draft`). Dates default to a week from now, for 30 days.
    """
    errors: dict[str, str] = {}
    kind = _enum(CampaignKind, kind, "kind", errors, "the kind of campaign")
    if kind is None and "kind" not in errors:
        errors["kind"] = "Choose the kind of campaign."
    for field, label in (
        ("title", "a title"),
        ("category", "a category"),
        ("currency", "a currency"),
        ("goal", "the goal"),
    ):
        if _blank(data.get(field)):
            errors.setdefault(field, f"Enter {label}." if field in ("title", "goal") else f"Choose {label}.")
    if errors:
        raise DraftInvalid(errors)
    if organisation is None or not is_member(user, organisation.id):
        raise NotFound("We could not find that organisation.", field="organisation")

    now = utcnow()
    begin_write()
    start, end = default_dates(now)
    campaign = Campaign(
        kind=kind,
        organisation_id=organisation.id,
        created_by_id=user.id,
        title="",
        slug=f"draft-{images.random_token()}",
        summary="",
        story="",
        story_html="",
        currency=current_app.config.get("DEFAULT_CURRENCY", "CNY"),
        start_at=start,
        end_at=end,
        state=CampaignState.DRAFT,
        funding_model=FundingModel.KEEP_IT_ALL
        if kind is CampaignKind.DONATION
        else FundingModel.ALL_OR_NOTHING,
        created_at=now,
        updated_at=now,
    )
    _apply(campaign, data, errors)
    if errors:
        raise DraftInvalid(errors)
    db.session.add(campaign)
    db.session.flush()
    campaign.slug = _unique_slug(slug_base(campaign.title), campaign.id)
    _commit_draft()
    return campaign


@use_case
def update_draft(campaign: Campaign, user: User, data: Mapping[str, Any]) -> Campaign:
    """Change the fields present in `data` (common fields and the kind's terms).

    Money fields accept Money or typed text ("1,234.50"); the terms section is saved as a
    whole: all of its required fields, or none of them (which removes the terms).
    Raises DraftInvalid with every field's problem; nothing is saved then.
    """
    campaign = _editable_for(campaign.id, user)
    errors: dict[str, str] = {}
    old_title = campaign.title
    _apply(campaign, data, errors)
    if errors:
        raise DraftInvalid(errors)
    if campaign.title != old_title:
        campaign.slug = _unique_slug(slug_base(campaign.title), campaign.id)
    campaign.updated_at = utcnow()
    _commit_draft()
    return campaign


def _commit_draft() -> None:
    """Commit; a slug taken by another draft saved at the same moment becomes a Conflict."""
    try:
        db.session.commit()
    except IntegrityError:
        raise Conflict(
            "Someone saved a campaign with the same title at the same moment; please save again."
        ) from None


def _apply(campaign: Campaign, data: Mapping[str, Any], errors: dict[str, str]) -> None:
    """Parse `data` onto `campaign` (common fields, then terms); collect problems in `errors`."""
    kind = campaign.kind
    if "title" in data:
        title = _text(data["title"], "title", MAX_TITLE_LENGTH, errors, "The title")
        if title is None and "title" not in errors:
            errors["title"] = "Enter a title."
        elif title is not None:
            campaign.title = title
    if "summary" in data:
        summary = _text(data["summary"], "summary", MAX_SUMMARY_LENGTH, errors, "The summary")
        if "summary" not in errors:
            campaign.summary = summary or ""
    if "story" in data:
        story = _text(data["story"], "story", MAX_STORY_LENGTH, errors, "The story")
        if "story" not in errors:
            campaign.story = story or ""
            campaign.story_html = render_story(campaign.story)
    if "category" in data:
        category = _enum(HealthCategory, data["category"], "category", errors, "a category")
        if category is not None:
            campaign.category = category
        elif "category" not in errors:
            errors["category"] = "Choose a category."
    if "currency" in data:
        currency = str(data["currency"] or "").strip().upper()
        if currency not in CAMPAIGN_CURRENCIES:
            errors["currency"] = f"Choose one of {', '.join(CAMPAIGN_CURRENCIES)}."
        else:
            campaign.currency = currency
    currency = campaign.currency if campaign.currency in CAMPAIGN_CURRENCIES else CAMPAIGN_CURRENCIES[0]
    if "goal" in data:
        goal = _money(data["goal"], currency, "goal", errors, "The goal")
        if goal is None and "goal" not in errors:
            errors["goal"] = "Enter the goal."
        elif goal is not None:
            campaign.goal_amount = goal.amount
    if "funding_model" in data and kind is CampaignKind.REWARD:
        model = _enum(FundingModel, data["funding_model"], "funding_model", errors, "a funding model")
        if model is not None:
            campaign.funding_model = model
    start = (
        _datetime(data["start_at"], "start_at", errors, "The start")
        if "start_at" in data
        else campaign.start_at
    )
    end = _datetime(data["end_at"], "end_at", errors, "The end") if "end_at" in data else campaign.end_at
    if "start_at" in data and start is None and "start_at" not in errors:
        errors["start_at"] = "Enter when the campaign starts."
    if "end_at" in data and end is None and "end_at" not in errors:
        errors["end_at"] = "Enter when the campaign ends."
    if start is not None and end is not None and "start_at" not in errors and "end_at" not in errors:
        if "start_at" in data and start > utcnow() + MAX_START_AHEAD:
            errors["start_at"] = "A campaign can be scheduled at most a year ahead."
        _check_dates(start, end, errors)
        if not errors.keys() & {"start_at", "end_at"}:
            campaign.start_at, campaign.end_at = start, end
    if any(field in data for field in TERM_FIELDS[kind]):
        _apply_terms(campaign, data, currency, errors)


def _current_terms(campaign: Campaign) -> dict[str, Any]:
    """The saved terms as the values `_apply_terms` understands."""
    cur = campaign.currency
    if campaign.kind is CampaignKind.EQUITY and campaign.equity_terms is not None:
        t = campaign.equity_terms
        return {
            "security_type": t.security_type,
            "price_per_share": Money(t.price_per_share_amount, cur),
            "pre_money_valuation": Money(t.pre_money_valuation_amount, cur),
            "min_target": Money(t.min_target_amount, cur),
            "max_target": Money(t.max_target_amount, cur),
            "min_investment": Money(t.min_investment_amount, cur),
        }
    if campaign.kind is CampaignKind.DEBT and campaign.debt_terms is not None:
        t = campaign.debt_terms
        return {
            "annual_rate": Decimal(t.annual_rate_bp) / 100,
            "term_months": t.term_months,
            "min_amount": Money(t.min_amount, cur),
            "max_amount": Money(t.max_amount, cur),
            "min_loan_share": Money(t.min_loan_share_amount, cur),
        }
    if campaign.kind is CampaignKind.DONATION and campaign.donation_terms is not None:
        t = campaign.donation_terms
        return {
            "beneficiary_name": t.beneficiary_name,
            "is_patient_aid": t.is_patient_aid,
            "patient_name": t.patient_name,
            "hospital_name": t.hospital_name,
            "diagnosis_summary": t.diagnosis_summary,
        }
    return {}


def _apply_terms(campaign: Campaign, data: Mapping[str, Any], currency: str, errors: dict[str, str]) -> None:
    kind = campaign.kind
    raw = _current_terms(campaign)
    for field in TERM_FIELDS[kind]:
        if field in data:
            raw[field] = data[field]
    # When the currency changes, saved amounts keep their figures (every campaign currency has
    # two decimals); amounts typed in this request are parsed in the new currency.
    raw = {
        k: Money(v.amount, currency) if isinstance(v, Money) and k not in data else v for k, v in raw.items()
    }

    if all(_blank(raw.get(f)) or raw.get(f) is False for f in TERM_FIELDS[kind]):
        # Nothing entered: the campaign has no terms yet.
        campaign.equity_terms = campaign.debt_terms = campaign.donation_terms = None
        return

    if kind is CampaignKind.EQUITY:
        values = {
            "security_type": _enum(
                SecurityType, raw.get("security_type"), "security_type", errors, "a type of security"
            ),
            "price_per_share": _money(
                raw.get("price_per_share"), currency, "price_per_share", errors, "The price per share"
            ),
            "pre_money_valuation": _money(
                raw.get("pre_money_valuation"),
                currency,
                "pre_money_valuation",
                errors,
                "The pre-money valuation",
            ),
            "min_target": _money(raw.get("min_target"), currency, "min_target", errors, "The minimum target"),
            "max_target": _money(raw.get("max_target"), currency, "max_target", errors, "The maximum target"),
            "min_investment": _money(
                raw.get("min_investment"), currency, "min_investment", errors, "The minimum investment"
            ),
        }
    elif kind is CampaignKind.DEBT:
        rate = raw.get("annual_rate")
        values = {
            "annual_rate": _rate_bp(rate, "annual_rate", errors),
            "term_months": _int(
                raw.get("term_months"), "term_months", errors, "The term in months", 1, MAX_TERM_MONTHS
            ),
            "min_amount": _money(
                raw.get("min_amount"), currency, "min_amount", errors, "The minimum loan amount"
            ),
            "max_amount": _money(
                raw.get("max_amount"), currency, "max_amount", errors, "The maximum loan amount"
            ),
            "min_loan_share": _money(
                raw.get("min_loan_share"), currency, "min_loan_share", errors, "The smallest loan share"
            ),
        }
    else:
        values = {
            "beneficiary_name": _text(
                raw.get("beneficiary_name"), "beneficiary_name", MAX_NAME_LENGTH, errors, "The beneficiary"
            ),
            "is_patient_aid": bool(raw.get("is_patient_aid")),
            "patient_name": _text(
                raw.get("patient_name"), "patient_name", MAX_NAME_LENGTH, errors, "The patient's name"
            ),
            "hospital_name": _text(
                raw.get("hospital_name"), "hospital_name", MAX_NAME_LENGTH, errors, "The hospital"
            ),
            "diagnosis_summary": _text(
                raw.get("diagnosis_summary"),
                "diagnosis_summary",
                MAX_DIAGNOSIS_LENGTH,
                errors,
                "The diagnosis summary",
            ),
        }
    for field in REQUIRED_TERM_FIELDS[kind]:
        if values.get(field) is None and field not in errors:
            errors[field] = f"Enter {_TERM_LABELS[field]}, or leave this whole section empty for now."
    if any(field in errors for field in TERM_FIELDS[kind]):
        return

    if kind is CampaignKind.EQUITY:
        if values["max_target"] < values["min_target"]:
            errors["max_target"] = "The maximum target cannot be below the minimum target."
            return
        terms = campaign.equity_terms or EquityTerms()
        terms.security_type = values["security_type"]
        for name in ("price_per_share", "pre_money_valuation", "min_target", "max_target", "min_investment"):
            setattr(terms, f"{name}_amount", values[name].amount)
        campaign.equity_terms = terms
    elif kind is CampaignKind.DEBT:
        if values["max_amount"] < values["min_amount"]:
            errors["max_amount"] = "The maximum loan amount cannot be below the minimum."
            return
        terms = campaign.debt_terms or DebtTerms()
        terms.annual_rate_bp = values["annual_rate"]
        terms.term_months = values["term_months"]
        terms.repayment_frequency = "monthly"
        terms.min_amount = values["min_amount"].amount
        terms.max_amount = values["max_amount"].amount
        terms.min_loan_share_amount = values["min_loan_share"].amount
        campaign.debt_terms = terms
    else:
        terms = campaign.donation_terms or DonationTerms()
        for name, value in values.items():
            setattr(terms, name, value)
        campaign.donation_terms = terms


# ---------------------------------------------------------------------------
# Reward tiers
# ---------------------------------------------------------------------------


def _parse_tier(data: Mapping[str, Any], currency: str) -> dict[str, Any]:
    errors: dict[str, str] = {}
    title = _text(data.get("title"), "title", MAX_TITLE_LENGTH, errors, "The title")
    if title is None and "title" not in errors:
        errors["title"] = "Give the reward a title."
    description = _text(
        data.get("description"), "description", MAX_TIER_DESCRIPTION_LENGTH, errors, "The description"
    )
    price = _money(data.get("price"), currency, "price", errors, "The price")
    if price is None and "price" not in errors:
        errors["price"] = "Enter the price."
    quantity = _int(
        data.get("quantity_limit"), "quantity_limit", errors, "The quantity", 1, MAX_TIER_QUANTITY
    )
    delivery = data.get("estimated_delivery")
    if _blank(delivery):
        delivery = None
    elif not isinstance(delivery, date) or isinstance(delivery, datetime):
        errors["estimated_delivery"] = "Enter the estimated delivery as a date."
        delivery = None
    ships = bool(data.get("ships"))
    ships_to = _text(data.get("ships_to"), "ships_to", MAX_SHIPS_TO_LENGTH, errors, "Where it ships")
    if ships and ships_to is None and "ships_to" not in errors:
        errors["ships_to"] = "Say where the reward ships to, e.g. Worldwide or China."
    if errors:
        raise DraftInvalid(errors)
    return {
        "title": title,
        "description": description or "",
        "price_amount": price.amount,
        "quantity_limit": quantity,
        "estimated_delivery": delivery,
        "ships": ships,
        "ships_to": ships_to if ships else "",
    }


def _reward_campaign(campaign: Campaign, user: User) -> Campaign:
    campaign = _editable_for(campaign.id, user)
    if campaign.kind is not CampaignKind.REWARD:
        raise Conflict("Only reward campaigns have reward tiers.", code="not_reward")
    return campaign


def _tier_of(campaign: Campaign, tier_id: int) -> RewardTier:
    tier = next((t for t in campaign.tiers if t.id == tier_id), None)
    if tier is None:
        raise NotFound("We could not find that reward.")
    return tier


@use_case
def add_tier(campaign: Campaign, user: User, data: Mapping[str, Any]) -> RewardTier:
    """Add a reward tier at the end of the list."""
    campaign = _reward_campaign(campaign, user)
    values = _parse_tier(data, campaign.currency)
    if len(campaign.tiers) >= MAX_TIERS:
        raise ValidationError(f"A campaign can have at most {MAX_TIERS} reward tiers.", code="too_many_tiers")
    position = max((t.position for t in campaign.tiers), default=-1) + 1
    tier = RewardTier(position=position, claimed=0, **values)
    campaign.tiers.append(tier)
    campaign.updated_at = utcnow()
    db.session.commit()
    return tier


@use_case
def update_tier(campaign: Campaign, user: User, tier_id: int, data: Mapping[str, Any]) -> RewardTier:
    """Change a reward tier of an editable reward campaign."""
    campaign = _reward_campaign(campaign, user)
    tier = _tier_of(campaign, tier_id)
    values = _parse_tier(data, campaign.currency)
    for name, value in values.items():
        setattr(tier, name, value)
    campaign.updated_at = utcnow()
    db.session.commit()
    return tier


@use_case
def remove_tier(campaign: Campaign, user: User, tier_id: int) -> None:
    """Delete a reward tier of an editable reward campaign."""
    campaign = _reward_campaign(campaign, user)
    tier = _tier_of(campaign, tier_id)
    campaign.tiers.remove(tier)
    campaign.updated_at = utcnow()
    db.session.commit()


# ---------------------------------------------------------------------------
# Cover image
# ---------------------------------------------------------------------------


@use_case
def set_cover(campaign: Campaign, user: User, data: bytes) -> Campaign:
    """Check, re-encode and store a cover image (see `images.prepare_cover`); replaces the old one."""
    campaign_id = campaign.id
    jpeg = images.prepare_cover(data)  # before taking the lock: decoding can take a moment
    campaign = _editable_for(campaign_id, user)
    name = images.store_cover(jpeg)
    old = campaign.cover_image
    campaign.cover_image = name
    campaign.updated_at = utcnow()
    try:
        db.session.commit()
    except Exception:
        images.delete_cover(name)
        raise
    if old:
        images.delete_cover(old)
    return campaign


@use_case
def remove_cover(campaign: Campaign, user: User) -> Campaign:
    """Take the cover image off a draft."""
    campaign = _editable_for(campaign.id, user)
    old = campaign.cover_image
    campaign.cover_image = None
    campaign.updated_at = utcnow()
    db.session.commit()
    if old:
        images.delete_cover(old)
    return campaign


# ---------------------------------------------------------------------------
# Submission
# ---------------------------------------------------------------------------


def patient_aid_cap() -> Money:
    """PATIENT_AID_CAP from the config ("CNY 500000") as Money."""
    code, _, amount = str(current_app.config.get("PATIENT_AID_CAP", "CNY 500000")).strip().partition(" ")
    return Money.parse(amount, code)


def submission_problems(campaign: Campaign, now: datetime) -> list[Problem]:
    """Everything that keeps the campaign from being submitted; empty when it is ready."""
    problems: list[Problem] = []
    add = problems.append
    if not campaign.title.strip():
        add(Problem("title", "Give the campaign a title."))
    if not campaign.summary.strip():
        add(Problem("summary", "Write a one-paragraph summary."))
    if not campaign.story.strip():
        add(Problem("story", "Tell your story: who you are, what the money is for, and how it will be used."))
    if campaign.goal_amount <= 0:
        add(Problem("goal", "Set a goal."))
    duration = campaign.end_at - campaign.start_at
    if not MIN_DURATION <= duration <= MAX_DURATION:
        add(Problem("end_at", f"The campaign must run between 1 and {MAX_DURATION.days} days."))
    if campaign.start_at < now - START_GRACE:
        add(Problem("start_at", "The start date is in the past; choose a start from now on."))
    if campaign.category is HealthCategory.PATIENT_AID and campaign.kind is not CampaignKind.DONATION:
        add(Problem("category", "Patient aid is raised as donations; choose another category."))

    goal = campaign.goal
    if campaign.kind is CampaignKind.REWARD:
        if not campaign.tiers:
            add(Problem(None, "Add at least one reward tier."))
    elif campaign.kind is CampaignKind.EQUITY:
        t = campaign.equity_terms
        if t is None:
            add(Problem("min_target", "Fill in the equity terms."))
        else:
            if t.max_target_amount < t.min_target_amount:
                add(Problem("max_target", "The maximum target cannot be below the minimum target."))
            if t.min_investment_amount > t.max_target_amount:
                add(Problem("min_investment", "The minimum investment cannot exceed the maximum target."))
            if t.price_per_share_amount <= 0:
                add(Problem("price_per_share", "The price per share must be more than zero."))
            if t.min_target_amount != campaign.goal_amount:
                add(
                    Problem(
                        "goal",
                        f"For equity the goal is the minimum target: set the goal to "
                        f"{t.money('min_target').format()} or change the minimum target.",
                    )
                )
    elif campaign.kind is CampaignKind.DEBT:
        t = campaign.debt_terms
        if t is None:
            add(Problem("min_amount", "Fill in the loan terms."))
        elif not t.min_amount <= campaign.goal_amount <= t.max_amount:
            add(
                Problem(
                    "goal",
                    f"The goal must lie between the minimum ({Money(t.min_amount, campaign.currency)}) and the "
                    f"maximum ({Money(t.max_amount, campaign.currency)}) loan amount.",
                )
            )
    else:
        t = campaign.donation_terms
        if t is None:
            add(Problem("beneficiary_name", "Say who receives the donations."))
        elif t.is_patient_aid:
            if not (t.patient_name or "").strip():
                add(Problem("patient_name", "Enter the patient's name as on the hospital's documents."))
            if not (t.hospital_name or "").strip():
                add(Problem("hospital_name", "Enter the hospital that treats the patient; payouts go to it."))
            if not (t.diagnosis_summary or "").strip():
                add(Problem("diagnosis_summary", "Summarise the diagnosis."))
            cap = patient_aid_cap()
            if campaign.currency != cap.currency:
                add(Problem("currency", f"Patient-aid campaigns raise money in {cap.currency}."))
            elif goal > cap:
                add(Problem("goal", f"A patient-aid campaign can raise at most {cap.format()}."))
            if campaign.category is not HealthCategory.PATIENT_AID:
                add(Problem("category", "Choose the Patient aid category for a patient-aid campaign."))
        elif campaign.category is HealthCategory.PATIENT_AID:
            add(Problem("is_patient_aid", "Tick 'This is patient aid' and give the patient's details."))
    return problems


def transition(
    campaign: Campaign,
    target: CampaignState,
    actor: User | None,
    comment: str = "",
    now: datetime | None = None,
) -> CampaignEvent:
    """Move the campaign to `target` and record who did it and why; Conflict if not allowed."""
    source = campaign.state
    try:
        campaign.transition_to(target)
    except InvalidTransition as exc:
        raise Conflict(str(exc), code="invalid_transition") from exc
    event = CampaignEvent(
        campaign_id=campaign.id,
        actor_id=actor.id if actor is not None else None,
        from_state=source.value,
        to_state=target.value,
        comment=comment,
        created_at=now or utcnow(),
    )
    db.session.add(event)
    return event


@use_case
def submit_for_review(
    campaign: Campaign, user: User, note: str = "", now: datetime | None = None
) -> Campaign:
    """Send a complete draft (or a corrected one) to the operators' review queue.

    Raises DraftInvalid listing every problem when something is missing.
    """
    now = now or utcnow()
    campaign = _editable_for(campaign.id, user)
    note = (note or "").strip()
    if len(note) > MAX_COMMENT_LENGTH:
        raise ValidationError(f"The note can be at most {MAX_COMMENT_LENGTH:,} characters.", field="note")
    problems = submission_problems(campaign, now)
    if problems:
        errors: dict[str, str] = {}
        for i, problem in enumerate(problems):
            errors.setdefault(problem.field or f"_problem{i}", problem.message)
        raise DraftInvalid(
            errors, "The campaign is not ready for review yet: " + " ".join(p.message for p in problems)
        )
    transition(campaign, CampaignState.SUBMITTED, user, note, now)
    campaign.submitted_at = now
    campaign.updated_at = now
    db.session.commit()
    return campaign


# ---------------------------------------------------------------------------
# Going live
# ---------------------------------------------------------------------------


def launch(campaign: Campaign, actor: User | None, now: datetime, comment: str = "") -> None:
    """Approved → live, stamped with `now`; the caller holds the lock and commits."""
    transition(campaign, CampaignState.LIVE, actor, comment, now)
    campaign.launched_at = now
    campaign.updated_at = now


@use_case
def launch_due_campaigns(now: datetime | None = None) -> int:
    """Put every approved campaign whose start has come live; returns how many.

    Each due row is locked (FOR UPDATE SKIP LOCKED on PostgreSQL; the write lock on
    SQLite) and re-checked, so two workers running this at once launch each campaign once.
    """
    now = now or utcnow()
    begin_write()
    due = list(
        db.session.scalars(
            select(Campaign)
            .where(Campaign.state == CampaignState.APPROVED, Campaign.start_at <= now)
            .order_by(Campaign.id)
            .with_for_update(skip_locked=True)
            .execution_options(populate_existing=True)
        )
    )
    launched = 0
    for campaign in due:
        if campaign.state is CampaignState.APPROVED and campaign.start_at <= now:
            launch(campaign, None, now, "The start date arrived.")
            launched += 1
    db.session.commit()
    return launched
