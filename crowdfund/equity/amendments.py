"""Amending a live equity round, and each committed investor's reconfirmation.

Drafting edits a campaign only before review; a live round's terms change only through
`amend_round` (a member of the organisation or an operator). A material change — the
price per share, the maximum, the minimum investment, the type of security or the
valuation — after the first commitment asks every committed investor to reconfirm within
EQUITY_RECONFIRM_BUSINESS_DAYS business days (Monday to Friday). The deadline must fall
before commitments stop being cancellable (48 hours before the end), or the amendment is
refused: an investor always has the time to answer before the round closes.

An investor reconfirms (`reconfirm`: at a new price their commitment becomes the whole
shares it buys, any remainder is no longer committed) or declines (`decline`: the
commitment is cancelled), while the round is open. `lapse_due_reconfirmations` (the
`equity.lapse` job) cancels the commitments nobody reconfirmed in time — or by the time the
round closed, whatever its deadline — and tells each investor (an `InvestorNotice`).

While any reconfirmation is pending the campaign side knows it: `EquityTerms.reconfirm_until`
is set by the amendment and cleared when the last answer is in or lapsed. Until then the
round does not close early (`EquityRules.closes_early`) and, once closed, its settlement
does not open (`EquityRules.settlement_waits`): nothing is ever charged for a commitment
whose last reconfirmation is pending, declined or lapsed, and nothing is issued for it
(`service.blocked_pledges`).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from flask import current_app
from sqlalchemy import exists, or_, select

from crowdfund.campaigns.access import is_member
from crowdfund.campaigns.drafting import DraftInvalid
from crowdfund.campaigns.kinds import INVESTMENT_CANCELLATION_CUTOFF, kind_rules
from crowdfund.campaigns.models import Campaign, CampaignKind, CampaignState, EquityTerms
from crowdfund.database import lock, retry_on_lock, unit_of_work, valid_id
from crowdfund.engine.counters import count_in, count_out, lock_campaign
from crowdfund.engine.models import Pledge, PledgeState
from crowdfund.engine.service import get_own_pledge
from crowdfund.equity.models import (
    InvestorNotice,
    Reconfirmation,
    ReconfirmationState,
    RoundAmendment,
)
from crowdfund.errors import Conflict, ErrorCode, NotFound, NoticeCode, ValidationError
from crowdfund.extensions import db
from crowdfund.models_base import utcnow
from crowdfund.money import Money

if TYPE_CHECKING:
    from crowdfund.accounts.models import User

#: The terms an amendment may change (the minimum target stays: it is the campaign's goal).
AMENDABLE_FIELDS = ("security_type", "price_per_share", "pre_money_valuation", "max_target", "min_investment")
#: While the round is in one of these states an investor can still answer; once it has
#: closed every answer still pending lapses at once.
OPEN_STATES = (CampaignState.LIVE, CampaignState.SUSPENDED)
#: Closed with no settlement opened yet (a succeeded round's waits for the answers): a lapsed
#: commitment is cancelled before anything is charged.
_NOT_YET_SETTLED = (*OPEN_STATES, CampaignState.SUCCEEDED, CampaignState.FAILED)


def add_business_days(moment: datetime, days: int) -> datetime:
    """`moment` plus `days` business days (Monday to Friday), at the same time of day."""
    out = moment
    added = 0
    while added < days:
        out += timedelta(days=1)
        if out.weekday() < 5:
            added += 1
    return out


def _when(moment: datetime) -> str:
    return moment.strftime("%d %b %Y %H:%M UTC")


def _snapshot(campaign: Campaign) -> dict[str, Any]:
    t = campaign.equity_terms
    return {
        "security_type": t.security_type.value,
        "price_per_share": t.price_per_share_amount,
        "pre_money_valuation": t.pre_money_valuation_amount,
        "min_target": t.min_target_amount,
        "max_target": t.max_target_amount,
        "min_investment": t.min_investment_amount,
    }


def can_amend(user: User | None, campaign: Campaign) -> bool:
    if user is None or not getattr(user, "is_authenticated", False):
        return False
    return bool(user.is_operator) or is_member(user, campaign.organisation_id)


def _raw_terms(campaign: Campaign, data: dict[str, Any]) -> dict[str, Any]:
    current = kind_rules(campaign).current_terms(campaign)
    raw: dict[str, Any] = {}
    for name in (*AMENDABLE_FIELDS, "min_target"):
        given = data.get(name) if name in AMENDABLE_FIELDS else None
        raw[name] = given if given not in (None, "") else current[name]
    return raw


def _check_terms(campaign: Campaign, values: dict[str, Any], errors: dict[str, str]) -> None:
    for name in AMENDABLE_FIELDS:
        if values.get(name) is None:
            errors.setdefault(name, "Enter this term.")
    if errors:
        return
    raised = Money(campaign.raised_amount, campaign.currency)
    if values["max_target"] < raised:
        errors["max_target"] = f"Investors have committed {raised} already: the maximum cannot be below it."
    elif values["max_target"] < values["min_target"]:
        errors["max_target"] = "The maximum target cannot be below the minimum target."
    if values["min_investment"] > values["max_target"]:
        errors["min_investment"] = "The minimum investment cannot exceed the maximum target."


@retry_on_lock
def amend_round(
    user: User, campaign_id: Any, data: dict[str, Any], *, now: datetime | None = None
) -> RoundAmendment:
    """Change a live equity round's terms; committed investors are asked to reconfirm."""
    now = now or utcnow()
    campaign = db.session.get(Campaign, campaign_id) if valid_id(campaign_id) else None
    if campaign is None or not can_amend(user, campaign):
        raise NotFound("We could not find that campaign.", code=ErrorCode.NOT_FOUND)
    with unit_of_work():
        campaign = lock_campaign(campaign.id)
        if campaign.kind is not CampaignKind.EQUITY or campaign.state is not CampaignState.LIVE:
            raise Conflict(code=ErrorCode.ROUND_NOT_AMENDABLE)
        before = _snapshot(campaign)
        rules = kind_rules(campaign)
        errors: dict[str, str] = {}
        values = rules.parse_terms(_raw_terms(campaign, data), campaign.currency, errors)
        _check_terms(campaign, values, errors)
        if not errors:
            rules.store_terms(campaign, values, errors)
        if errors:
            raise DraftInvalid(errors)
        db.session.flush()
        after = _snapshot(campaign)
        if after == before:
            raise ValidationError(code=ErrorCode.AMENDMENT_UNCHANGED)
        committed = list(
            db.session.scalars(
                select(Pledge)
                .where(Pledge.campaign_id == campaign.id, Pledge.state == PledgeState.ACTIVE)
                .order_by(Pledge.id)
            )
        )
        deadline = add_business_days(now, current_app.config["EQUITY_RECONFIRM_BUSINESS_DAYS"])
        if committed and deadline > campaign.end_at - INVESTMENT_CANCELLATION_CUTOFF:
            raise Conflict(
                f"Investors would have until {_when(deadline)} to reconfirm, but commitments close "
                f"{_when(campaign.end_at - INVESTMENT_CANCELLATION_CUTOFF)}: amend the terms earlier "
                "or not at all.",
                code=ErrorCode.AMENDMENT_TOO_LATE,
            )
        amendment = RoundAmendment(
            campaign_id=campaign.id,
            amended_by_id=user.id,
            before=before,
            after=after,
            reconfirm_by=deadline,
            asked=len(committed),
            created_at=now,
        )
        db.session.add(amendment)
        db.session.flush()
        _ask_to_reconfirm(campaign, amendment, committed, now)
        campaign.equity_terms.reconfirm_until = deadline if committed else None
    return amendment


