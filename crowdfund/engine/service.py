"""Pledging use cases: place, change and cancel pledges; the investor profile.

Every use case that touches a campaign's money runs in one transaction that starts as
a writer (`begin_write`: BEGIN IMMEDIATE on SQLite) and locks rows in a fixed order —
the campaign, then reward tiers by id, then the investor profile, then the pledge
(SELECT … FOR UPDATE on PostgreSQL). Under those locks it checks that the campaign is
open, the tier has stock, the round's maximum and the investor's 12-month limit hold,
writes the pledge and moves the stored counters (`Campaign.raised_amount`,
`Campaign.backer_count`, `RewardTier.claimed`), and commits once. Counters therefore
always equal what the active pledges add up to, however many backers pledge at once.

A per-form idempotency token (unique per backer) makes a resubmitted form return the
pledge it already created. Donations are charged at once: the pledge is committed as
pending, the payments service charges the card (exactly once by its key), and a second
short transaction records the outcome and counts the gift.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from flask import current_app
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError

from crowdfund.campaigns.models import CLOSED_STATES, Campaign, CampaignKind, CampaignState, RewardTier
from crowdfund.database import begin_write
from crowdfund.engine.limits import convert, invested_within_window, investment_limit
from crowdfund.engine.models import (
    CHARGE_AT_CLOSE_KINDS,
    COUNTED_STATES,
    INVESTMENT_CANCELLATION_CUTOFF,
    InvestorProfile,
    Pledge,
    PledgeState,
)
from crowdfund.database import retry_on_lock
from crowdfund.errors import Conflict, DomainError, NotFound, ValidationError
from crowdfund.extensions import db
from crowdfund.models_base import utcnow
from crowdfund.money import CURRENCIES, Money

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
MAX_ADDRESS_LENGTH = 1000
MAX_MESSAGE_LENGTH = 500


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


class PaymentDeclined(DomainError):
    """The gateway refused a donation charge; the message says what the backer can do."""

    code = "payment_declined"
    status = 402


@dataclass(frozen=True)
class InvestmentSummary:
    limit: Money | None
    used: Money
    remaining: Money | None
    currency: str


# --- reading -----------------------------------------------------------------------------


def get_own_pledge(user, pledge_id: int) -> Pledge:
    """The backer's own pledge; NotFound for anyone else's (or none)."""
    pledge = db.session.get(Pledge, pledge_id) if isinstance(pledge_id, int) else None
    if pledge is None or pledge.user_id != user.id:
        raise NotFound("We could not find that pledge.")
    return pledge


def list_own_pledges(user) -> list[Pledge]:
    """The backer's pledges, newest first."""
    return list(
        db.session.scalars(
            select(Pledge)
            .where(Pledge.user_id == user.id)
            .order_by(Pledge.created_at.desc(), Pledge.id.desc())
        )
    )


def get_investor_profile(user) -> InvestorProfile | None:
    return db.session.scalar(select(InvestorProfile).where(InvestorProfile.user_id == user.id))


def investment_summary(user, *, now: datetime | None = None) -> InvestmentSummary | None:
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
    user, *, currency: str, annual_income: Money, net_worth: Money, accredited: bool
) -> InvestorProfile:
    """Create or update what the investor states about income, net worth and accreditation."""
    if currency not in CURRENCIES or currency not in current_app.config["INVESTMENT_LIMIT_FX"]:
        raise ValidationError("Choose one of the listed currencies.", field="currency")
    for field, value in (("annual_income", annual_income), ("net_worth", net_worth)):
        if not isinstance(value, Money) or value.currency != currency:
            raise ValidationError(f"Enter the amount in {currency}.", field=field)
        if value.amount < 0:
            raise ValidationError("The amount cannot be negative.", field=field)
    begin_write()
    profile = db.session.execute(
        select(InvestorProfile)
        .where(InvestorProfile.user_id == user.id)
        .with_for_update()
        .execution_options(populate_existing=True)
    ).scalar_one_or_none()
    if profile is None:
        profile = InvestorProfile(user_id=user.id)
        db.session.add(profile)
    profile.currency = currency
    profile.annual_income_amount = annual_income.amount
    profile.net_worth_amount = net_worth.amount
    profile.accredited = bool(accredited)
    try:
        db.session.commit()
    except IntegrityError:  # two first saves at once: the other one created the row
        db.session.rollback()
        return save_investor_profile(
            user, currency=currency, annual_income=annual_income, net_worth=net_worth, accredited=accredited
        )
    return profile


