"""Pledging use cases: place, preview, change and cancel pledges; the investor profile.

Every use case that touches a campaign's money is one unit of work (`unit_of_work`):
it locks rows in the global order — the campaign, then reward tiers by id, then the
investor profile, then the pledge — checks under those locks that the campaign is open,
the tier has stock, the round's maximum, the appeal's cap and the investor's 12-month
limit hold, writes the pledge and moves the stored counters (see `engine.counters`), and
commits once. Counters therefore always equal what the counted pledges add up to,
however many backers pledge at once.

What differs by campaign kind (the terms a request comes to, whether it is charged at
close, whether the investment limit applies, until when it can be cancelled) is asked of
the kind's class in `crowdfund.campaigns.kinds`.

A per-form idempotency token (unique per backer) makes a resubmitted form return the
pledge it already created; the same token with a different request is refused with
`idempotency_conflict`. Donations are charged at once in named steps (record the
pending pledge; charge through payments; record the outcome): see `engine.donations`.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from flask import current_app
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError, OperationalError

from crowdfund.accounts.models import User
from crowdfund.campaigns.kinds import KindRules, PledgeTerms, kind_rules, patient_aid_cap
from crowdfund.campaigns.models import CLOSED_STATES, Campaign, CampaignState, RewardTier
from crowdfund.database import lock, retry_on_lock, unit_of_work, valid_id
from crowdfund.engine import donations
from crowdfund.engine.counters import count_in, count_out, lock_campaign, lock_tiers
from crowdfund.engine.limits import convert, invested_within_window, investment_limit
from crowdfund.engine.models import COUNTED_STATES, InvestorProfile, Pledge, PledgeState
from crowdfund.errors import Conflict, ErrorCode, NotFound, ValidationError
from crowdfund.extensions import db
from crowdfund.models_base import utcnow
from crowdfund.money import CURRENCIES, Money
from crowdfund.payments.models import PaymentMethod

__all__ = [
    "Pledge",
    "PledgeState",
    "InvestorProfile",
    "PledgeRequest",
    "PaymentDeclined",
    "PledgePreview",
    "preview_pledge",
    "place_pledge",
    "change_pledge",
    "cancel_pledge",
    "get_own_pledge",
    "list_own_pledges",
    "get_investor_profile",
    "save_investor_profile",
    "investment_summary",
    "reconcile_pending_donations",
]

MAX_TOKEN_LENGTH = 100

PaymentDeclined = donations.PaymentDeclined
reconcile_pending_donations = donations.reconcile_pending_donations


@dataclass
class PledgeRequest:
    """What a backer asks for; which fields matter depends on the campaign's kind."""

    #: "No reward" reward pledge, equity (or `shares`), debt and donation amount.
    amount: Money | None = None
    tier_id: int | None = None
    quantity: int = 1
    #: Reward: optional extra on top of the tier price.
    extra: Money | None = None
    shipping_address: str | None = None
    #: Equity/debt: the backer ticked the risk acknowledgement.
    risk_acknowledged: bool = False
    #: Donation: optional public message and anonymity.
    message: str | None = None
    anonymous: bool = False
    payment_method_id: int | None = None
    #: Per-form token / API Idempotency-Key: the same token returns the same pledge.
    idempotency_token: str | None = None
    #: Equity: whole shares (instead of `amount`).
    shares: int | None = None


@dataclass(frozen=True)
class InvestmentSummary:
    limit: Money | None
    used: Money
    remaining: Money | None
    currency: str


# --- reading -----------------------------------------------------------------------------


def get_own_pledge(user: User, pledge_id: int) -> Pledge:
    """The backer's own pledge; NotFound for anyone else's (or none)."""
    pledge = db.session.get(Pledge, pledge_id) if valid_id(pledge_id) else None
    if pledge is None or pledge.user_id != user.id:
        raise NotFound("We could not find that pledge.", code=ErrorCode.NOT_FOUND)
    return pledge


def list_own_pledges(user: User) -> list[Pledge]:
    """The backer's pledges, newest first."""
    return list(
        db.session.scalars(
            select(Pledge)
            .where(Pledge.user_id == user.id)
            .order_by(Pledge.created_at.desc(), Pledge.id.desc())
        )
    )


def get_investor_profile(user: User) -> InvestorProfile | None:
    return db.session.scalar(select(InvestorProfile).where(InvestorProfile.user_id == user.id))