def _ask_to_reconfirm(
    campaign: Campaign, amendment: RoundAmendment, committed: list[Pledge], now: datetime
) -> None:
    earlier = db.session.scalars(
        select(Reconfirmation).where(
            Reconfirmation.campaign_id == campaign.id,
            Reconfirmation.state.in_([ReconfirmationState.PENDING, ReconfirmationState.CONFIRMED]),
        )
    )
    for old in earlier:
        old.transition_to(ReconfirmationState.SUPERSEDED, now)
    for pledge in committed:
        db.session.add(
            Reconfirmation(
                amendment_id=amendment.id,
                campaign_id=campaign.id,
                pledge_id=pledge.id,
                user_id=pledge.user_id,
                state=ReconfirmationState.PENDING,
                deadline=amendment.reconfirm_by,
                created_at=now,
            )
        )
        _notify(pledge, campaign, NoticeCode.RECONFIRM_REQUESTED, amendment.reconfirm_by, now)


def _notify(
    pledge: Pledge, campaign: Campaign, code: ErrorCode | NoticeCode, deadline: datetime, now: datetime
) -> None:
    db.session.add(
        InvestorNotice(
            user_id=pledge.user_id,
            campaign_id=campaign.id,
            pledge_id=pledge.id,
            code=code.value,
            params={"campaign": campaign.title, "deadline": _when(deadline)},
            created_at=now,
        )
    )