# --- locking -----------------------------------------------------------------------------


def _lock(model, ident) -> object | None:
    """Load a row fresh from the database and lock it until commit (FOR UPDATE on PostgreSQL)."""
    return db.session.execute(
        select(model).where(model.id == ident).with_for_update().execution_options(populate_existing=True)
    ).scalar_one_or_none()


def _lock_campaign(campaign_id) -> Campaign:
    campaign = _lock(Campaign, campaign_id) if isinstance(campaign_id, int) else None
    if campaign is None:
        raise NotFound("We could not find that campaign.")
    return campaign


def _lock_tiers(campaign: Campaign, tier_ids: set[int]) -> dict[int, RewardTier]:
    """Lock the given tiers in id order; refuse a tier that belongs to another campaign."""
    tiers: dict[int, RewardTier] = {}
    if any(isinstance(t, bool) or not isinstance(t, int) for t in tier_ids):
        raise ValidationError("Choose one of this campaign's rewards.", code="invalid_tier", field="tier_id")
    for tier_id in sorted(tier_ids):
        tier = _lock(RewardTier, tier_id)
        if tier is None or tier.campaign_id != campaign.id:
            raise ValidationError(
                "That reward is not offered by this campaign.", code="invalid_tier", field="tier_id"
            )
        tiers[tier_id] = tier
    return tiers


def _find_by_token(user_id: int, token: str) -> Pledge | None:
    return db.session.execute(
        select(Pledge)
        .where(Pledge.user_id == user_id, Pledge.idempotency_token == token)
        .execution_options(populate_existing=True)
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
            code="campaign_closed",
        )
    if campaign.state is CampaignState.SUSPENDED:
        raise Conflict(
            "This campaign is suspended while our operators look into it; pledges are paused.",
            code="campaign_not_open",
        )
    if campaign.state in (CampaignState.APPROVED, CampaignState.LIVE):
        raise Conflict(f"This campaign opens on {_fmt(campaign.start_at)}.", code="campaign_not_open")
    raise Conflict("This campaign is not open for pledges.", code="campaign_not_open")


def _amount(
    value: Money | None,
    campaign: Campaign,
    *,
    field: str,
    minimum: Money | None = None,
    label: str = "amount",
) -> Money:
    """A positive amount in the campaign's currency, at least `minimum`, not absurdly large."""
    if value is None:
        raise ValidationError(f"Enter an {label}.", field=field)
    if not isinstance(value, Money):
        raise ValidationError(f"The {label} must be an amount of money.", field=field)
    if value.currency != campaign.currency:
        raise ValidationError(
            f"This campaign takes {campaign.currency}; enter the {label} in {campaign.currency}.",
            code="wrong_currency",
            field=field,
        )
    if value.amount <= 0:
        raise ValidationError(f"The {label} must be more than zero.", field=field)
    maximum = Money.from_major(current_app.config["PLEDGE_MAXIMUM"], campaign.currency)
    if value > maximum:
        raise ValidationError(f"That {label} is too large: at most {maximum} per pledge.", field=field)
    if minimum is not None and value < minimum:
        raise ValidationError(f"The {label} must be at least {minimum}.", field=field)
    return value


def _optional_extra(value: Money | None, campaign: Campaign) -> Money:
    if value is None or (
        isinstance(value, Money) and value.amount == 0 and value.currency == campaign.currency
    ):
        return Money.zero(campaign.currency)
    return _amount(value, campaign, field="extra", label="extra amount")


def _quantity(value) -> int:
    limit = current_app.config["REWARD_MAX_QUANTITY"]
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValidationError("Choose a quantity of at least 1.", field="quantity")
    if value > limit:
        raise ValidationError(f"At most {limit} of one reward per pledge.", field="quantity")
    return value


def _text(value: str | None, limit: int, field: str, what: str) -> str | None:
    text = (value or "").strip()
    if "\x00" in text:  # PostgreSQL cannot store it, and no one types it
        raise ValidationError(f"The {what} contains a NUL character; remove it.", field=field)
    if len(text) > limit:
        raise ValidationError(f"The {what} can be at most {limit} characters.", field=field)
    return text or None


