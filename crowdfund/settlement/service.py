"""Settlement use cases: open at close, charge each pledge once, finalise, refund.

Every use case is a unit of work (`crowdfund.database.unit_of_work`); a charge, a refund
or a payout is three named steps, each its own unit of work except the gateway call:

1. `_begin_attempt`: under the item's lock, count attempt n, store its key
   ``pledge:{id}:charge:{n}`` on the item and mark it *charging* — committed before the
   gateway is called;
2. `_call_gateway`: `crowdfund.payments.service.charge` with that key (payments records its
   own operation and answers the same key with the same operation: a crash anywhere
   resumes the same attempt, never a new one);
3. `_record_outcome`: lock campaign → reward tiers → pledge → item (the global order) and
   move the pledge (engine's state machine and counters) and the item from the
   operation's state.

A gateway that did not answer leaves the item *unknown*: the next pass looks the same key
up (payments' `_resume`), and only a key the gateway never saw is sent again — the same
attempt. A soft decline is retried on `SETTLEMENT_RETRY_DAYS` after close; a hard decline
(lost or stolen card, do not try again) and "authentication required" wait for the
backer (`retry_now`, `confirm_authentication`); after `SETTLEMENT_GRACE_DAYS` an unpaid
pledge is dropped: released, counted nowhere, charged nothing.

Workers claim due items with ``FOR UPDATE SKIP LOCKED`` on PostgreSQL (SQLite has one
writer) and stamp a lease (`PAYMENT_CALL_LEASE_SECONDS`, wall clock) so two workers never
work one item at once; exactly-once comes from the keys, not from the claims.

Fees (`finalise_due_settlements`), once the grace period is over, every item resolved
and `PAYOUT_DELAY_DAYS` have passed since close:

- platform fee = collected × PLATFORM_FEE_BP / 10 000, rounded down to the minor unit
  (the remainder stays with the organisation);
- processing fee = Σ over charged items of (charge × PROCESSING_FEE_BP / 10 000, rounded
  down, + PROCESSING_FEE_FIXED), never more than what is left after the platform fee;
- the rest is released from escrow to the organisation's payable and paid out; escrow
  ends at zero. Keys: ``settlement:{id}:platform_fee|processing_fee|release|payout``.
  Per-kind hook: when `kind_rules(campaign).pays_out_through_tranches(campaign)` (patient
  aid) nothing is released: the rest stays in escrow, paid to the hospital in tranches by
  `crowdfund.patient_aid` (a refund after settlement then leaves escrow directly).

Refunds: before the release a refund leaves escrow (payments). After it, the amount is
first put back into escrow from what the organisation is owed (its payable, while not
paid out) and, for the rest, recorded as owed by the organisation (its receivable) —
`ledger.postings.recover_from_organisation` — and then refunded from escrow.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from flask import current_app
from sqlalchemy import and_, func, insert, or_, select, update

from crowdfund.campaigns.kinds import kind_rules
from crowdfund.campaigns.lifecycle import transition
from crowdfund.campaigns.models import Campaign, CampaignState, EventCode, RewardTier
from crowdfund.database import lock, retry_on_lock, unit_of_work, valid_id
from crowdfund.engine import donations
from crowdfund.engine.counters import count_in, count_out, lock_campaign
from crowdfund.engine.models import COUNTED_STATES, Pledge, PledgeState
from crowdfund.errors import Conflict, DomainError, ErrorCode, Forbidden, NotFound, ValidationError
from crowdfund.extensions import db
from crowdfund.ledger import postings
from crowdfund.ledger import service as ledger
from crowdfund.models_base import utcnow
from crowdfund.money import Money
from crowdfund.payments import service as payments
from crowdfund.payments.models import OperationState, PaymentOperation, error_code_for
from crowdfund.payments.sandbox import ON_SESSION_METADATA
from crowdfund.settlement.models import (
    COLLECTED_STATES,
    DUE_STATES,
    OPEN_STATES,
    UNPAID_STATES,
    ItemState,
    Settlement,
    SettlementItem,
    SettlementState,
    charge_key,
)

if TYPE_CHECKING:
    from crowdfund.accounts.models import User

__all__ = [
    "HARD_DECLINE_CODES",
    "ItemState",
    "Settlement",
    "SettlementItem",
    "SettlementProgress",
    "SettlementState",
    "Statement",
    "campaign_statement",
    "cancel_campaign_with_refunds",
    "confirm_authentication",
    "finalise_due_settlements",
    "item_for_pledge",
    "open_due_settlements",
    "open_settlement",
    "process_due_items",
    "refund_item",
    "retry_now",
    "retry_schedule",
    "settlement_for",
    "settlement_progress",
]

#: Gateway failure codes that mean "never try this card again" (Stripe's decline codes).
HARD_DECLINE_CODES = frozenset(
    {
        "lost_card",
        "stolen_card",
        "pickup_card",
        "do_not_try_again",
        "restricted_card",
        "revocation_of_authorization",
    }
)
#: How long an unknown attempt waits before its key is looked up again.
UNKNOWN_RECHECK = timedelta(minutes=5)
#: Items a refund of the whole settlement still waits for.
REFUND_WAIT_STATES = OPEN_STATES | {ItemState.REFUNDING}

#: Tests may set a callable taking a step name ("intent", "call", "outcome", …); it runs at
#: that point (and may raise to stand for the process being killed there).
STEP_HOOK: Callable[[str], None] | None = None


def _step(name: str) -> None:
    if STEP_HOOK is not None:
        STEP_HOOK(name)


# --- reading -------------------------------------------------------------------------------
def settlement_for(campaign_id: int) -> Settlement | None:
    """The campaign's settlement, if one has been opened."""
    if not valid_id(campaign_id):
        return None
    return db.session.scalar(select(Settlement).where(Settlement.campaign_id == campaign_id))


def item_for_pledge(pledge_id: int) -> SettlementItem | None:
    """The pledge's settlement item (None before its campaign closed)."""
    if not valid_id(pledge_id):
        return None
    return db.session.execute(
        select(SettlementItem)
        .where(SettlementItem.pledge_id == pledge_id)
        .execution_options(populate_existing=True)
    ).scalar_one_or_none()


def _fresh(model: type, ident: int):
    return db.session.execute(
        select(model).where(model.id == ident).execution_options(populate_existing=True)
    ).scalar_one_or_none()


def retry_schedule(closed_at: datetime) -> list[datetime]:
    """The moments a soft-declined charge is tried again (SETTLEMENT_RETRY_DAYS after close)."""
    text = str(current_app.config["SETTLEMENT_RETRY_DAYS"])
    days = sorted({int(part) for part in text.replace(" ", "").split(",") if part})
    grace = _grace_end(closed_at)
    return [closed_at + timedelta(days=d) for d in days if closed_at + timedelta(days=d) <= grace]