def investment_summary(user: User, *, now: datetime | None = None) -> InvestmentSummary | None:
    """The investor's 12-month limit, what is used and what is left; None without a profile."""
    profile = get_investor_profile(user)
    if profile is None:
        return None
    now = now or utcnow()
    limit = investment_limit(profile)
    used = invested_within_window(user.id, profile.currency, now)
    remaining = None if limit is None else max(limit - used, Money.zero(profile.currency))
    return InvestmentSummary(limit=limit, used=used, remaining=remaining, currency=profile.currency)


# --- investor profile --------------------------------------------------------------------


def save_investor_profile(
    user: User, *, currency: str, annual_income: Money, net_worth: Money, accredited: bool
) -> InvestorProfile:
    """Create or update what the investor states about income, net worth and accreditation."""
    if currency not in CURRENCIES or currency not in current_app.config["INVESTMENT_LIMIT_FX"]:
        raise ValidationError(
            "Choose one of the listed currencies.", code=ErrorCode.VALIDATION_ERROR, field="currency"
        )
    for field, value in (("annual_income", annual_income), ("net_worth", net_worth)):
        if not isinstance(value, Money) or value.currency != currency:
            raise ValidationError(
                f"Enter the amount in {currency}.", code=ErrorCode.WRONG_CURRENCY, field=field
            )
        if value.amount < 0:
            raise ValidationError(
                "The amount cannot be negative.", code=ErrorCode.VALIDATION_ERROR, field=field
            )
    try:
        return _store_investor_profile(user, currency, annual_income, net_worth, accredited)
    except IntegrityError:  # two first saves at once: the other one created the row
        return _store_investor_profile(user, currency, annual_income, net_worth, accredited)


@retry_on_lock
def _store_investor_profile(
    user: User, currency: str, annual_income: Money, net_worth: Money, accredited: bool
) -> InvestorProfile:
    with unit_of_work():
        profile = _lock_profile(user)
        if profile is None:
            profile = InvestorProfile(user_id=user.id)
            db.session.add(profile)
        profile.currency = currency
        profile.annual_income_amount = annual_income.amount
        profile.net_worth_amount = net_worth.amount
        profile.accredited = bool(accredited)
    return profile


def _lock_profile(user: User, load=lock) -> InvestorProfile | None:
    profile_id = db.session.scalar(select(InvestorProfile.id).where(InvestorProfile.user_id == user.id))
    return load(InvestorProfile, profile_id) if profile_id is not None else None


def _read(model: type, ident: Any) -> Any:
    """`database.lock` without the lock: the row as it is now (for checks that write nothing)."""
    if not valid_id(ident):
        return None
    return db.session.execute(
        select(model).where(model.id == ident).execution_options(populate_existing=True)
    ).scalar_one_or_none()


# --- checks ------------------------------------------------------------------------------


def _fmt(when: datetime) -> str:
    return when.strftime("%d %b %Y %H:%M UTC")


def check_open(campaign: Campaign, now: datetime) -> None:
    """Raise campaign_closed / campaign_not_open unless the campaign takes pledges now."""
    if campaign.is_open_at(now):
        return
    if campaign.state in CLOSED_STATES or (campaign.state is CampaignState.LIVE and now >= campaign.end_at):
        raise Conflict(
            f"This campaign closed on {_fmt(campaign.end_at)} and takes no more pledges.",
            code=ErrorCode.CAMPAIGN_CLOSED,
        )
    if campaign.state is CampaignState.SUSPENDED:
        message = "This campaign is suspended while our operators look into it; pledges are paused."
    elif campaign.state in (CampaignState.APPROVED, CampaignState.LIVE):
        message = f"This campaign opens on {_fmt(campaign.start_at)}."
    else:
        message = "This campaign is not open for pledges."
    raise Conflict(message, code=ErrorCode.CAMPAIGN_NOT_OPEN)


def _card_refused(message: str) -> ValidationError:
    return ValidationError(message, code=ErrorCode.PAYMENT_METHOD_REQUIRED, field="payment_method_id")