def _payment_method(user, payment_method_id: int | None, now: datetime):
    """The card the pledge will be charged to: the one chosen, else the backer's default."""
    from crowdfund.payments import service as payments

    if payment_method_id is not None:
        try:
            if isinstance(payment_method_id, bool) or not isinstance(payment_method_id, int):
                raise NotFound("not a card id")
            method = payments.get_payment_method(user, payment_method_id)
        except NotFound:
            raise ValidationError(
                "Choose one of your saved cards.", code="payment_method_required", field="payment_method_id"
            ) from None
        if not method.is_usable or method.gateway != payments.gateway_name():
            raise ValidationError(
                f"Your card {method.label} cannot be charged; confirm it or choose another card.",
                code="payment_method_required",
                field="payment_method_id",
            )
    else:
        method = payments.default_payment_method(user)
        if method is None:
            raise ValidationError(
                "Add a card before you pledge. Nothing is charged now unless you donate.",
                code="payment_method_required",
                field="payment_method_id",
            )
    if method.is_expired_at(now):
        raise ValidationError(
            f"Your card {method.label} has expired; add a new card.",
            code="payment_method_required",
            field="payment_method_id",
        )
    return method


def _check_investment_limit(user, amount: Money, now: datetime) -> None:
    """Refuse an equity/debt commitment that would pass the investor's 12-month limit."""
    profile = db.session.execute(
        select(InvestorProfile)
        .where(InvestorProfile.user_id == user.id)
        .with_for_update()
        .execution_options(populate_existing=True)
    ).scalar_one_or_none()
    if profile is None:
        raise ValidationError(
            "Before you invest or lend, state your income, net worth and accreditation in your investor profile.",
            code="investor_profile_required",
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
            code="limit_exceeded",
            field="amount",
        )


# --- building a pledge per kind ----------------------------------------------------------


@dataclass
class _Terms:
    """What a pledge request comes to once checked: amount, tier units and the rest."""

    amount: Money
    tier: RewardTier | None = None
    quantity: int = 1
    extra: Money | None = None
    shares: int | None = None
    shipping_address: str | None = None
    message: str | None = None
    anonymous: bool = False
    risk_acknowledged: bool = False


def _reward_terms(campaign: Campaign, req: PledgeRequest, tiers: dict[int, RewardTier]) -> _Terms:
    if req.tier_id is None:
        minimum = Money.from_major(current_app.config["NO_REWARD_MINIMUM"], campaign.currency)
        amount = _amount(req.amount, campaign, field="amount", minimum=minimum)
        return _Terms(amount=amount, extra=Money.zero(campaign.currency))
    tier = tiers[req.tier_id]
    quantity = _quantity(req.quantity)
    extra = _optional_extra(req.extra, campaign)
    address = None
    if tier.ships:
        address = _text(req.shipping_address, MAX_ADDRESS_LENGTH, "shipping_address", "shipping address")
        if not address:
            raise ValidationError(
                "This reward is shipped: enter a shipping address.", field="shipping_address"
            )
    if tier.quantity_limit is not None and tier.claimed + quantity > tier.quantity_limit:
        left = tier.quantity_limit - tier.claimed
        if left <= 0:
            raise Conflict(f"Sorry, “{tier.title}” is sold out.", code="sold_out", field="tier_id")
        raise Conflict(
            f"Only {left} of “{tier.title}” left; choose a smaller quantity.",
            code="sold_out",
            field="quantity",
        )
    amount = _amount(tier.price * quantity + extra, campaign, field="quantity", label="total")
    return _Terms(amount=amount, tier=tier, quantity=quantity, extra=extra, shipping_address=address)


