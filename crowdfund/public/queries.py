"""Read-only queries behind the public pages: what the home page, the listing and the
campaign page show.

Only campaigns in a public state are ever listed. Totals come from the stored counters
(`raised_amount`, `backer_count`), never from summing pledges, and every query eager-loads
what its page shows, so a page runs the same small number of SQL statements however many
campaigns, tiers or pledges there are.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime

from sqlalchemy import Select, and_, case, func, or_, select
from sqlalchemy.orm import joinedload, selectinload
from sqlalchemy.sql.elements import ColumnElement

from crowdfund.accounts.models import User
from crowdfund.campaigns.models import PUBLIC_STATES, Campaign, CampaignKind, CampaignState, HealthCategory
from crowdfund.extensions import db

S = CampaignState

#: Public states after a campaign has closed (a live campaign past its end is closed too).
CLOSED_PUBLIC_STATES = frozenset({S.SUCCEEDED, S.FAILED, S.SETTLING, S.SETTLED})
#: Closed states that can have succeeded; "funded" also needs the goal to have been reached.
FUNDED_STATES = frozenset({S.SUCCEEDED, S.SETTLING, S.SETTLED})

#: The listing's status filter: value -> label. The first is the default.
STATUSES: dict[str, str] = {"live": "Live", "funded": "Funded", "closed": "Closed", "all": "All"}
#: The listing's sort orders: value -> label. The first is the default.
SORTS: dict[str, str] = {
    "newest": "Newest",
    "ending": "Ending soon",
    "funded": "Most funded",
    "backers": "Most backed",
}
#: Longest search text used; anything longer is cut.
MAX_QUERY_LENGTH = 100
#: Largest page number parsed; bigger numbers mean "the last page".
MAX_PAGE = 1_000_000


@dataclass(frozen=True)
class CampaignFilters:
    """The listing's filters, parsed from a query string; unknown values are ignored."""

    kind: CampaignKind | None = None
    category: HealthCategory | None = None
    status: str = "live"
    q: str = ""
    sort: str = "newest"
    page: int = 1

    @classmethod
    def from_args(cls, args: Mapping[str, str]) -> CampaignFilters:
        """Parse request arguments; nothing a visitor types can raise here."""
        return cls(
            kind=_enum_or_none(CampaignKind, args.get("kind")),
            category=_enum_or_none(HealthCategory, args.get("category")),
            status=_choice(args.get("status"), STATUSES),
            q=clean_query(args.get("q")),
            sort=_choice(args.get("sort"), SORTS),
            page=_page_number(args.get("page")),
        )

    def as_args(self, **changes: object) -> dict[str, str | int]:
        """Query-string arguments for these filters (with `changes`), defaults left out."""
        f = replace(self, **changes)
        args: dict[str, str | int] = {}
        if f.kind:
            args["kind"] = f.kind.value
        if f.category:
            args["category"] = f.category.value
        if f.status != next(iter(STATUSES)):
            args["status"] = f.status
        if f.q:
            args["q"] = f.q
        if f.sort != next(iter(SORTS)):
            args["sort"] = f.sort
        if f.page != 1:
            args["page"] = f.page
        return args

    @property
    def is_filtered(self) -> bool:
        return bool(self.kind or self.category or self.q or self.status != next(iter(STATUSES)))


def _enum_or_none(enum_cls, value: str | None):
    try:
        return enum_cls(value) if value else None
    except ValueError:
        return None


def _choice(value: str | None, choices: Mapping[str, str]) -> str:
    return value if value in choices else next(iter(choices))


def _page_number(value: str | None) -> int:
    try:
        page = int(str(value).strip()) if value is not None else 1
    except ValueError:
        return 1
    return min(max(page, 1), MAX_PAGE)


def clean_query(value: str | None) -> str:
    """Search text as used: whitespace collapsed, NUL bytes dropped, at most 100 characters."""
    if not value:
        return ""
    return " ".join(value.replace("\x00", " ").split())[:MAX_QUERY_LENGTH]


def like_pattern(text: str) -> str:
    """A LIKE pattern matching `text` anywhere, with `\\`, `%` and `_` taken literally."""
    escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


# ---------------------------------------------------------------------------
# Conditions
# ---------------------------------------------------------------------------


def is_public() -> ColumnElement[bool]:
    return Campaign.state.in_(PUBLIC_STATES)


def is_live(now: datetime) -> ColumnElement[bool]:
    """Live and not yet past its end (a live campaign due to start later is included)."""
    return and_(Campaign.state == S.LIVE, Campaign.end_at > now)


def status_condition(status: str, now: datetime) -> ColumnElement[bool]:
    """The listing's status filter as SQL, always inside the public states."""
    if status == "live":
        return is_live(now)
    if status == "funded":
        return and_(Campaign.state.in_(FUNDED_STATES), Campaign.raised_amount >= Campaign.goal_amount)
    if status == "closed":
        return or_(
            Campaign.state.in_(CLOSED_PUBLIC_STATES), and_(Campaign.state == S.LIVE, Campaign.end_at <= now)
        )
    return is_public()


def _order_by(sort: str, now: datetime) -> tuple:
    if sort == "ending":
        # Campaigns still open first (soonest end first), then those already ended.
        return (case((Campaign.end_at > now, 0), else_=1), Campaign.end_at.asc(), Campaign.id.asc())
    if sort == "funded":
        return (Campaign.raised_amount.desc(), Campaign.id.desc())
    if sort == "backers":
        return (Campaign.backer_count.desc(), Campaign.id.desc())
    return (Campaign.start_at.desc(), Campaign.id.desc())