def _payment_method(user: User, payment_method_id: int | None, now: datetime) -> PaymentMethod:
    """The card the pledge will be charged to: the one chosen, else the backer's default."""
    from crowdfund.payments import service as payments

    if payment_method_id is None:
        method = payments.default_payment_method(user)
        if method is None:
            raise _card_refused("Add a card before you pledge. Nothing is charged now unless you donate.")
    else:
        try:
            if not valid_id(payment_method_id):
                raise NotFound("not a card id", code=ErrorCode.NOT_FOUND)
            method = payments.get_payment_method(user, payment_method_id)
        except NotFound:
            raise _card_refused("Choose one of your saved cards.") from None
        if not method.is_usable or method.gateway != payments.gateway_name():
            raise _card_refused(
                f"Your card {method.label} cannot be charged; confirm it or choose another card."
            )
    if method.is_expired_at(now):
        raise _card_refused(f"Your card {method.label} has expired; add a new card.")
    return method


def _check_investment_limit(user: User, amount: Money, now: datetime, load=lock) -> None:
    """Refuse an equity/debt commitment that would pass the investor's 12-month limit."""
    profile = _lock_profile(user, load)
    if profile is None:
        raise ValidationError(
            "Before you invest or lend, state your income, net worth and accreditation in your investor profile.",
            code=ErrorCode.INVESTOR_PROFILE_REQUIRED,
        )
    limit = investment_limit(profile)
    if limit is None:
        return
    used = invested_within_window(user.id, profile.currency, now)
    wanted = convert(amount, profile.currency)
    if used + wanted > limit:
        left = max(limit - used, Money.zero(profile.currency))
        raise Conflict(
            f"This would pass your 12-month investment limit of {limit}: you have committed {used}, "
            f"so at most {left} more is possible.",
            code=ErrorCode.LIMIT_EXCEEDED,
            field="amount",
        )


def _check_appeal_cap(campaign: Campaign, amount: Money) -> None:
    """A patient-aid appeal never raises more than the cap: raised + pending + this gift."""
    terms = campaign.donation_terms
    if terms is None or not terms.is_patient_aid:
        return
    cap = patient_aid_cap()
    if cap.currency != campaign.currency:
        return  # refused at submission: a patient-aid appeal raises in the cap's currency
    pending = db.session.scalar(
        select(func.coalesce(func.sum(Pledge.amount_amount), 0)).where(
            Pledge.campaign_id == campaign.id, Pledge.state == PledgeState.PENDING
        )
    )
    left = max(cap.amount - campaign.raised_amount - int(pending or 0), 0)
    if amount.amount > left:
        raise Conflict(
            f"This appeal can raise at most {cap}; at most {Money(left, cap.currency)} more can be given now.",
            code=ErrorCode.OVER_CAMPAIGN_CAP,
            field="amount",
        )


def _check_pledge(
    user: User, campaign: Campaign, req: PledgeRequest, now: datetime, load=lock
) -> tuple[PledgeTerms, PaymentMethod]:
    """Every check a new pledge must pass; returns its terms and the card to charge.

    `load` reads the tier and investor-profile rows: `lock` when placing, `_read` for a
    preview (which must not queue behind writers).
    """
    check_open(campaign, now)
    method = _payment_method(user, req.payment_method_id, now)
    rules = kind_rules(campaign)
    tiers = lock_tiers(campaign, rules.tier_ids(req), load)
    terms = rules.pledge_terms(campaign, req, tiers)
    if rules.investment:
        _check_investment_limit(user, terms.amount, now, load)
    _check_appeal_cap(campaign, terms.amount)
    return terms, method


# --- preview -----------------------------------------------------------------------------


@dataclass(frozen=True)
class PledgePreview:
    """What confirming a pledge would do: shown on the review step, nothing is written."""

    campaign: Campaign
    amount: Money
    tier: RewardTier | None
    quantity: int
    extra: Money | None
    shares: int | None
    shipping_address: str | None
    message: str | None
    anonymous: bool
    payment_method: PaymentMethod
    #: Donations are charged at once; the other kinds only if the campaign succeeds.
    charged_now: bool
    #: Until when the backer may cancel (None: never, for donations).
    cancellation_deadline: datetime | None


