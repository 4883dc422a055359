"""The campaign lifecycle: submit for review, launch on the start date, close at the end.

Every move goes through `transition`, which asks `Campaign.transition_to` (the table of
allowed moves) and appends a `CampaignEvent`: who moved it, from what, to what, and why —
a person's comment, or for the system's own moves an `EventCode` with its parameters.
Operators' decisions (approve, request changes, reject) are in `crowdfund.review`.

`launch_due_campaigns` puts approved campaigns live when their start arrives, and
`close_due_campaigns` closes live campaigns whose end has come (or that closed early,
see the kind's `closes_early`), succeeded or failed by the kind's success rule. Both are
safe to run from several workers at once: each campaign is re-checked under its row lock.
Pages never rely on these jobs having run: `Campaign.is_open_at` treats a campaign past
its end as closed.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import or_, select

from crowdfund.accounts.models import User
from crowdfund.campaigns.access import editable_for
from crowdfund.campaigns.drafting import MAX_DURATION, MIN_DURATION, DraftInvalid
from crowdfund.campaigns.kinds import KINDS, Problem, kind_rules
from crowdfund.campaigns.models import Campaign, CampaignEvent, CampaignState, EventCode
from crowdfund.database import lock, retry_on_lock, unit_of_work
from crowdfund.errors import ErrorCode, ValidationError
from crowdfund.extensions import db
from crowdfund.models_base import utcnow

#: A start typed as "now" is a minute or so old by the time the draft is submitted.
START_GRACE = timedelta(minutes=10)
MAX_COMMENT_LENGTH = 5_000


# --- reading --------------------------------------------------------------------------------


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


# --- moving ---------------------------------------------------------------------------------


def transition(
    campaign: Campaign,
    target: CampaignState,
    actor: User | None,
    comment: str = "",
    now: datetime | None = None,
    *,
    code: EventCode | None = None,
    params: dict[str, Any] | None = None,
) -> CampaignEvent:
    """Move the campaign to `target` and record who did it and why.

    `comment` is what a person wrote; a move the system makes passes `code` (and
    `params`) instead. Raises InvalidTransition (a Conflict) for a move not allowed.
    """
    now = now or utcnow()
    source = campaign.state
    campaign.transition_to(target, now)
    event = CampaignEvent(
        campaign_id=campaign.id,
        actor_id=actor.id if actor is not None else None,
        from_state=source.value,
        to_state=target.value,
        comment=comment,
        code=code.value if code is not None else None,
        params=params,
        created_at=now,
    )
    db.session.add(event)
    return event


# --- submission -----------------------------------------------------------------------------


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
    if not MIN_DURATION <= campaign.end_at - campaign.start_at <= MAX_DURATION:
        add(Problem("end_at", f"The campaign must run between 1 and {MAX_DURATION.days} days."))
    if campaign.start_at < now - START_GRACE:
        add(Problem("start_at", "The start date is in the past; choose a start from now on."))
    return problems + kind_rules(campaign).submission_problems(campaign, now)


def check_comment(text: str | None, *, required: bool, field: str, what: str) -> str:
    """A person's comment on a move, stripped; refused when required and empty, or too long."""
    comment = (text or "").strip()
    if required and not comment:
        raise ValidationError(f"Write {what}: the campaigner sees it.", code=ErrorCode.REQUIRED, field=field)
    if len(comment) > MAX_COMMENT_LENGTH:
        raise ValidationError(
            f"Keep it under {MAX_COMMENT_LENGTH:,} characters.", code=ErrorCode.TOO_LONG, field=field
        )
    return comment