def _grace_end(closed_at: datetime) -> datetime:
    return closed_at + timedelta(days=int(current_app.config["SETTLEMENT_GRACE_DAYS"]))


def _next_retry(closed_at: datetime, after: datetime) -> datetime | None:
    return next((when for when in retry_schedule(closed_at) if when > after), None)


def _lease() -> timedelta:
    return timedelta(seconds=int(current_app.config["PAYMENT_CALL_LEASE_SECONDS"]))


# --- opening -------------------------------------------------------------------------------
def open_due_settlements(*, now: datetime | None = None) -> int:
    """Open a settlement for every closed campaign that has none; returns how many."""
    now = now or utcnow()
    ids = list(
        db.session.scalars(
            select(Campaign.id)
            .outerjoin(Settlement, Settlement.campaign_id == Campaign.id)
            .where(
                Campaign.state.in_([CampaignState.SUCCEEDED, CampaignState.FAILED, CampaignState.CANCELLED]),
                Settlement.id.is_(None),
            )
            .order_by(Campaign.id)
        )
    )
    db.session.rollback()  # a read: end it before the units of work
    opened = 0
    for campaign_id in ids:
        before = settlement_for(campaign_id)
        if before is None and not _waits(campaign_id):
            open_settlement(campaign_id, now=now)
            opened += 1
    return opened


def _waits(campaign_id: int) -> bool:
    """The kind holds a succeeded campaign's settlement (equity: reconfirmations pending)."""
    campaign = db.session.get(Campaign, campaign_id)
    return campaign.state is CampaignState.SUCCEEDED and kind_rules(campaign).settlement_waits(campaign)


@retry_on_lock
def open_settlement(campaign_id: int, *, now: datetime | None = None) -> Settlement:
    """Open the closed campaign's settlement (idempotent: a second call returns the first).

    Succeeded: one item per counted pledge (active ones *pending*, due at once; donations
    and keep-it-all gifts already charged are *charged*), the campaign moves to settling.
    Failed: every active pledge is released at once (nothing is charged; the backer reads
    "not funded — you were not charged"). Cancelled: charged pledges are refunded, the
    rest released. A succeeded campaign whose kind `settlement_waits` (equity investors
    still asked to reconfirm) is refused with a Conflict; the job skips it until then.
    """
    now = now or utcnow()
    with unit_of_work():
        campaign = lock_campaign(campaign_id)
        existing = settlement_for(campaign.id)
        if existing is not None:
            return existing
        if campaign.state is CampaignState.SUCCEEDED:
            if kind_rules(campaign).settlement_waits(campaign):
                raise Conflict(
                    "Investors are still asked to reconfirm this round's terms: it settles once "
                    "each has answered or their time has lapsed.",
                    code=ErrorCode.CONFLICT,
                    params={"waiting": "reconfirmation"},
                )
            state = SettlementState.COLLECTING
        elif campaign.state is CampaignState.FAILED:
            state = SettlementState.RELEASING
        elif campaign.state is CampaignState.CANCELLED:
            state = SettlementState.REFUNDING
        else:
            raise Conflict(
                "Only a closed campaign can be settled.",
                code=ErrorCode.CONFLICT,
                params={"state": campaign.state.value},
            )
        return _open(campaign, state, now)


def _open(campaign: Campaign, state: SettlementState, now: datetime) -> Settlement:
    closed = campaign.closed_at or now
    pledges = db.session.execute(
        select(
            Pledge.id,
            Pledge.user_id,
            Pledge.state,
            Pledge.amount_amount,
            Pledge.refunded_amount,
            Pledge.payment_operation_id,
        )
        .where(
            Pledge.campaign_id == campaign.id,
            Pledge.state.in_([PledgeState.ACTIVE, PledgeState.CHARGED, PledgeState.PENDING]),
        )
        .order_by(Pledge.id)
    ).all()
    if state is SettlementState.RELEASING and any(p.state is not PledgeState.ACTIVE for p in pledges):
        state = SettlementState.REFUNDING  # money already taken: give it back
    settlement = Settlement(
        campaign_id=campaign.id,
        organisation_id=campaign.organisation_id,
        state=state,
        currency=campaign.currency,
        pledged_amount=sum(
            p.amount_amount - (p.refunded_amount or 0) for p in pledges if p.state in COUNTED_STATES
        ),
        item_count=len(pledges),
        closed_at=closed,
        opened_at=now,
        grace_ends_at=_grace_end(closed),
        payout_due_at=closed + timedelta(days=int(current_app.config["PAYOUT_DELAY_DAYS"])),
    )
    db.session.add(settlement)
    db.session.flush()
    rows = [_item_row(settlement, campaign, p, now) for p in pledges]
    if rows:
        db.session.execute(insert(SettlementItem), rows)
    if state is not SettlementState.COLLECTING:
        code = (
            ErrorCode.NOT_FUNDED if campaign.state is CampaignState.FAILED else ErrorCode.CAMPAIGN_CANCELLED
        )
        _release_active_pledges(campaign, code, now)
    if state is SettlementState.RELEASING:
        settlement.transition_to(SettlementState.RELEASED, now)
    if campaign.state is CampaignState.SUCCEEDED:
        transition(campaign, CampaignState.SETTLING, None, now=now, code=EventCode.SETTLEMENT_OPENED)
    db.session.flush()
    return settlement


def _item_row(settlement: Settlement, campaign: Campaign, p, now: datetime) -> dict:
    row = dict(
        settlement_id=settlement.id,
        campaign_id=campaign.id,
        pledge_id=p.id,
        user_id=p.user_id,
        amount_amount=p.amount_amount,
        currency=campaign.currency,
        charged_amount=0,
        refunded_amount=0,
        attempt=0,
        on_session=False,
        created_at=now,
        updated_at=now,
    )
    if p.state is PledgeState.CHARGED:
        charged = ItemState.REFUNDING if settlement.state is SettlementState.REFUNDING else ItemState.CHARGED
        row.update(
            state=charged,
            charged_amount=p.amount_amount,
            refunded_amount=p.refunded_amount or 0,
            payment_operation_id=p.payment_operation_id,
            resolved_at=now,
        )
    elif p.state is PledgeState.PENDING:  # a donation still at the gateway: follow its own key
        row.update(state=ItemState.UNKNOWN, charge_key=donations.charge_key(p.id), next_attempt_at=now)
    elif settlement.state is SettlementState.COLLECTING:
        row.update(state=ItemState.PENDING, next_attempt_at=settlement.closed_at)
    else:
        code = (
            ErrorCode.NOT_FUNDED
            if settlement.state is SettlementState.RELEASING
            else ErrorCode.CAMPAIGN_CANCELLED
        )
        row.update(state=ItemState.RELEASED, failure_code=code.value, resolved_at=now)
    return row