def _equity_terms(user, campaign: Campaign, req: PledgeRequest, now: datetime) -> _Terms:
    terms = campaign.equity_terms
    price = Money(terms.price_per_share_amount, campaign.currency)
    if req.shares is not None:
        if isinstance(req.shares, bool) or not isinstance(req.shares, int) or req.shares < 1:
            raise ValidationError("Enter a whole number of shares, at least 1.", field="shares")
        maximum = Money.from_major(current_app.config["PLEDGE_MAXIMUM"], campaign.currency)
        if price.amount * req.shares > maximum.amount:  # before Money, which refuses absurd sums
            raise ValidationError(f"That is too many shares: at most {maximum} per pledge.", field="shares")
        amount = _amount(price * req.shares, campaign, field="shares")
    else:
        amount = _amount(req.amount, campaign, field="amount")
        if amount.amount % price.amount:
            lower = amount.amount // price.amount
            raise ValidationError(
                f"Invest in whole shares of {price}: for example {Money(lower * price.amount, campaign.currency)} "
                f"({lower} shares) or {Money((lower + 1) * price.amount, campaign.currency)} ({lower + 1} shares).",
                field="amount",
            )
    minimum = Money(terms.min_investment_amount, campaign.currency)
    if amount < minimum:
        raise ValidationError(f"The minimum investment is {minimum}.", code="below_minimum", field="amount")
    _check_room(campaign, amount, Money(terms.max_target_amount, campaign.currency), "round", minimum)
    _require_risk(req)
    _check_investment_limit(user, amount, now)
    return _Terms(amount=amount, shares=amount.amount // price.amount, risk_acknowledged=True)


def _debt_terms(user, campaign: Campaign, req: PledgeRequest, now: datetime) -> _Terms:
    terms = campaign.debt_terms
    minimum = Money(terms.min_loan_share_amount, campaign.currency)
    amount = _amount(req.amount, campaign, field="amount")
    if amount < minimum:
        raise ValidationError(f"The minimum loan share is {minimum}.", code="below_minimum", field="amount")
    _check_room(campaign, amount, Money(terms.max_amount, campaign.currency), "loan", minimum)
    _require_risk(req)
    _check_investment_limit(user, amount, now)
    return _Terms(amount=amount, risk_acknowledged=True)


def _donation_terms(campaign: Campaign, req: PledgeRequest) -> _Terms:
    minimum = Money.from_major(current_app.config["DONATION_MINIMUM"], campaign.currency)
    amount = _amount(req.amount, campaign, field="amount", minimum=minimum)
    message = _text(req.message, MAX_MESSAGE_LENGTH, "message", "message")
    return _Terms(amount=amount, message=message, anonymous=bool(req.anonymous))


def _check_room(campaign: Campaign, amount: Money, maximum: Money, what: str, minimum: Money) -> None:
    """Never let commitments pass the campaign's maximum."""
    if campaign.raised + amount <= maximum:
        return
    left = maximum - campaign.raised
    if left < minimum:
        raise Conflict(
            f"This {what} is fully subscribed: it reached its maximum of {maximum}.", code="over_maximum"
        )
    raise Conflict(
        f"Only {left} of this {what} is still open (maximum {maximum}); commit at most that.",
        code="over_maximum",
        field="amount",
    )


def _require_risk(req: PledgeRequest) -> None:
    if not req.risk_acknowledged:
        raise ValidationError(
            "Tick the box to confirm you understand you could lose all of this money.",
            field="risk_acknowledged",
        )


def _terms_for(user, campaign: Campaign, req: PledgeRequest, now: datetime, tiers) -> _Terms:
    if campaign.kind is CampaignKind.REWARD:
        return _reward_terms(campaign, req, tiers)
    if campaign.kind is CampaignKind.EQUITY:
        return _equity_terms(user, campaign, req, now)
    if campaign.kind is CampaignKind.DEBT:
        return _debt_terms(user, campaign, req, now)
    return _donation_terms(campaign, req)


# --- counters ----------------------------------------------------------------------------


def _has_other_counted_pledge(campaign_id: int, user_id: int, exclude_id: int | None) -> bool:
    query = select(func.count(Pledge.id)).where(
        Pledge.campaign_id == campaign_id, Pledge.user_id == user_id, Pledge.state.in_(COUNTED_STATES)
    )
    if exclude_id is not None:
        query = query.where(Pledge.id != exclude_id)
    return bool(db.session.scalar(query))


def _count_in(campaign: Campaign, pledge: Pledge, tier: RewardTier | None) -> None:
    """Add a pledge that has just become counted to the campaign's and tier's counters."""
    if not _has_other_counted_pledge(campaign.id, pledge.user_id, pledge.id):
        campaign.backer_count += 1
    campaign.raised_amount += pledge.amount_amount
    if tier is not None:
        tier.claimed += pledge.quantity


def _count_out(campaign: Campaign, pledge: Pledge, tier: RewardTier | None) -> None:
    """Take a pledge that stops being counted out of the counters."""
    if not _has_other_counted_pledge(campaign.id, pledge.user_id, pledge.id):
        campaign.backer_count -= 1
    campaign.raised_amount -= pledge.amount_amount
    if tier is not None:
        tier.claimed -= pledge.quantity


# --- use cases ---------------------------------------------------------------------------


def _clean_token(token: str | None) -> str | None:
    if token is None:
        return None
    token = str(token).strip()
    if not token:
        return None
    if len(token) > MAX_TOKEN_LENGTH or "\x00" in token:
        raise ValidationError(
            f"The idempotency token is at most {MAX_TOKEN_LENGTH} characters, none of them NUL.",
            field="idempotency_token",
        )
    return token


def _same_request(existing: Pledge, campaign_id: int) -> Pledge:
    if existing.campaign_id != campaign_id:
        raise Conflict(
            "That form was already used for another pledge; reload the page.", code="idempotency_conflict"
        )
    return existing


def _check_pledge(user, campaign: Campaign, req: PledgeRequest, now: datetime):
    """Every check a new pledge must pass; returns its terms and the card to charge."""
    check_open(campaign, now)
    method = _payment_method(user, req.payment_method_id, now)
    tiers = {}
    if campaign.kind is CampaignKind.REWARD and req.tier_id is not None:
        tiers = _lock_tiers(campaign, {req.tier_id})
    return _terms_for(user, campaign, req, now, tiers), method


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
    payment_method: object
    #: Donations are charged at once; the other kinds only if the campaign succeeds.
    charged_now: bool
    #: Until when the backer may cancel (None: never, for donations).
    cancellation_deadline: datetime | None


def preview_pledge(
    user, campaign_id: int, req: PledgeRequest, *, now: datetime | None = None
) -> PledgePreview:
    """Run every check `place_pledge` runs and say what would happen, without writing anything."""
    now = now or utcnow()
    try:
        campaign = db.session.get(Campaign, campaign_id) if isinstance(campaign_id, int) else None
        if campaign is None:
            raise NotFound("We could not find that campaign.")
        terms, method = _check_pledge(user, campaign, req, now)
    except DomainError:
        db.session.rollback()
        raise
    deadline = None
    if campaign.kind is CampaignKind.REWARD:
        deadline = campaign.end_at
    elif campaign.kind is not CampaignKind.DONATION:
        deadline = campaign.end_at - INVESTMENT_CANCELLATION_CUTOFF
    preview = PledgePreview(
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
        charged_now=campaign.kind not in CHARGE_AT_CLOSE_KINDS,
        cancellation_deadline=deadline,
    )
    db.session.rollback()  # lets go of any row lock the checks took
    return preview


def place_pledge(user, campaign_id: int, req: PledgeRequest, *, now: datetime | None = None) -> Pledge:
    """Record a pledge (charge-at-close kinds) or make a donation (charged at once).

    The same `idempotency_token` again returns the pledge it created, changing nothing.
    Raises ValidationError, Conflict (sold_out, over_maximum, limit_exceeded,
    campaign_closed, campaign_not_open), NotFound, or PaymentDeclined for a donation.
    """
    now = now or utcnow()
    token = _clean_token(req.idempotency_token)
    _refuse_if_sold_out(user, campaign_id, req, token, now)
    pledge, fresh = _record_pledge(user, campaign_id, req, token, now)
    if fresh and pledge.state is PledgeState.PENDING:
        return _charge_donation(user, pledge)
    return pledge


def _refuse_if_sold_out(user, campaign_id, req: PledgeRequest, token: str | None, now: datetime) -> None:
    """Answer "sold out" for a tier that already is, without queueing for the campaign lock.

    Only a shortcut for the flash crowd: stock is checked again under the lock in
    `_record_pledge`, and a replayed request (same token) still returns its pledge.
    """
    tier_id = req.tier_id
    if isinstance(tier_id, bool) or not isinstance(tier_id, int) or not 0 < tier_id < 2**31:
        return
    if isinstance(campaign_id, bool) or not isinstance(campaign_id, int) or not 0 < campaign_id < 2**31:
        return
    row = db.session.execute(
        select(RewardTier.title, RewardTier.quantity_limit, RewardTier.claimed)
        .join(Campaign, Campaign.id == RewardTier.campaign_id)
        .where(
            RewardTier.id == tier_id,
            Campaign.id == campaign_id,
            Campaign.state == CampaignState.LIVE,
            Campaign.start_at <= now,
            Campaign.end_at > now,
        )
    ).first()
    sold_out = row is not None and row.quantity_limit is not None and row.claimed >= row.quantity_limit
    replay = sold_out and token is not None and _find_by_token(user.id, token) is not None
    db.session.rollback()
    if sold_out and not replay:
        raise Conflict(f"Sorry, “{row.title}” is sold out.", code="sold_out", field="tier_id")


@retry_on_lock
def _record_pledge(
    user, campaign_id: int, req: PledgeRequest, token: str | None, now: datetime
) -> tuple[Pledge, bool]:
    """The one transaction that checks and writes the pledge and its counters."""
    try:
        begin_write()
        campaign = _lock_campaign(campaign_id)
        if token and (existing := _find_by_token(user.id, token)):
            db.session.commit()
            return _same_request(existing, campaign.id), False
        terms, method = _check_pledge(user, campaign, req, now)
        pledge = Pledge(
            campaign_id=campaign.id,
            user_id=user.id,
            kind=campaign.kind,
            state=PledgeState.ACTIVE if campaign.kind in CHARGE_AT_CLOSE_KINDS else PledgeState.PENDING,
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
            idempotency_token=token,
            created_at=now,
            updated_at=now,
        )
        db.session.add(pledge)
        db.session.flush()
        if pledge.state in COUNTED_STATES:
            _count_in(campaign, pledge, terms.tier)
        db.session.commit()
        return pledge, True
    except DomainError:
        db.session.rollback()
        raise
    except IntegrityError:
        db.session.rollback()
        if token and (existing := _find_by_token(user.id, token)):
            return _same_request(existing, campaign_id), False
        raise


def _charge_donation(user, pledge: Pledge) -> Pledge:
    """Charge a pending donation through the payments service and record what happened."""
    from crowdfund.payments import service as payments

    campaign = pledge.campaign
    try:
        operation = payments.charge(
            user=user,
            payment_method=pledge.payment_method,
            amount=pledge.amount,
            idempotency_key=f"pledge:{pledge.id}:charge",
            campaign_id=campaign.id,
            description=f"Donation to {campaign.title}",
            metadata={"pledge_id": str(pledge.id), "campaign_id": str(campaign.id)},
        )
    except DomainError as exc:
        db.session.rollback()
        _record_donation_outcome(pledge.id, None, exc.message)
        raise PaymentDeclined(exc.message) from exc
    return _record_donation_outcome(pledge.id, operation)


def _operation_state(operation) -> str:
    state = getattr(operation, "state", None)
    return getattr(state, "value", state) or "pending"


@retry_on_lock
def _record_donation_outcome(pledge_id: int, operation, failure: str | None = None) -> Pledge:
    """Second transaction of a donation: mark it charged (and count it) or failed."""
    begin_write()
    pledge = db.session.get(Pledge, pledge_id)
    campaign = _lock_campaign(pledge.campaign_id)
    pledge = _lock(Pledge, pledge_id)
    state = "failed" if operation is None else _operation_state(operation)
    if pledge.state is not PledgeState.PENDING or state == "pending":
        db.session.commit()
        return pledge
    if operation is not None:
        pledge.payment_operation_id = operation.id
    if state == "succeeded":
        pledge.transition_to(PledgeState.CHARGED)
        _count_in(campaign, pledge, None)
        db.session.commit()
        return pledge
    message = (
        failure
        or getattr(operation, "failure_message", None)
        or (
            "Your bank needs you to confirm this payment; please try again with another card."
            if state == "requires_action"
            else "Your card was declined; try another card."
        )
    )
    pledge.transition_to(PledgeState.FAILED)
    pledge.failure_message = message[:300]
    db.session.commit()
    raise PaymentDeclined(message)


def reconcile_pending_donations(*, now: datetime | None = None, older_than_seconds: int = 300) -> int:
    """Finish donations left pending (the process stopped mid-charge): ask payments again by key.

    The payments service returns the existing operation for the same key, so nothing is
    charged twice. Returns how many pledges changed state.
    """
    from datetime import timedelta

    now = now or utcnow()
    cutoff = now - timedelta(seconds=older_than_seconds)
    ids = list(
        db.session.scalars(
            select(Pledge.id)
            .where(Pledge.state == PledgeState.PENDING, Pledge.created_at < cutoff)
            .order_by(Pledge.id)
        )
    )
    db.session.rollback()
    changed = 0
    for pledge_id in ids:
        pledge = db.session.get(Pledge, pledge_id)
        try:
            result = _charge_donation(pledge.user, pledge)
        except PaymentDeclined:
            changed += 1
            continue
        if result.state is not PledgeState.PENDING:
            changed += 1
    return changed


@retry_on_lock
def change_pledge(user, pledge_id: int, req: PledgeRequest, *, now: datetime | None = None) -> Pledge:
    """Move a reward pledge to another tier, quantity or amount while the campaign is open."""
    now = now or utcnow()
    try:
        begin_write()
        pledge = get_own_pledge(user, pledge_id)
        campaign = _lock_campaign(pledge.campaign_id)
        pledge = _lock(Pledge, pledge.id)
        if pledge.kind is not CampaignKind.REWARD:
            raise Conflict(
                "Only reward pledges can be changed; you can cancel this one instead.", code="not_changeable"
            )
        if pledge.state is not PledgeState.ACTIVE:
            raise Conflict(
                f"This pledge is {pledge.state.label.lower()} and can no longer be changed.",
                code="not_changeable",
            )
        check_open(campaign, now)
        tier_ids = {t for t in (pledge.tier_id, req.tier_id) if t is not None}
        tiers = _lock_tiers(campaign, tier_ids)
        old_tier = tiers.get(pledge.tier_id) if pledge.tier_id else None
        # Give back what the pledge holds, then take what it asks for under the same locks.
        campaign.raised_amount -= pledge.amount_amount
        if old_tier is not None:
            old_tier.claimed -= pledge.quantity
        if req.payment_method_id is not None:
            pledge.payment_method_id = _payment_method(user, req.payment_method_id, now).id
        terms = _reward_terms(campaign, req, tiers)
        pledge.amount_amount = terms.amount.amount
        pledge.tier_id = terms.tier.id if terms.tier else None
        pledge.quantity = terms.quantity
        pledge.extra_amount = terms.extra.amount if terms.extra else 0
        pledge.shipping_address = terms.shipping_address
        pledge.updated_at = now
        campaign.raised_amount += pledge.amount_amount
        if terms.tier is not None:
            terms.tier.claimed += pledge.quantity
        db.session.commit()
        return pledge
    except DomainError:
        db.session.rollback()
        raise


@retry_on_lock
def cancel_pledge(user, pledge_id: int, *, now: datetime | None = None) -> Pledge:
    """Cancel a backer's own pledge while the rules allow; counters and stock follow."""
    now = now or utcnow()
    try:
        begin_write()
        pledge = get_own_pledge(user, pledge_id)
        campaign = _lock_campaign(pledge.campaign_id)
        pledge = _lock(Pledge, pledge.id)
        if pledge.kind is CampaignKind.DONATION:
            raise Conflict(
                "Donations cannot be cancelled. If something is wrong, contact us: an operator can refund it.",
                code="cancellation_closed",
            )
        if pledge.state is PledgeState.CANCELLED:
            db.session.commit()
            return pledge
        if pledge.state is not PledgeState.ACTIVE:
            raise Conflict(
                f"This pledge is {pledge.state.label.lower()} and can no longer be cancelled.",
                code="cancellation_closed",
            )
        if not pledge.can_cancel_at(now):
            deadline = pledge.cancellation_deadline
            what = "Reward pledges" if pledge.kind is CampaignKind.REWARD else "Commitments to this campaign"
            raise Conflict(f"{what} could be cancelled until {_fmt(deadline)}.", code="cancellation_closed")
        tier = _lock(RewardTier, pledge.tier_id) if pledge.tier_id else None
        pledge.transition_to(PledgeState.CANCELLED, now)
        pledge.updated_at = now
        _count_out(campaign, pledge, tier)
        db.session.commit()
        return pledge
    except DomainError:
        db.session.rollback()
        raise
