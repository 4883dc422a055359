"""Donation receipts and donor messages.

A receipt is made on request from the donation itself (nothing stored): number
``D-{pledge id:08d}``, the donor's own name (even for an anonymous gift: only the public
pages say "Anonymous"), amount and any refund, campaign and organisation, the date of
the charge and the ledger transaction (key and hash) of the charge. Only the donor sees
it; anyone else gets NotFound.

Donor messages: the campaign page shows the messages of collected donations, newest
first, at most `MESSAGES_SHOWN`, in one query; an anonymous donor's without a name. A
member of the organisation may hide one (and show it again), each recorded with who
and when.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import and_, select

from crowdfund.accounts.models import User
from crowdfund.campaigns.access import is_member
from crowdfund.campaigns.models import Campaign, CampaignKind, mask_name
from crowdfund.database import lock, retry_on_lock, unit_of_work, valid_id
from crowdfund.engine.counters import lock_campaign
from crowdfund.engine.models import Pledge, PledgeState
from crowdfund.errors import ErrorCode, NotFound
from crowdfund.extensions import db
from crowdfund.ledger.models import LedgerTransaction, TransactionKind
from crowdfund.ledger.postings import payment_key
from crowdfund.models_base import utcnow
from crowdfund.money import Money
from crowdfund.receipts.models import HiddenDonorMessage

#: How many donor messages the campaign page shows.
MESSAGES_SHOWN = 50
#: Donations that were collected (a refunded one keeps its receipt, marked refunded).
RECEIPT_STATES = frozenset({PledgeState.CHARGED, PledgeState.REFUNDED})


def receipt_number(pledge_id: int) -> str:
    return f"D-{pledge_id:08d}"


@dataclass(frozen=True)
class Receipt:
    pledge_id: int
    number: str
    donor: str
    anonymous: bool
    amount: Money
    refunded: Money
    campaign_title: str
    campaign_slug: str
    organisation: str
    date: datetime
    transaction_key: str | None
    transaction_hash: str | None
    message: str | None

    @property
    def kept(self) -> Money:
        return self.amount - self.refunded


def _charge_transaction(pledge: Pledge) -> LedgerTransaction | None:
    if pledge.payment_operation_id is None:
        return None
    key = payment_key(pledge.payment_operation_id, TransactionKind.CHARGE)
    return db.session.scalar(select(LedgerTransaction).where(LedgerTransaction.key == key))


def has_receipt(pledge: Pledge) -> bool:
    return pledge.kind is CampaignKind.DONATION and pledge.state in RECEIPT_STATES


def receipt_for(user: User | None, pledge_id: Any) -> Receipt:
    """The receipt of `user`'s own collected donation; NotFound for anything else."""
    pledge = db.session.get(Pledge, pledge_id) if valid_id(pledge_id) else None
    if (
        pledge is None
        or user is None
        or pledge.user_id != getattr(user, "id", None)
        or not has_receipt(pledge)
    ):
        raise NotFound("We could not find that receipt.", code=ErrorCode.NOT_FOUND)
    tx = _charge_transaction(pledge)
    campaign = pledge.campaign
    return Receipt(
        pledge_id=pledge.id,
        number=receipt_number(pledge.id),
        donor=pledge.user.name or pledge.user.email,
        anonymous=bool(pledge.anonymous),
        amount=pledge.amount,
        refunded=pledge.refunded,
        campaign_title=campaign.title,
        campaign_slug=campaign.slug,
        organisation=campaign.organisation.legal_name,
        date=tx.created_at if tx is not None else pledge.updated_at,
        transaction_key=tx.key if tx is not None else None,
        transaction_hash=tx.hash if tx is not None else None,
        message=pledge.message,
    )


# ---------------------------------------------------------------------------
# Donor messages
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class DonorMessage:
    pledge_id: int
    #: None for an anonymous donor.
    name: str | None
    text: str
    at: datetime
    amount: Money | None = None
    hidden: bool = False


def _has_message() -> Any:
    return and_(Pledge.message.is_not(None), Pledge.message != "")