def pending_for_pledge(pledge_id: int) -> Reconfirmation | None:
    return db.session.scalar(
        select(Reconfirmation)
        .where(Reconfirmation.pledge_id == pledge_id, Reconfirmation.state == ReconfirmationState.PENDING)
        .order_by(Reconfirmation.id.desc())
        .limit(1)
    )


def pending_for_pledges(pledge_ids: list[int]) -> dict[int, Reconfirmation]:
    """Each pledge's reconfirmation waiting for an answer (one query)."""
    if not pledge_ids:
        return {}
    return {
        r.pledge_id: r
        for r in db.session.scalars(
            select(Reconfirmation).where(
                Reconfirmation.pledge_id.in_(pledge_ids),
                Reconfirmation.state == ReconfirmationState.PENDING,
            )
        )
    }


def _locked_answer(user: User, pledge_id: Any, now: datetime) -> tuple[Campaign, Pledge, Reconfirmation]:
    campaign = lock_campaign(get_own_pledge(user, pledge_id).campaign_id)
    pledge = lock(Pledge, pledge_id)
    pending = pending_for_pledge(pledge.id)
    if (
        pending is None
        or now >= pending.deadline
        or pledge.state is not PledgeState.ACTIVE
        or campaign.state not in OPEN_STATES
    ):
        raise Conflict(code=ErrorCode.RECONFIRMATION_CLOSED)
    return campaign, pledge, lock(Reconfirmation, pending.id)


def _end_hold_if_answered(campaign: Campaign) -> None:
    """Clear `reconfirm_until` once no reconfirmation of the (locked) round is pending."""
    terms = campaign.equity_terms
    if terms is None or terms.reconfirm_until is None:
        return
    db.session.flush()
    pending = db.session.scalar(
        select(Reconfirmation.id)
        .where(
            Reconfirmation.campaign_id == campaign.id,
            Reconfirmation.state == ReconfirmationState.PENDING,
        )
        .limit(1)
    )
    if pending is None:
        terms.reconfirm_until = None