def _card_query() -> Select:
    """Campaigns with what a card shows (the organisation) loaded in the same query."""
    return select(Campaign).options(joinedload(Campaign.organisation))


# ---------------------------------------------------------------------------
# Listing
# ---------------------------------------------------------------------------


@dataclass
class CampaignPage:
    """One page of the listing, with what the pagination links need."""

    items: list[Campaign]
    page: int
    pages: int
    total: int
    per_page: int
    #: The page asked for when it was past the last one (then `page` is the last page).
    requested_page: int | None = None
    numbers: list[int | None] = field(default_factory=list)

    @property
    def has_prev(self) -> bool:
        return self.page > 1

    @property
    def has_next(self) -> bool:
        return self.page < self.pages

    @property
    def first_index(self) -> int:
        return (self.page - 1) * self.per_page + 1 if self.items else 0

    @property
    def last_index(self) -> int:
        return (self.page - 1) * self.per_page + len(self.items)


def page_numbers(page: int, pages: int, around: int = 2) -> list[int | None]:
    """Page links to show: the first, the last and `around` either side; None is a gap."""
    shown = sorted({1, pages, *range(max(1, page - around), min(pages, page + around) + 1)})
    numbers: list[int | None] = []
    for n in shown:
        if numbers and n - numbers[-1] > 1:  # type: ignore[operator]
            numbers.append(None)
        numbers.append(n)
    return numbers


def search_campaigns(filters: CampaignFilters, now: datetime, per_page: int) -> CampaignPage:
    """The listing: public campaigns matching `filters`, one page of them.

    Two queries whatever the data: a count, then the page with organisations joined.
    A page past the last gives the last page (and remembers which page was asked for).
    """
    conditions = [is_public(), status_condition(filters.status, now)]
    if filters.kind:
        conditions.append(Campaign.kind == filters.kind)
    if filters.category:
        conditions.append(Campaign.category == filters.category)
    if filters.q:
        pattern = like_pattern(filters.q)
        conditions.append(
            or_(Campaign.title.ilike(pattern, escape="\\"), Campaign.summary.ilike(pattern, escape="\\"))
        )
    where = and_(*conditions)

    total = db.session.scalar(select(func.count(Campaign.id)).where(where)) or 0
    pages = max(1, -(-total // per_page))
    page, requested = filters.page, None
    if page > pages:
        page, requested = pages, filters.page
    items = list(
        db.session.scalars(
            _card_query()
            .where(where)
            .order_by(*_order_by(filters.sort, now))
            .limit(per_page)
            .offset((page - 1) * per_page)
        )
    )
    return CampaignPage(
        items=items,
        page=page,
        pages=pages,
        total=total,
        per_page=per_page,
        requested_page=requested if total else None,
        numbers=page_numbers(page, pages),
    )


# ---------------------------------------------------------------------------
# Home page
# ---------------------------------------------------------------------------


@dataclass
class HomeData:
    featured: list[Campaign]
    ending_soon: list[Campaign]
    #: Live campaigns per kind (every kind present, zero when none).
    live_counts: dict[CampaignKind, int]

    @property
    def live_total(self) -> int:
        return sum(self.live_counts.values())


def home_data(now: datetime, featured_limit: int = 6, ending_limit: int = 4) -> HomeData:
    """Featured live campaigns (featured first, then most funded), those ending soonest,
    and the number of live campaigns of each kind: three queries."""
    open_now = and_(is_live(now), Campaign.start_at <= now)
    featured = list(
        db.session.scalars(
            _card_query()
            .where(open_now)
            .order_by(Campaign.featured.desc(), Campaign.raised_amount.desc(), Campaign.id.desc())
            .limit(featured_limit)
        )
    )
    ending_soon = list(
        db.session.scalars(
            _card_query()
            .where(open_now)
            .order_by(Campaign.end_at.asc(), Campaign.id.asc())
            .limit(ending_limit)
        )
    )
    counts = dict.fromkeys(CampaignKind, 0)
    for kind, count in db.session.execute(
        select(Campaign.kind, func.count(Campaign.id)).where(open_now).group_by(Campaign.kind)
    ):
        counts[kind] = count
    return HomeData(featured=featured, ending_soon=ending_soon, live_counts=counts)


# ---------------------------------------------------------------------------
# Campaign page
# ---------------------------------------------------------------------------

#: Longest slug looked up; longer ones cannot exist.
MAX_SLUG_LENGTH = 140


def campaign_by_slug(slug: str) -> Campaign | None:
    """The campaign with everything its page shows, in two queries (the campaign with its
    organisation and terms joined; its reward tiers), or None."""
    if not slug or len(slug) > MAX_SLUG_LENGTH or "\x00" in slug:
        return None
    return (
        db.session.execute(
            select(Campaign)
            .where(Campaign.slug == slug)
            .options(
                joinedload(Campaign.organisation),
                joinedload(Campaign.equity_terms),
                joinedload(Campaign.debt_terms),
                joinedload(Campaign.donation_terms),
                selectinload(Campaign.tiers),
            )
        )
        .unique()
        .scalar_one_or_none()
    )


def can_view(campaign: Campaign, user: User | None) -> bool:
    """Anyone sees a public campaign; otherwise only its organisation's members and operators."""
    if campaign.is_public:
        return True
    if user is None or not getattr(user, "is_authenticated", False):
        return False
    return bool(user.is_operator) or campaign.organisation.has_member(user)