def preview_pledge(
    user: User, campaign_id: int, req: PledgeRequest, *, now: datetime | None = None
) -> PledgePreview:
    """Run every check `place_pledge` runs and say what would happen, without writing anything.

    A read, not a unit of work: it takes no write lock (SQLite) and no row lock (the rows
    are read with `_read`, not `lock`), so a preview never queues behind pledges being
    placed; the read transaction is ended in `finally`, whether the checks pass or refuse.
    """
    now = now or utcnow()
    try:
        campaign = _read(Campaign, campaign_id)
        if campaign is None:
            raise NotFound("We could not find that campaign.", code=ErrorCode.NOT_FOUND)
        terms, method = _check_pledge(user, campaign, req, now, load=_read)
        rules = kind_rules(campaign)
        return PledgePreview(
            campaign=campaign,
            amount=terms.amount,
            tier=terms.tier,
            quantity=terms.quantity,
            extra=terms.extra,
            shares=terms.shares,
            shipping_address=terms.shipping_address,
            message=terms.message,
            anonymous=terms.anonymous,
            payment_method=method,
            charged_now=not rules.charge_at_close,
            cancellation_deadline=rules.cancellation_deadline(campaign),
        )
    finally:
        db.session.rollback()


# --- placing -----------------------------------------------------------------------------


def place_pledge(user: User, campaign_id: int, req: PledgeRequest, *, now: datetime | None = None) -> Pledge:
    """Record a pledge (charge-at-close kinds) or make a donation (charged at once).

    The same `idempotency_token` again returns the pledge it created, changing nothing —
    and drives a donation left pending (a crash, a timeout) to its outcome; with a
    different request it is refused (`idempotency_conflict`). Raises ValidationError,
    Conflict (sold_out, over_maximum, over_campaign_cap, limit_exceeded, campaign_closed,
    campaign_not_open), NotFound, or PaymentDeclined for a donation the card refused.
    """
    now = now or utcnow()
    token = _clean_token(req.idempotency_token)
    digest = request_digest(campaign_id, req)
    _refuse_if_sold_out(user, campaign_id, req, token, now)
    pledge = record_pledge(user, campaign_id, req, token, digest, now)
    if pledge.state is PledgeState.PENDING:
        pledge = _complete_or_leave_pending(pledge)
    if pledge.state is PledgeState.FAILED and not kind_rules(pledge.kind).charge_at_close:
        raise PaymentDeclined.for_pledge(pledge)
    return pledge


def _complete_or_leave_pending(pledge: Pledge) -> Pledge:
    """Charge a pending donation now; if the database keeps refusing, leave it pending.

    The card may already be charged: the donor is told the donation is being confirmed,
    never "error", and a replay or the engine's job finishes it.
    """
    try:
        return donations.complete_donation(pledge.id)
    except OperationalError:
        current_app.logger.warning("donation %s left pending: the database refused its outcome", pledge.id)
        return db.session.get(Pledge, pledge.id)  # retry_on_lock has ended the failed transaction


def _clean_token(token: str | None) -> str | None:
    if token is None:
        return None
    token = str(token).strip()
    if not token:
        return None
    if len(token) > MAX_TOKEN_LENGTH or "\x00" in token:
        raise ValidationError(
            f"The idempotency token is at most {MAX_TOKEN_LENGTH} characters, none of them NUL.",
            code=ErrorCode.IDEMPOTENCY_KEY,
            field="idempotency_token",
        )
    return token


def _money_value(value: Any) -> Any:
    if isinstance(value, Money):
        return None if value.amount == 0 else [value.amount, value.currency]
    return None if value is None else repr(value)


def request_digest(campaign_id: Any, req: PledgeRequest) -> str:
    """A fingerprint of what was asked (everything but the token), to compare replays with."""
    data = {
        "campaign": repr(campaign_id),
        "amount": _money_value(req.amount),
        "tier": repr(req.tier_id),
        "quantity": repr(req.quantity),
        "extra": _money_value(req.extra),
        "shares": repr(req.shares),
        "shipping": (req.shipping_address or "").strip(),
        "risk": bool(req.risk_acknowledged),
        "message": (req.message or "").strip(),
        "anonymous": bool(req.anonymous),
        "card": repr(req.payment_method_id),
    }
    text = json.dumps(data, sort_keys=True, ensure_ascii=True)
    return hashlib.sha256(text.encode("ascii")).hexdigest()


def _find_by_token(user_id: int, token: str) -> Pledge | None:
    return db.session.execute(
        select(Pledge)
        .where(Pledge.user_id == user_id, Pledge.idempotency_token == token)
        .execution_options(populate_existing=True)
    ).scalar_one_or_none()