@retry_on_lock
def reconfirm(user: User, pledge_id: Any, *, now: datetime | None = None) -> Reconfirmation:
    """The investor accepts the amended terms: at the new price their commitment is the whole
    shares it buys (any remainder is no longer committed)."""
    now = now or utcnow()
    with unit_of_work():
        campaign, pledge, answer = _locked_answer(user, pledge_id, now)
        terms = campaign.equity_terms
        price = terms.price_per_share_amount
        shares = pledge.amount_amount // price
        if shares * price < terms.min_investment_amount:
            raise ValidationError(
                f"At the new terms your {pledge.amount} buys {shares} shares, below the minimum "
                f"investment of {terms.money('min_investment')}: decline and invest again instead.",
                code=ErrorCode.BELOW_MINIMUM,
            )
        if shares * price != pledge.amount_amount:
            count_out(campaign, pledge, None)
            pledge.amount_amount = shares * price
            count_in(campaign, pledge, None)
        pledge.shares = shares
        pledge.updated_at = now
        answer.transition_to(ReconfirmationState.CONFIRMED, now)
        _end_hold_if_answered(campaign)
    return answer


@retry_on_lock
def decline(user: User, pledge_id: Any, *, now: datetime | None = None) -> Reconfirmation:
    """The investor refuses the amended terms: the commitment is cancelled at once."""
    now = now or utcnow()
    with unit_of_work():
        campaign, pledge, answer = _locked_answer(user, pledge_id, now)
        pledge.transition_to(PledgeState.CANCELLED, now)
        pledge.updated_at = now
        count_out(campaign, pledge, None)
        answer.transition_to(ReconfirmationState.DECLINED, now)
        _notify(pledge, campaign, NoticeCode.RECONFIRM_DECLINED, answer.deadline, now)
        _end_hold_if_answered(campaign)
    return answer


def lapse_due_reconfirmations(*, now: datetime | None = None, limit: int = 500) -> int:
    """Cancel every commitment whose reconfirmation deadline has passed, or whose round has
    closed before it was answered; how many lapsed. Also ends any stale hold."""
    now = now or utcnow()
    due = db.session.execute(
        select(Reconfirmation.id, Reconfirmation.campaign_id)
        .join(Campaign, Campaign.id == Reconfirmation.campaign_id)
        .where(
            Reconfirmation.state == ReconfirmationState.PENDING,
            or_(Reconfirmation.deadline <= now, Campaign.state.not_in(OPEN_STATES)),
        )
        .order_by(Reconfirmation.campaign_id, Reconfirmation.id)
        .limit(limit)
    ).all()
    lapsed = sum(1 for rid, cid in due if _lapse(rid, cid, now))
    for campaign_id in _held_without_pending():
        _end_hold(campaign_id)
    return lapsed


@retry_on_lock
def _lapse(reconfirmation_id: int, campaign_id: int, now: datetime) -> bool:
    with unit_of_work():
        campaign = lock_campaign(campaign_id)
        pledge_id = db.session.scalar(
            select(Reconfirmation.pledge_id).where(Reconfirmation.id == reconfirmation_id)
        )
        pledge = lock(Pledge, pledge_id)
        answer = lock(Reconfirmation, reconfirmation_id)
        if answer.state is not ReconfirmationState.PENDING or (
            now < answer.deadline and campaign.state in OPEN_STATES
        ):
            return False
        answer.transition_to(ReconfirmationState.LAPSED, now)
        if pledge.state is PledgeState.ACTIVE and campaign.state in _NOT_YET_SETTLED:
            pledge.transition_to(PledgeState.CANCELLED, now)
            pledge.updated_at = now
            count_out(campaign, pledge, None)
        _notify(pledge, campaign, ErrorCode.NOT_RECONFIRMED, min(answer.deadline, now), now)
        _end_hold_if_answered(campaign)
    return True


def _held_without_pending() -> list[int]:
    """Rounds whose hold is set with nothing left to answer (none in normal running)."""
    pending = exists().where(
        Reconfirmation.campaign_id == EquityTerms.campaign_id,
        Reconfirmation.state == ReconfirmationState.PENDING,
    )
    return list(
        db.session.scalars(
            select(EquityTerms.campaign_id).where(EquityTerms.reconfirm_until.is_not(None), ~pending)
        )
    )


@retry_on_lock
def _end_hold(campaign_id: int) -> None:
    with unit_of_work():
        _end_hold_if_answered(lock_campaign(campaign_id))