def _release_active_pledges(campaign: Campaign, code: ErrorCode, now: datetime) -> None:
    """Release every active pledge of the (locked) campaign at once; counters recomputed."""
    assert PledgeState.RELEASED in Pledge.TRANSITIONS[PledgeState.ACTIVE]
    tiers = _lock_all_tiers(campaign)
    db.session.execute(
        update(Pledge)
        .where(Pledge.campaign_id == campaign.id, Pledge.state == PledgeState.ACTIVE)
        .values(state=PledgeState.RELEASED, failure_code=code.value, failure_params=None, updated_at=now)
        .execution_options(synchronize_session=False)
    )
    _recount(campaign, tiers)


def _lock_all_tiers(campaign: Campaign) -> dict[int, RewardTier]:
    ids = db.session.scalars(
        select(RewardTier.id).where(RewardTier.campaign_id == campaign.id).order_by(RewardTier.id)
    )
    return {tier_id: lock(RewardTier, tier_id) for tier_id in list(ids)}


def _recount(campaign: Campaign, tiers: dict[int, RewardTier]) -> None:
    """Counters from the counted pledges (after a bulk change; campaign and tiers locked)."""
    counted = (Pledge.campaign_id == campaign.id) & Pledge.state.in_(COUNTED_STATES)
    campaign.raised_amount = int(
        db.session.scalar(
            select(func.coalesce(func.sum(Pledge.amount_amount - Pledge.refunded_amount), 0)).where(counted)
        )
    )
    campaign.backer_count = int(
        db.session.scalar(select(func.count(func.distinct(Pledge.user_id))).where(counted))
    )
    claimed = dict(
        db.session.execute(
            select(Pledge.tier_id, func.sum(Pledge.quantity))
            .where(counted, Pledge.tier_id.is_not(None))
            .group_by(Pledge.tier_id)
        ).all()
    )
    for tier_id, tier in tiers.items():
        tier.claimed = int(claimed.get(tier_id) or 0)


# --- workers -------------------------------------------------------------------------------
def process_due_items(*, now: datetime | None = None, limit: int = 200) -> int:
    """Claim up to `limit` due items and work each (charge, look up, refund); returns how many.

    Safe in any number of workers at once: claims skip rows another worker holds and
    stamp a lease; each charge is exactly once by its key.
    """
    now = now or utcnow()
    ids = _claim(now, limit)
    for item_id in ids:
        work_item(item_id, now=now)
    return len(ids)


@retry_on_lock
def _claim(now: datetime, limit: int) -> list[int]:
    wall = utcnow()
    charging = select(Settlement.id).where(Settlement.state == SettlementState.COLLECTING)
    charging_or_refunding = select(Settlement.id).where(
        Settlement.state.in_([SettlementState.COLLECTING, SettlementState.REFUNDING])
    )
    due = or_(
        and_(
            SettlementItem.state.in_(DUE_STATES),
            SettlementItem.next_attempt_at <= now,
            SettlementItem.settlement_id.in_(charging),
        ),
        and_(
            SettlementItem.state == ItemState.UNKNOWN,
            SettlementItem.next_attempt_at <= now,
            SettlementItem.settlement_id.in_(charging_or_refunding),
        ),
        SettlementItem.state.in_([ItemState.CHARGING, ItemState.REFUNDING]),
    )
    with unit_of_work():
        items = db.session.scalars(
            select(SettlementItem)
            .where(due, or_(SettlementItem.lease_until.is_(None), SettlementItem.lease_until <= wall))
            .order_by(SettlementItem.id)
            .limit(limit)
            .with_for_update(skip_locked=True, of=SettlementItem)
            .execution_options(populate_existing=True)
        ).all()
        for item in items:
            item.lease_until = wall + _lease()
        return [item.id for item in items]


def work_item(item_id: int, *, now: datetime | None = None) -> SettlementItem:
    """Do what one item needs now: a new attempt, the same attempt again, a look-up or a refund."""
    now = now or utcnow()
    item = _fresh(SettlementItem, item_id)
    if item.state is ItemState.REFUNDING:
        return _refund_whole(item_id, now)
    if item.state in DUE_STATES:
        if not _begin_attempt(item_id, now, allowed=DUE_STATES, on_session=False):
            return _fresh(SettlementItem, item_id)
    elif item.state not in (ItemState.CHARGING, ItemState.UNKNOWN):
        return item
    return _charge_and_record(item_id, now)


def _charge_and_record(item_id: int, now: datetime) -> SettlementItem:
    refusal = _call_gateway(item_id)
    _step("outcome")
    return _record_outcome(item_id, refusal, now)


@retry_on_lock
def _begin_attempt(
    item_id: int,
    now: datetime,
    *,
    allowed: Iterable[ItemState],
    on_session: bool,
    payment_method_id: int | None = None,
) -> bool:
    """Step 1: attempt n+1 with its key, stored before the gateway is called. False if not due."""
    row = db.session.execute(
        select(SettlementItem.campaign_id, SettlementItem.pledge_id).where(SettlementItem.id == item_id)
    ).one()
    with unit_of_work():
        lock_campaign(row.campaign_id)
        pledge = lock(Pledge, row.pledge_id)
        item = lock(SettlementItem, item_id)
        settlement = _fresh(Settlement, item.settlement_id)
        if settlement.state is not SettlementState.COLLECTING or item.state not in set(allowed):
            return False
        if not on_session and (item.next_attempt_at is None or item.next_attempt_at > now):
            return False
        if payment_method_id is not None:
            pledge.payment_method_id = payment_method_id
            pledge.updated_at = now
        item.attempt += 1
        item.charge_key = charge_key(pledge.id, item.attempt)
        item.on_session = on_session
        item.last_attempt_at = now
        item.next_attempt_at = None
        item.lease_until = utcnow() + _lease()
        item.transition_to(ItemState.CHARGING, now)
    _step("intent")
    return True


def _call_gateway(item_id: int) -> DomainError | None:
    """Step 2: charge the attempt's key through payments (a donation: drive it by its own key).

    Returns what payments refused before any operation was recorded, else None.
    """
    item = _fresh(SettlementItem, item_id)
    pledge = _fresh(Pledge, item.pledge_id)
    if pledge.state is PledgeState.PENDING:  # a donation that was still at the gateway at close
        code = donations.charge_donation(pledge.id)
        donations.record_donation_outcome(pledge.id, code)
        return None
    metadata = {"pledge_id": str(pledge.id), "settlement_item": str(item.id), "attempt": str(item.attempt)}
    if item.on_session:
        metadata[ON_SESSION_METADATA] = "1"
    _step("call")
    try:
        payments.charge(
            user=pledge.user,
            payment_method=pledge.payment_method,
            amount=item.amount,
            idempotency_key=item.charge_key,
            campaign_id=item.campaign_id,
            description=f"Pledge #{pledge.id} to {pledge.campaign.title}"[:300],
            metadata=metadata,
        )
    except DomainError as exc:
        return exc
    return None