def _same_request(existing: Pledge, campaign_id: int, digest: str) -> Pledge:
    """The pledge a replayed token created — if the replay asks for the same thing."""
    if existing.campaign_id != campaign_id or (existing.request_digest not in (None, digest)):
        raise Conflict(
            "That form (or Idempotency-Key) was already used for a different pledge; reload the page "
            "or use a new key.",
            code=ErrorCode.IDEMPOTENCY_CONFLICT,
        )
    return existing


def _refuse_if_sold_out(
    user: User, campaign_id: int, req: PledgeRequest, token: str | None, now: datetime
) -> None:
    """Answer "sold out" for a tier that already is, without queueing for the campaign lock.

    Only a shortcut for the flash crowd: stock is checked again under the lock in
    `record_pledge`, and a replayed request (same token) still returns its pledge.
    """
    if not valid_id(req.tier_id) or not valid_id(campaign_id):
        return
    try:
        row = db.session.execute(
            select(RewardTier.title, RewardTier.quantity_limit, RewardTier.claimed)
            .join(Campaign, Campaign.id == RewardTier.campaign_id)
            .where(
                RewardTier.id == req.tier_id,
                Campaign.id == campaign_id,
                Campaign.state == CampaignState.LIVE,
                Campaign.start_at <= now,
                Campaign.end_at > now,
            )
        ).first()
        sold_out = row is not None and row.quantity_limit is not None and row.claimed >= row.quantity_limit
        replay = sold_out and token is not None and _find_by_token(user.id, token) is not None
    finally:
        db.session.rollback()  # a read: end it before the unit of work begins
    if sold_out and not replay:
        raise Conflict(f"Sorry, “{row.title}” is sold out.", code=ErrorCode.SOLD_OUT, field="tier_id")


def record_pledge(
    user: User, campaign_id: int, req: PledgeRequest, token: str | None, digest: str, now: datetime
) -> Pledge:
    """Step 1 of every pledge: check it under the locks and write it with its counters.

    Returns the pledge a replayed token created instead, when there is one. A donation is
    written as pending (not counted yet); the other kinds as active and counted.
    """
    try:
        return _record_pledge(user, campaign_id, req, token, digest, now)
    except IntegrityError:  # the same token, inserted by a parallel request just now
        existing = _find_by_token(user.id, token) if token else None
        if existing is None:
            raise
        return _same_request(existing, campaign_id, digest)


@retry_on_lock
def _record_pledge(
    user: User, campaign_id: int, req: PledgeRequest, token: str | None, digest: str, now: datetime
) -> Pledge:
    with unit_of_work():
        campaign = lock_campaign(campaign_id)
        if token and (existing := _find_by_token(user.id, token)):
            return _same_request(existing, campaign.id, digest)
        terms, method = _check_pledge(user, campaign, req, now)
        rules = kind_rules(campaign)
        pledge = _new_pledge(user, campaign, rules, terms, method, now)
        pledge.idempotency_token = token
        pledge.request_digest = digest
        db.session.add(pledge)
        db.session.flush()
        if pledge.state in COUNTED_STATES:
            count_in(campaign, pledge, terms.tier)
    return pledge


def _new_pledge(
    user: User, campaign: Campaign, rules: KindRules, terms: PledgeTerms, method: PaymentMethod, now: datetime
) -> Pledge:
    return Pledge(
        campaign_id=campaign.id,
        user_id=user.id,
        kind=campaign.kind,
        state=PledgeState.ACTIVE if rules.charge_at_close else PledgeState.PENDING,
        amount_amount=terms.amount.amount,
        currency=campaign.currency,
        tier_id=terms.tier.id if terms.tier else None,
        quantity=terms.quantity,
        extra_amount=terms.extra.amount if terms.extra else 0,
        shares=terms.shares,
        shipping_address=terms.shipping_address,
        message=terms.message,
        anonymous=terms.anonymous,
        risk_acknowledged_at=now if terms.risk_acknowledged else None,
        payment_method_id=method.id,
        refunded_amount=0,
        created_at=now,
        updated_at=now,
    )


# --- change and cancel -------------------------------------------------------------------