def submit_for_review(
    campaign: Campaign, user: User, note: str = "", now: datetime | None = None
) -> Campaign:
    """Send a complete draft (or a corrected one) to the operators' review queue.

    Raises DraftInvalid listing every problem when something is missing.
    """
    now = now or utcnow()
    note = (note or "").strip()
    if len(note) > MAX_COMMENT_LENGTH:
        raise ValidationError(
            f"The note can be at most {MAX_COMMENT_LENGTH:,} characters.",
            code=ErrorCode.VALIDATION_ERROR,
            field="note",
        )
    with unit_of_work():
        campaign = editable_for(campaign.id, user)
        problems = submission_problems(campaign, now)
        if problems:
            errors: dict[str, str] = {}
            for i, problem in enumerate(problems):
                errors.setdefault(problem.field or f"_problem{i}", problem.message)
            raise DraftInvalid(
                errors, "The campaign is not ready for review yet: " + " ".join(p.message for p in problems)
            )
        transition(campaign, CampaignState.SUBMITTED, user, note, now)
    return campaign


# --- going live -----------------------------------------------------------------------------


def launch(campaign: Campaign, actor: User | None, now: datetime, code: EventCode) -> None:
    """Approved → live, stamped with `now`; the caller holds the lock in its unit of work."""
    transition(campaign, CampaignState.LIVE, actor, now=now, code=code)


@retry_on_lock
def launch_due_campaigns(now: datetime | None = None) -> int:
    """Put every approved campaign whose start has come live; returns how many.

    Each due row is locked (FOR UPDATE SKIP LOCKED on PostgreSQL; the write lock on
    SQLite) and re-checked, so two workers running this at once launch each campaign once.
    """
    now = now or utcnow()
    launched = 0
    with unit_of_work():
        due = db.session.scalars(
            select(Campaign)
            .where(Campaign.state == CampaignState.APPROVED, Campaign.start_at <= now)
            .order_by(Campaign.id)
            .with_for_update(skip_locked=True)
            .execution_options(populate_existing=True)
        )
        for campaign in list(due):
            if campaign.state is CampaignState.APPROVED and campaign.start_at <= now:
                launch(campaign, None, now, EventCode.LAUNCHED_ON_START)
                launched += 1
    return launched


# --- closing --------------------------------------------------------------------------------


def close_reason(campaign: Campaign, now: datetime) -> EventCode | None:
    """Why the campaign must close now, or None while it stays open."""
    if campaign.state is not CampaignState.LIVE:
        return None
    if campaign.end_at <= now:
        return EventCode.CLOSED_AT_DEADLINE
    if kind_rules(campaign).closes_early(campaign, now):
        return EventCode.CLOSED_EARLY
    return None


def succeeded(campaign: Campaign) -> bool:
    """Whether the campaign met its kind's target when it closes."""
    return kind_rules(campaign).succeeded(campaign)


def _due_ids(now: datetime) -> list[int]:
    early = [cond for rules in KINDS.values() if (cond := rules.early_close_filter(now)) is not None]
    query = (
        select(Campaign.id)
        .where(Campaign.state == CampaignState.LIVE, or_(Campaign.end_at <= now, *early))
        .order_by(Campaign.id)
    )
    return list(db.session.scalars(query))


@retry_on_lock
def close_campaign_if_due(campaign_id: int, now: datetime) -> CampaignState | None:
    """Close one campaign if it is due (under its lock); returns the new state or None."""
    with unit_of_work():
        campaign = lock(Campaign, campaign_id)
        reason = close_reason(campaign, now) if campaign is not None else None
        if reason is None:
            return None
        target = CampaignState.SUCCEEDED if succeeded(campaign) else CampaignState.FAILED
        params = {
            "raised_minor": campaign.raised_amount,
            "goal_minor": campaign.goal_amount,
            "currency": campaign.currency,
        }
        transition(campaign, target, None, now=now, code=reason, params=params)
    return target


def close_due_campaigns(now: datetime | None = None) -> int:
    """Close every live campaign that is due; returns how many this call closed."""
    now = now or utcnow()
    return sum(1 for campaign_id in _due_ids(now) if close_campaign_if_due(campaign_id, now) is not None)