@retry_on_lock
def _record_outcome(item_id: int, refusal: DomainError | None, now: datetime) -> SettlementItem:
    """Step 3: campaign → tier → pledge → item, then follow the attempt's operation."""
    row = db.session.execute(
        select(SettlementItem.campaign_id, SettlementItem.pledge_id, Pledge.tier_id)
        .join(Pledge, Pledge.id == SettlementItem.pledge_id)
        .where(SettlementItem.id == item_id)
    ).one()
    with unit_of_work():
        campaign = lock_campaign(row.campaign_id)
        tier = lock(RewardTier, row.tier_id) if row.tier_id else None
        pledge = lock(Pledge, row.pledge_id)
        item = lock(SettlementItem, item_id)
        if item.state not in (ItemState.CHARGING, ItemState.UNKNOWN):
            return item
        settlement = _fresh(Settlement, item.settlement_id)
        op = payments.find_operation(item.charge_key) if item.charge_key else None
        if pledge.state is PledgeState.PENDING or not kind_rules(pledge.kind).charge_at_close:
            _follow_donation(settlement, pledge, item, op, now)
        else:
            _apply(settlement, campaign, tier, pledge, item, op, refusal, now)
        item.lease_until = None
    return item


def _apply(
    settlement: Settlement,
    campaign: Campaign,
    tier: RewardTier | None,
    pledge: Pledge,
    item: SettlementItem,
    op: PaymentOperation | None,
    refusal: DomainError | None,
    now: datetime,
) -> None:
    state = op.state if op is not None else None
    if state is OperationState.SUCCEEDED:
        _charged(settlement, campaign, tier, pledge, item, op, now)
    elif state is OperationState.REQUIRES_ACTION:
        _unpaid(
            campaign, tier, pledge, item, ItemState.ACTION_REQUIRED, ErrorCode.REQUIRES_ACTION, op, None, now
        )
    elif state is OperationState.FAILED:
        if _is_hard(op):
            _unpaid(
                campaign, tier, pledge, item, ItemState.HARD_DECLINED, ErrorCode.HARD_DECLINED, op, None, now
            )
        else:
            code = error_code_for(op.failure_code)
            retry = _next_retry(settlement.closed_at, now)
            _unpaid(campaign, tier, pledge, item, ItemState.FAILED, code, op, retry, now)
    elif refusal is not None and refusal.code is not ErrorCode.GATEWAY_UNAVAILABLE:
        _unpaid(campaign, tier, pledge, item, ItemState.HARD_DECLINED, refusal.code, op, None, now)
    else:  # no answer: the same key is looked up again later, never a new attempt
        if item.state is not ItemState.UNKNOWN:
            item.transition_to(ItemState.UNKNOWN, now)
        item.next_attempt_at = now + UNKNOWN_RECHECK
    if settlement.state is SettlementState.REFUNDING:
        _into_refunding(campaign, tier, pledge, item, now)


def _is_hard(op: PaymentOperation) -> bool:
    from crowdfund.payments.models import ChargeOutcome

    return (op.failure_code or "") in HARD_DECLINE_CODES or op.result is ChargeOutcome.PERMANENT


def _charged(
    settlement: Settlement,
    campaign: Campaign,
    tier: RewardTier | None,
    pledge: Pledge,
    item: SettlementItem,
    op: PaymentOperation,
    now: datetime,
) -> None:
    if pledge.state is PledgeState.FAILED:
        pledge.transition_to(PledgeState.CHARGED, now)
        count_in(campaign, pledge, tier)
    elif pledge.state is PledgeState.ACTIVE:
        pledge.transition_to(PledgeState.CHARGED, now)
    pledge.payment_operation_id = op.id
    pledge.failure_code = pledge.failure_params = None
    pledge.updated_at = now
    item.transition_to(ItemState.CHARGED, now)
    item.charged_amount = op.amount_amount
    item.payment_operation_id = op.id
    item.failure_code = item.failure_params = item.gateway_code = None
    item.next_attempt_at = None


def _unpaid(
    campaign: Campaign,
    tier: RewardTier | None,
    pledge: Pledge,
    item: SettlementItem,
    state: ItemState,
    code: ErrorCode | str,
    op: PaymentOperation | None,
    retry: datetime | None,
    now: datetime,
) -> None:
    if pledge.state is PledgeState.ACTIVE:
        pledge.transition_to(PledgeState.FAILED, now)
        count_out(campaign, pledge, tier)
    pledge.failure_code = str(code)
    pledge.failure_params = None
    pledge.updated_at = now
    item.transition_to(state, now)
    item.failure_code = str(code)
    item.gateway_code = (op.failure_code if op is not None else None) or None
    item.payment_operation_id = op.id if op is not None else item.payment_operation_id
    item.next_attempt_at = retry


def _follow_donation(
    settlement: Settlement, pledge: Pledge, item: SettlementItem, op: PaymentOperation | None, now: datetime
) -> None:
    """A donation left pending at close: the item follows what the engine recorded on the pledge."""
    if pledge.state is PledgeState.CHARGED:
        item.transition_to(ItemState.CHARGED, now)
        item.charged_amount = pledge.amount_amount
        item.refunded_amount = pledge.refunded_amount or 0
        item.payment_operation_id = pledge.payment_operation_id
        if settlement.state is SettlementState.REFUNDING:
            item.transition_to(ItemState.REFUNDING, now)
    elif pledge.state is PledgeState.FAILED:
        item.transition_to(ItemState.FAILED, now)
        item.failure_code = pledge.failure_code
        item.transition_to(ItemState.DROPPED, now)
    else:
        if item.state is not ItemState.UNKNOWN:
            item.transition_to(ItemState.UNKNOWN, now)
        item.next_attempt_at = now + UNKNOWN_RECHECK


# --- the backer ----------------------------------------------------------------------------
def _own_item(user: User, pledge_id: int) -> SettlementItem:
    item = item_for_pledge(pledge_id)
    if item is None or item.user_id != user.id:
        raise NotFound("We could not find that pledge.", code=ErrorCode.NOT_FOUND)
    return item


def retry_now(
    user: User, pledge_id: int, payment_method_id: int | None = None, *, now: datetime | None = None
) -> SettlementItem:
    """The backer changed card (or just asks again): charge at once, with them present.

    Allowed while the settlement collects and the pledge is unpaid (failed, hard-declined,
    waiting for authentication, or not yet tried). Raises NotFound, ValidationError (a card
    that cannot be charged) or Conflict (nothing to pay).
    """
    now = now or utcnow()
    item = _own_item(user, pledge_id)
    method_id = None
    if payment_method_id is not None:
        method = payments.get_payment_method(user, payment_method_id) if valid_id(payment_method_id) else None
        if method is None or not method.is_usable or method.is_expired_at(now):
            raise ValidationError(
                "Choose one of your saved cards that can be charged.",
                code=ErrorCode.PAYMENT_METHOD_REQUIRED,
                field="payment_method_id",
            )
        method_id = method.id
    return _attempt_now(item, now, UNPAID_STATES, method_id)