def public_messages(campaign_id: int, limit: int = MESSAGES_SHOWN) -> list[DonorMessage]:
    """The newest messages of the campaign's collected donations not hidden (one query).

    A named donor is shown shortened, as patients are ("Li W."): a gift to a health appeal
    can say something about the giver, so the public never reads a full name."""
    rows = db.session.execute(
        select(Pledge.id, Pledge.message, Pledge.anonymous, Pledge.created_at, User.name)
        .join(User, User.id == Pledge.user_id)
        .outerjoin(
            HiddenDonorMessage,
            and_(HiddenDonorMessage.pledge_id == Pledge.id, HiddenDonorMessage.shown_again_at.is_(None)),
        )
        .where(
            Pledge.campaign_id == campaign_id,
            Pledge.state == PledgeState.CHARGED,
            _has_message(),
            HiddenDonorMessage.pledge_id.is_(None),
        )
        .order_by(Pledge.created_at.desc(), Pledge.id.desc())
        .limit(limit)
    ).all()
    return [
        DonorMessage(pledge_id=pid, name=None if anonymous else mask_name(name or ""), text=text, at=at)
        for pid, text, anonymous, at, name in rows
    ]


def campaign_for_messages(user: User | None, campaign_id: Any) -> Campaign:
    """A donation campaign whose messages `user` (a member of its organisation) moderates."""
    campaign = db.session.get(Campaign, campaign_id) if valid_id(campaign_id) else None
    if campaign is None or not is_member(user, campaign.organisation_id):
        raise NotFound("We could not find that campaign.", code=ErrorCode.NOT_FOUND)
    return campaign


def messages_for_campaigner(user: User, campaign_id: Any, limit: int = 500) -> list[DonorMessage]:
    """Every message of the campaign's collected donations, hidden ones too, newest first.

    The campaigner sees "Anonymous" for anonymous donors, as the public does."""
    campaign = campaign_for_messages(user, campaign_id)
    rows = db.session.execute(
        select(Pledge, HiddenDonorMessage)
        .outerjoin(HiddenDonorMessage, HiddenDonorMessage.pledge_id == Pledge.id)
        .where(Pledge.campaign_id == campaign.id, Pledge.state == PledgeState.CHARGED, _has_message())
        .order_by(Pledge.created_at.desc(), Pledge.id.desc())
        .limit(limit)
    ).all()
    return [
        DonorMessage(
            pledge_id=p.id,
            name=None if p.anonymous else p.user.name,
            text=p.message,
            at=p.created_at,
            amount=p.amount,
            hidden=h is not None and h.hidden,
        )
        for p, h in rows
    ]


@retry_on_lock
def set_message_hidden(
    user: User, campaign_id: Any, pledge_id: Any, hidden: bool, *, now: datetime | None = None
) -> HiddenDonorMessage:
    """Hide a donor's message from the campaign page (or show it again); recorded."""
    now = now or utcnow()
    campaign = campaign_for_messages(user, campaign_id)
    with unit_of_work():
        lock_campaign(campaign.id)
        pledge = lock(Pledge, pledge_id) if valid_id(pledge_id) else None
        if pledge is None or pledge.campaign_id != campaign.id or not pledge.message:
            raise NotFound("We could not find that message.", code=ErrorCode.NOT_FOUND)
        row = db.session.get(HiddenDonorMessage, pledge.id)
        if row is None:
            if not hidden:
                raise NotFound("That message is not hidden.", code=ErrorCode.NOT_FOUND)
            row = HiddenDonorMessage(pledge_id=pledge.id, campaign_id=campaign.id, hidden_by_id=user.id)
            db.session.add(row)
        if hidden:
            row.hidden_by_id, row.hidden_at = user.id, now
            row.shown_again_by_id = row.shown_again_at = None
        elif row.hidden:
            row.shown_again_by_id, row.shown_again_at = user.id, now
    return row


def receipts_for_pledges(pledges: list[Pledge]) -> dict[int, str]:
    """Receipt number of each collected donation among `pledges` (no query)."""
    return {p.id: receipt_number(p.id) for p in pledges if has_receipt(p)}