@retry_on_lock
def change_pledge(user: User, pledge_id: int, req: PledgeRequest, *, now: datetime | None = None) -> Pledge:
    """Move a reward pledge to another tier, quantity or amount while the campaign is open."""
    now = now or utcnow()
    with unit_of_work():
        campaign = lock_campaign(get_own_pledge(user, pledge_id).campaign_id)
        # Under the campaign's lock nothing else changes the pledge: check it as it is now,
        # then lock its tiers and the pledge itself, in the global order.
        _check_changeable(_read(Pledge, pledge_id), campaign, now)
        tiers = lock_tiers(campaign, {t for t in (_tier_of(pledge_id), req.tier_id) if t is not None})
        pledge = lock(Pledge, pledge_id)
        old_tier = tiers.get(pledge.tier_id) if pledge.tier_id else None
        # Give back what the pledge holds, then take what it asks for under the same locks.
        campaign.raised_amount -= pledge.counted_amount
        if old_tier is not None:
            old_tier.claimed -= pledge.quantity
        if req.payment_method_id is not None:
            pledge.payment_method_id = _payment_method(user, req.payment_method_id, now).id
        terms = kind_rules(campaign).pledge_terms(campaign, req, tiers)
        pledge.amount_amount = terms.amount.amount
        pledge.tier_id = terms.tier.id if terms.tier else None
        pledge.quantity = terms.quantity
        pledge.extra_amount = terms.extra.amount if terms.extra else 0
        pledge.shipping_address = terms.shipping_address
        pledge.updated_at = now
        campaign.raised_amount += pledge.counted_amount
        if terms.tier is not None:
            terms.tier.claimed += pledge.quantity
    return pledge


def _refuse_after_close(campaign: Campaign) -> None:
    """Once a campaign has closed its pledges belong to settlement: no change, no cancellation."""
    if campaign.state in CLOSED_STATES and campaign.state is not CampaignState.CANCELLED:
        raise Conflict(
            f"“{campaign.title}” has closed and its pledges are being settled: this pledge can no "
            "longer be changed or cancelled.",
            code=ErrorCode.SETTLEMENT_STARTED,
        )


def _check_changeable(pledge: Pledge, campaign: Campaign, now: datetime) -> None:
    if not kind_rules(campaign).has_tiers:
        raise Conflict(
            "Only reward pledges can be changed; you can cancel this one instead.",
            code=ErrorCode.NOT_CHANGEABLE,
        )
    _refuse_after_close(campaign)
    if pledge.state is not PledgeState.ACTIVE:
        raise Conflict(
            f"This pledge is {pledge.state.label.lower()} and can no longer be changed.",
            code=ErrorCode.NOT_CHANGEABLE,
        )
    check_open(campaign, now)


@retry_on_lock
def cancel_pledge(user: User, pledge_id: int, *, now: datetime | None = None) -> Pledge:
    """Cancel a backer's own pledge while the rules allow; counters and stock follow."""
    now = now or utcnow()
    with unit_of_work():
        campaign = lock_campaign(get_own_pledge(user, pledge_id).campaign_id)
        tier_id = _tier_of(pledge_id)  # fixed while the campaign is locked
        tier = lock(RewardTier, tier_id) if tier_id else None
        pledge = lock(Pledge, pledge_id)
        if pledge.state is PledgeState.CANCELLED:
            return pledge
        _check_cancellable(pledge, now)
        pledge.transition_to(PledgeState.CANCELLED, now)
        pledge.updated_at = now
        count_out(campaign, pledge, tier)
    return pledge


def _tier_of(pledge_id: int) -> int | None:
    """The pledge's tier as committed now (pledges change only under their campaign's lock)."""
    return db.session.scalar(select(Pledge.tier_id).where(Pledge.id == pledge_id))


def _check_cancellable(pledge: Pledge, now: datetime) -> None:
    deadline = pledge.cancellation_deadline
    if deadline is None:
        raise Conflict(
            "Donations cannot be cancelled. If something is wrong, contact us: an operator can refund it.",
            code=ErrorCode.CANCELLATION_CLOSED,
        )
    _refuse_after_close(pledge.campaign)
    if pledge.state is not PledgeState.ACTIVE:
        raise Conflict(
            f"This pledge is {pledge.state.label.lower()} and can no longer be cancelled.",
            code=ErrorCode.CANCELLATION_CLOSED,
        )
    if not pledge.can_cancel_at(now):
        what = "Reward pledges" if kind_rules(pledge.kind).has_tiers else "Commitments to this campaign"
        raise Conflict(
            f"{what} could be cancelled until {_fmt(deadline)}.", code=ErrorCode.CANCELLATION_CLOSED
        )