def confirm_authentication(user: User, pledge_id: int, *, now: datetime | None = None) -> SettlementItem:
    """The backer confirmed the payment with their bank (on the confirmation page): charge
    on-session at once. Only for a pledge whose bank asked for the card holder."""
    now = now or utcnow()
    item = _own_item(user, pledge_id)
    return _attempt_now(item, now, {ItemState.ACTION_REQUIRED}, None)


def _attempt_now(
    item: SettlementItem, now: datetime, allowed: Iterable[ItemState], method_id: int | None
) -> SettlementItem:
    if not _begin_attempt(item.id, now, allowed=allowed, on_session=True, payment_method_id=method_id):
        fresh = _fresh(SettlementItem, item.id)
        raise Conflict(
            f"This pledge is {fresh.state.label.lower()}: there is nothing to pay now.",
            code=ErrorCode.NOTHING_TO_PAY,
            params={"state": fresh.state.value},
        )
    return _charge_and_record(item.id, now)


# --- finalising ----------------------------------------------------------------------------
def finalise_due_settlements(*, now: datetime | None = None) -> int:
    """Move every settlement on that can: drop what the grace period left unpaid, refund a
    round below its minimum, post fees and release, pay out, finish refunds. Returns how
    many settlements changed state."""
    now = now or utcnow()
    ids = list(
        db.session.scalars(
            select(Settlement.id)
            .where(
                Settlement.state.in_(
                    [SettlementState.COLLECTING, SettlementState.PAYING_OUT, SettlementState.REFUNDING]
                )
            )
            .order_by(Settlement.id)
        )
    )
    db.session.rollback()
    return sum(1 for settlement_id in ids if finalise(settlement_id, now=now))


def finalise(settlement_id: int, *, now: datetime | None = None) -> bool:
    """Move one settlement on as far as it can go now; True when its state changed."""
    now = now or utcnow()
    before = _fresh(Settlement, settlement_id).state
    settlement = _fresh(Settlement, settlement_id)
    if settlement.state is SettlementState.COLLECTING and now >= settlement.grace_ends_at:
        _sync_refunds(settlement_id, now)
        _drop_unpaid(settlement_id, now)
        if not _has_items(settlement_id, OPEN_STATES):
            if _below_minimum(settlement_id):
                _start_refunding(settlement_id, now, ErrorCode.ROUND_BELOW_MINIMUM)
            elif now >= settlement.payout_due_at:
                _step("release")
                _post_fees_and_release(settlement_id, now)
    settlement = _fresh(Settlement, settlement_id)
    if settlement.state is SettlementState.PAYING_OUT:
        _pay_out(settlement_id, now)
    elif settlement.state is SettlementState.REFUNDING:
        _finish_refunding(settlement_id, now)
    return _fresh(Settlement, settlement_id).state is not before


def _has_items(settlement_id: int, states: Iterable[ItemState]) -> bool:
    return bool(
        db.session.scalar(
            select(func.count(SettlementItem.id)).where(
                SettlementItem.settlement_id == settlement_id, SettlementItem.state.in_(list(states))
            )
        )
    )


def _item_ids(settlement_id: int, states: Iterable[ItemState]) -> list[int]:
    return list(
        db.session.scalars(
            select(SettlementItem.id)
            .where(SettlementItem.settlement_id == settlement_id, SettlementItem.state.in_(list(states)))
            .order_by(SettlementItem.id)
        )
    )


@retry_on_lock
def _sync_refunds(settlement_id: int, now: datetime) -> None:
    """Refunds made outside settlement (an operator, the gateway's dashboard via webhook or
    reconciliation) are on the pledges: bring the charged items in line."""
    settlement = _fresh(Settlement, settlement_id)
    behind = (
        db.session.execute(
            select(SettlementItem.id)
            .join(Pledge, Pledge.id == SettlementItem.pledge_id)
            .where(
                SettlementItem.settlement_id == settlement_id,
                SettlementItem.state == ItemState.CHARGED,
                Pledge.refunded_amount > SettlementItem.refunded_amount,
            )
        )
        .scalars()
        .all()
    )
    if not behind:
        return
    with unit_of_work():
        lock_campaign(settlement.campaign_id)
        for item_id in behind:
            item = lock(SettlementItem, item_id)
            _follow_refund(item, _fresh(Pledge, item.pledge_id), now)


def _follow_refund(item: SettlementItem, pledge: Pledge, now: datetime) -> None:
    item.refunded_amount = max(item.refunded_amount or 0, pledge.refunded_amount or 0)
    if pledge.state is PledgeState.REFUNDED and item.state is ItemState.CHARGED:
        item.transition_to(ItemState.REFUNDING, now)
    if pledge.state is PledgeState.REFUNDED and item.state is ItemState.REFUNDING:
        item.transition_to(ItemState.REFUNDED, now)


@retry_on_lock
def _drop_unpaid(settlement_id: int, now: datetime) -> None:
    """After the grace period: every unpaid item no retry is due for is dropped (released)."""
    settlement = _fresh(Settlement, settlement_id)
    with unit_of_work():
        campaign = lock_campaign(settlement.campaign_id)
        candidates = _item_ids(settlement_id, UNPAID_STATES)
        if not candidates:
            return
        tiers = _lock_all_tiers(campaign)
        for item_id in candidates:
            item = lock(SettlementItem, item_id)
            if item.state in DUE_STATES and item.next_attempt_at is not None and item.next_attempt_at <= now:
                continue  # its last try is due: the charge job goes first
            pledge = lock(Pledge, item.pledge_id)
            if pledge.state is PledgeState.ACTIVE:
                count_out(campaign, pledge, tiers.get(pledge.tier_id))
            if pledge.can_transition_to(PledgeState.RELEASED):
                pledge.transition_to(PledgeState.RELEASED, now)
            pledge.failure_code, pledge.failure_params = ErrorCode.PLEDGE_DROPPED.value, None
            item.transition_to(ItemState.DROPPED, now)
            item.gateway_code = item.gateway_code or item.failure_code
            item.failure_code = ErrorCode.PLEDGE_DROPPED.value
            item.next_attempt_at = None


def _net_collected(settlement_id: int) -> int:
    return int(
        db.session.scalar(
            select(
                func.coalesce(func.sum(SettlementItem.charged_amount - SettlementItem.refunded_amount), 0)
            ).where(
                SettlementItem.settlement_id == settlement_id,
                SettlementItem.state.in_(list(COLLECTED_STATES)),
            )
        )
    )


def _below_minimum(settlement_id: int) -> bool:
    settlement = _fresh(Settlement, settlement_id)
    minimum = kind_rules(settlement.campaign).settlement_minimum(settlement.campaign)
    return minimum is not None and _net_collected(settlement_id) < minimum.amount


@retry_on_lock
def _start_refunding(settlement_id: int, now: datetime, code: ErrorCode) -> None:
    with unit_of_work():
        campaign = lock_campaign(_fresh(Settlement, settlement_id).campaign_id)
        settlement = lock(Settlement, settlement_id)
        if settlement.state is not SettlementState.COLLECTING:
            return
        _to_refunding(campaign, settlement, now, code)


def _to_refunding(campaign: Campaign, settlement: Settlement, now: datetime, code: ErrorCode) -> None:
    """Campaign and settlement locked: charged items are refunded, unpaid ones released."""
    settlement.transition_to(SettlementState.REFUNDING, now)
    settlement.status_code, settlement.status_params = code.value, None
    tiers = _lock_all_tiers(campaign)
    for item_id in _item_ids(settlement.id, COLLECTED_STATES | UNPAID_STATES):
        item = lock(SettlementItem, item_id)
        pledge = lock(Pledge, item.pledge_id)
        _into_refunding(campaign, tiers.get(pledge.tier_id), pledge, item, now, code)


def _into_refunding(
    campaign: Campaign,
    tier: RewardTier | None,
    pledge: Pledge,
    item: SettlementItem,
    now: datetime,
    code: ErrorCode = ErrorCode.CAMPAIGN_CANCELLED,
) -> None:
    if item.state is ItemState.CHARGED:
        item.transition_to(ItemState.REFUNDING, now)
    elif item.state in UNPAID_STATES:
        if pledge.state is PledgeState.ACTIVE:
            count_out(campaign, pledge, tier)
        if pledge.can_transition_to(PledgeState.RELEASED):
            pledge.transition_to(PledgeState.RELEASED, now)
        pledge.failure_code, pledge.failure_params = code.value, None
        item.transition_to(ItemState.RELEASED, now)
        item.failure_code = code.value
        item.next_attempt_at = None


def _fees(settlement_id: int, collected: int) -> tuple[int, int]:
    """(platform fee, processing fee) in minor units; see the module docstring for the rounding."""
    platform = collected * int(current_app.config["PLATFORM_FEE_BP"]) // 10_000
    bp = int(current_app.config["PROCESSING_FEE_BP"])
    fixed = int(current_app.config["PROCESSING_FEE_FIXED"])
    charges = db.session.scalars(
        select(SettlementItem.charged_amount).where(
            SettlementItem.settlement_id == settlement_id,
            SettlementItem.charged_amount > 0,
            SettlementItem.state.in_([ItemState.CHARGED, ItemState.REFUNDING, ItemState.REFUNDED]),
        )
    ).all()
    processing = sum(amount * bp // 10_000 + fixed for amount in charges) if (bp or fixed) else 0
    return platform, max(0, min(processing, collected - platform))


@retry_on_lock
def _post_fees_and_release(settlement_id: int, now: datetime) -> None:
    """Post the platform fee and the processing fee, release the rest to the organisation."""
    with unit_of_work():
        campaign = lock_campaign(_fresh(Settlement, settlement_id).campaign_id)
        settlement = lock(Settlement, settlement_id)
        if settlement.state is not SettlementState.COLLECTING or _has_items(settlement_id, OPEN_STATES):
            return
        collected = _net_collected(settlement_id)
        escrow = ledger.balance_of_escrow(campaign.id, settlement.currency)
        if escrow.amount != collected:  # a refund still in flight: wait for it
            current_app.logger.warning(
                "settlement %s: escrow %s differs from collected %s; waiting",
                settlement.id,
                escrow,
                collected,
            )
            return
        platform, processing = _fees(settlement_id, collected)
        # Patient aid keeps the rest in escrow for the hospital's tranches (the kind's rule).
        keeps_in_escrow = kind_rules(campaign).pays_out_through_tranches(campaign)
        release = 0 if keeps_in_escrow else collected - platform - processing
        cur = settlement.currency
        key = f"settlement:{settlement.id}"
        if platform:
            postings.platform_fee(
                campaign_id=campaign.id, amount=Money(platform, cur), key=f"{key}:platform_fee"
            )
        if processing:
            postings.processing_fee_from_escrow(
                campaign_id=campaign.id, amount=Money(processing, cur), key=f"{key}:processing_fee"
            )
        if release:
            postings.release_to_organisation(
                campaign_id=campaign.id,
                organisation_id=settlement.organisation_id,
                amount=Money(release, cur),
                platform_fee=Money.zero(cur),
                key=f"{key}:release",
            )
        settlement.collected_amount = collected
        settlement.platform_fee_amount = platform
        settlement.processing_fee_amount = processing
        settlement.released_amount = release
        settlement.fees_posted_at = now
        settlement.transition_to(SettlementState.PAYING_OUT, now)


def payout_key(settlement_id: int) -> str:
    return f"settlement:{settlement_id}:payout"


def _pay_out(settlement_id: int, now: datetime) -> None:
    settlement = _fresh(Settlement, settlement_id)
    key = payout_key(settlement_id)
    amount = settlement.released_amount - (settlement.recovered_amount or 0)
    op = payments.find_operation(key)
    if op is None and amount <= 0:
        _mark_settled(settlement_id, None, now)
        return
    if op is None:
        destination = payments.payout_destination(settlement.organisation_id)
        if destination is None:
            _set_status(settlement_id, ErrorCode.NO_DESTINATION)
            return
        _step("payout")
        try:
            op = payments.payout(
                organisation_id=settlement.organisation_id,
                amount=Money(amount, settlement.currency),
                idempotency_key=key,
                destination=destination,
                campaign_id=settlement.campaign_id,
                description=f"Settlement of campaign #{settlement.campaign_id}",
            )
        except DomainError as exc:
            _set_status(settlement_id, exc.code)
            return
    elif op.state is OperationState.PENDING:
        op = payments.reconcile_operation(op)
    if op.state is OperationState.SUCCEEDED:
        _mark_settled(settlement_id, op, now)
    elif op.state is OperationState.FAILED:
        _set_status(settlement_id, op.error_code or ErrorCode.FAILED)


@retry_on_lock
def _set_status(settlement_id: int, code: ErrorCode | str) -> None:
    with unit_of_work():
        settlement = lock(Settlement, settlement_id)
        settlement.status_code, settlement.status_params = str(code), None


@retry_on_lock
def _mark_settled(settlement_id: int, op: PaymentOperation | None, now: datetime) -> None:
    with unit_of_work():
        campaign = lock_campaign(_fresh(Settlement, settlement_id).campaign_id)
        settlement = lock(Settlement, settlement_id)
        if settlement.state is not SettlementState.PAYING_OUT:
            return
        if op is not None:
            settlement.payout_operation_id = op.id
            settlement.paid_out_amount = op.amount_amount
        settlement.paid_out_at = now
        settlement.status_code = settlement.status_params = None
        settlement.transition_to(SettlementState.SETTLED, now)
        if campaign.state is CampaignState.SETTLING:
            transition(campaign, CampaignState.SETTLED, None, now=now, code=EventCode.SETTLED)


@retry_on_lock
def _finish_refunding(settlement_id: int, now: datetime) -> None:
    if _has_items(settlement_id, REFUND_WAIT_STATES - {ItemState.PENDING, ItemState.FAILED}):
        return
    with unit_of_work():
        campaign = lock_campaign(_fresh(Settlement, settlement_id).campaign_id)
        settlement = lock(Settlement, settlement_id)
        if settlement.state is not SettlementState.REFUNDING or _has_items(settlement_id, REFUND_WAIT_STATES):
            return
        settlement.transition_to(SettlementState.REFUNDED, now)
        if campaign.state is CampaignState.SETTLING:
            transition(campaign, CampaignState.SETTLED, None, now=now, code=EventCode.SETTLED)


# --- refunds -------------------------------------------------------------------------------
def refund_key(pledge_id: int) -> str:
    """The key of the refund a refunding settlement makes of a pledge's charge."""
    return f"pledge:{pledge_id}:refund:settlement"


def _refund_whole(item_id: int, now: datetime) -> SettlementItem:
    """A refunding settlement's item: refund what is left of its charge, then record it."""
    item = _fresh(SettlementItem, item_id)
    pledge = _fresh(Pledge, item.pledge_id)
    charge = _fresh(PaymentOperation, item.payment_operation_id or pledge.payment_operation_id)
    key = refund_key(pledge.id)
    if charge is not None and (
        charge.amount_amount > (charge.refunded_amount or 0) or payments.find_operation(key) is not None
    ):
        _step("call")
        try:
            op = payments.refund(
                operation=charge, amount=None, idempotency_key=key, reason=ErrorCode.CAMPAIGN_CANCELLED.value
            )
        except DomainError as exc:
            _note_refund_problem(item_id, exc.code)
            return _fresh(SettlementItem, item_id)
        if op.state is not OperationState.SUCCEEDED:
            _note_refund_problem(item_id, op.error_code or ErrorCode.FAILED)
            return _fresh(SettlementItem, item_id)
    _step("outcome")
    donations.record_refund(pledge.id, now=now)
    return _record_refunded(item_id, now)


@retry_on_lock
def _note_refund_problem(item_id: int, code: ErrorCode | str) -> None:
    with unit_of_work():
        item = lock(SettlementItem, item_id)
        item.failure_code = str(code)
        item.lease_until = None


@retry_on_lock
def _record_refunded(item_id: int, now: datetime) -> SettlementItem:
    row = db.session.execute(
        select(SettlementItem.campaign_id, SettlementItem.pledge_id).where(SettlementItem.id == item_id)
    ).one()
    with unit_of_work():
        lock_campaign(row.campaign_id)
        pledge = lock(Pledge, row.pledge_id)
        item = lock(SettlementItem, item_id)
        item.refunded_amount = max(item.refunded_amount or 0, pledge.refunded_amount or 0)
        if item.state is ItemState.REFUNDING and pledge.state in (PledgeState.REFUNDED, PledgeState.RELEASED):
            item.transition_to(ItemState.REFUNDED, now)
        item.lease_until = None
    return item


def refund_item(
    operator: User,
    pledge_id: int,
    amount: Money | None,
    reason: str,
    *,
    key: str | None = None,
    now: datetime | None = None,
) -> SettlementItem | None:
    """An operator refunds all (`amount=None`) or part of a charged pledge of a settled campaign.

    Before the release the refund leaves escrow; after it, the amount is first recovered
    from the organisation (`ledger.postings.recover_from_organisation`: its payable while
    not paid out, else recorded as owed by it) into escrow, then refunded. Exactly once by
    `key` (default: derived from what was refunded so far and the amount asked).
    """
    now = now or utcnow()
    if not getattr(operator, "is_operator", False):
        raise Forbidden("Only operators can refund a pledge.", code=ErrorCode.FORBIDDEN)
    pledge = _fresh(Pledge, pledge_id) if valid_id(pledge_id) else None
    if pledge is None:
        raise NotFound("We could not find that pledge.", code=ErrorCode.NOT_FOUND)
    key = (
        key or f"pledge:{pledge.id}:refund:{pledge.refunded_amount or 0}:{amount.amount if amount else 'all'}"
    )
    item = item_for_pledge(pledge.id)
    if item is not None and payments.find_operation(key) is None:
        settlement = _fresh(Settlement, item.settlement_id)
        campaign = settlement.campaign
        if settlement.state in (
            SettlementState.PAYING_OUT,
            SettlementState.SETTLED,
        ) and not kind_rules(campaign).pays_out_through_tranches(campaign):
            _recover_for_refund(settlement.id, pledge.id, amount, key)
    donations.refund_pledge(operator, pledge.id, amount, reason, key)
    if item is None:
        return None
    return _sync_item(item.id, now)


@retry_on_lock
def _recover_for_refund(settlement_id: int, pledge_id: int, amount: Money | None, key: str) -> None:
    with unit_of_work():
        campaign = lock_campaign(_fresh(Settlement, settlement_id).campaign_id)
        settlement = lock(Settlement, settlement_id)
        pledge = _fresh(Pledge, pledge_id)
        charge = (
            _fresh(PaymentOperation, pledge.payment_operation_id) if pledge.payment_operation_id else None
        )
        if charge is None or ledger.find_transaction(f"{key}:recover") is not None:
            return
        wanted = amount.amount if amount is not None else charge.amount_amount - (charge.refunded_amount or 0)
        if wanted <= 0:
            return
        paid = settlement.state is SettlementState.SETTLED or payments.find_operation(
            payout_key(settlement_id)
        )
        owed_here = 0 if paid else settlement.released_amount - (settlement.recovered_amount or 0)
        payable_part = max(0, min(wanted, owed_here))
        postings.recover_from_organisation(
            campaign_id=campaign.id,
            organisation_id=settlement.organisation_id,
            amount=Money(wanted, settlement.currency),
            payable_part=Money(payable_part, settlement.currency),
            key=f"{key}:recover",
        )
        settlement.recovered_amount = (settlement.recovered_amount or 0) + payable_part
        settlement.owed_by_organisation_amount = (
            (settlement.owed_by_organisation_amount or 0) + wanted - payable_part
        )


@retry_on_lock
def _sync_item(item_id: int, now: datetime) -> SettlementItem:
    row = db.session.execute(
        select(SettlementItem.campaign_id, SettlementItem.pledge_id).where(SettlementItem.id == item_id)
    ).one()
    with unit_of_work():
        lock_campaign(row.campaign_id)
        pledge = lock(Pledge, row.pledge_id)
        item = lock(SettlementItem, item_id)
        _follow_refund(item, pledge, now)
    return item


@retry_on_lock
def _cancel_locked(operator: User, campaign_id: int, reason: str, now: datetime) -> int:
    with unit_of_work():
        campaign = lock_campaign(campaign_id)
        settlement = settlement_for(campaign.id)
        if settlement is None:
            if campaign.state is CampaignState.LIVE:
                transition(campaign, CampaignState.SUSPENDED, operator, reason, now)
            if campaign.state in (CampaignState.APPROVED, CampaignState.SUSPENDED):
                transition(campaign, CampaignState.CANCELLED, operator, reason, now)
            if campaign.state is CampaignState.SUCCEEDED:
                transition(campaign, CampaignState.SETTLING, operator, reason, now)
                settlement = _open_refunding(campaign, now)
            elif campaign.state in (CampaignState.CANCELLED, CampaignState.FAILED):
                settlement = _open_refunding(campaign, now)
            else:
                raise Conflict(code=ErrorCode.NOT_CANCELLABLE, params={"state": campaign.state.value})
        elif settlement.state is SettlementState.COLLECTING:
            _to_refunding(campaign, lock(Settlement, settlement.id), now, ErrorCode.CAMPAIGN_CANCELLED)
        elif settlement.state is not SettlementState.REFUNDING:
            raise Conflict(code=ErrorCode.NOT_CANCELLABLE, params={"state": settlement.state.value})
        return settlement.id


def _open_refunding(campaign: Campaign, now: datetime) -> Settlement:
    settlement = _open(campaign, SettlementState.REFUNDING, now)
    settlement.status_code = ErrorCode.CAMPAIGN_CANCELLED.value
    return settlement


def cancel_campaign_with_refunds(
    operator: User, campaign_id: int, reason: str, *, now: datetime | None = None
) -> Settlement:
    """An operator cancels a campaign: every charged pledge is refunded, every other released.

    A live campaign is suspended then cancelled; a closed one that is still collecting
    turns its settlement to refunding. Refused (not_cancellable) once money was released
    to the organisation. Refunds are made now; any left (gateway down) by the workers.
    """
    now = now or utcnow()
    if not getattr(operator, "is_operator", False):
        raise Forbidden("Only operators can cancel a campaign with refunds.", code=ErrorCode.FORBIDDEN)
    settlement_id = _cancel_locked(operator, campaign_id, reason, now)
    for item_id in _item_ids(settlement_id, {ItemState.REFUNDING}):
        work_item(item_id, now=now)
    _finish_refunding(settlement_id, now)
    return _fresh(Settlement, settlement_id)


# --- progress and statement ---------------------------------------------------------------
@dataclass(frozen=True)
class SettlementProgress:
    """Counts per item state and the totals, for the CLI and the operator's progress bar."""

    campaign_id: int
    settlement: Settlement | None
    state: SettlementState | None
    counts: dict[ItemState, int] = field(default_factory=dict)
    total: int = 0
    charged: int = 0
    failed: int = 0
    dropped: int = 0
    left: int = 0
    pledged: Money | None = None
    collected: Money | None = None
    platform_fee: Money | None = None
    processing_fee: Money | None = None
    paid_out: Money | None = None
    refunded: Money | None = None

    @property
    def percent_done(self) -> int:
        return 100 if not self.total else (100 * (self.total - self.left)) // self.total


FAILED_STATES = frozenset({ItemState.FAILED, ItemState.ACTION_REQUIRED, ItemState.HARD_DECLINED})


def settlement_progress(campaign_id: int) -> SettlementProgress:
    """Where the campaign's settlement stands: items per state, charged, failed, dropped, left, totals."""
    settlement = settlement_for(campaign_id)
    if settlement is None:
        return SettlementProgress(campaign_id=campaign_id, settlement=None, state=None)
    rows = db.session.execute(
        select(
            SettlementItem.state,
            func.count(SettlementItem.id),
            func.coalesce(func.sum(SettlementItem.charged_amount), 0),
            func.coalesce(func.sum(SettlementItem.refunded_amount), 0),
        )
        .where(SettlementItem.settlement_id == settlement.id)
        .group_by(SettlementItem.state)
    ).all()
    counts: Counter[ItemState] = Counter()
    charged_sum = refunded_sum = 0
    for state, count, charged, refunded in rows:
        counts[state] = int(count)
        if state in (ItemState.CHARGED, ItemState.REFUNDING, ItemState.REFUNDED):
            charged_sum += int(charged)
            refunded_sum += int(refunded)
    cur = settlement.currency
    return SettlementProgress(
        campaign_id=campaign_id,
        settlement=settlement,
        state=settlement.state,
        counts=dict(counts),
        total=sum(counts.values()),
        charged=counts[ItemState.CHARGED],
        failed=sum(counts[s] for s in FAILED_STATES),
        dropped=counts[ItemState.DROPPED],
        left=sum(counts[s] for s in OPEN_STATES),
        pledged=settlement.pledged,
        collected=Money(charged_sum - refunded_sum, cur),
        platform_fee=settlement.platform_fee,
        processing_fee=settlement.processing_fee,
        paid_out=settlement.paid_out,
        refunded=Money(refunded_sum, cur),
    )


@dataclass(frozen=True)
class Statement:
    """The campaigner's statement: pledged at close, collected, dropped, fees, paid out, with dates."""

    campaign_id: int
    settlement: Settlement | None
    #: (what, when, amount): "pledged", "collected", "dropped", "refunded", "platform_fee",
    #: "processing_fee", "released", "paid_out", "owed_by_organisation".
    lines: list[tuple[str, datetime | None, Money]] = field(default_factory=list)

    def csv_rows(self) -> list[list[str]]:
        header = ["item", "date", "amount_minor", "currency", "amount"]
        return [header] + [
            [what, when.isoformat() if when else "", str(m.amount), m.currency, m.format()]
            for what, when, m in self.lines
        ]


def campaign_statement(campaign_id: int) -> Statement:
    """The statement of the campaign's settlement (empty before it opens)."""
    settlement = settlement_for(campaign_id)
    if settlement is None:
        return Statement(campaign_id=campaign_id, settlement=None)
    cur = settlement.currency
    dropped = int(
        db.session.scalar(
            select(func.coalesce(func.sum(SettlementItem.amount_amount), 0)).where(
                SettlementItem.settlement_id == settlement.id, SettlementItem.state == ItemState.DROPPED
            )
        )
    )
    progress = settlement_progress(campaign_id)
    lines = [
        ("pledged", settlement.closed_at, settlement.pledged),
        ("collected", settlement.fees_posted_at, progress.collected),
        ("dropped", settlement.grace_ends_at, Money(dropped, cur)),
        ("refunded", None, progress.refunded),
        ("platform_fee", settlement.fees_posted_at, settlement.platform_fee),
        ("processing_fee", settlement.fees_posted_at, settlement.processing_fee),
        ("released", settlement.fees_posted_at, settlement.money("released")),
        ("paid_out", settlement.paid_out_at, settlement.paid_out),
        ("owed_by_organisation", None, settlement.money("owed_by_organisation")),
    ]
    return Statement(campaign_id=campaign_id, settlement=settlement, lines=lines)
