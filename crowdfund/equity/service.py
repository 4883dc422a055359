"""Equity after success: issue shares when a round settles, the cap table, certificates.

`issue_due_shares` (the `equity.issue` job) finds equity rounds whose settlement is
*settled* and has no `ShareIssue` yet, and issues each in one unit of work under the
campaign's lock: for every settlement item whose money was collected (state *charged*,
what is still in escrow for it = `charged_amount`), whole shares = charged // price per
share, a holding with certificate number ``EQ-{campaign}-{n:05d}`` and the ledger
transaction of the pledge's charge (key ``payment:{operation}:charge``). A pledge whose
last reconfirmation is pending, declined or lapsed gets nothing. The issue is recorded
once per campaign (unique), so a second run or a second worker issues nothing twice.

Reconfirmations live in `crowdfund.equity.amendments`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import select

from crowdfund.accounts.models import Organisation
from crowdfund.campaigns.access import is_member
from crowdfund.campaigns.models import Campaign, CampaignKind
from crowdfund.database import lock, retry_on_lock, unit_of_work, valid_id
from crowdfund.engine.counters import lock_campaign
from crowdfund.engine.models import Pledge
from crowdfund.equity.models import (
    BLOCKING_STATES,
    InvestorNotice,
    PreRoundShares,
    Reconfirmation,
    ShareHolding,
    ShareIssue,
)
from crowdfund.errors import ErrorCode, NotFound, NoticeCode, ValidationError
from crowdfund.extensions import db
from crowdfund.ledger.models import LedgerTransaction, TransactionKind
from crowdfund.ledger.postings import payment_key
from crowdfund.models_base import utcnow
from crowdfund.settlement.models import ItemState, Settlement, SettlementItem, SettlementState

if TYPE_CHECKING:
    from crowdfund.accounts.models import User

#: The most pre-round shares an organisation may state.
MAX_PRE_ROUND_SHARES = 10**15


def certificate_number(campaign_id: int, n: int) -> str:
    return f"EQ-{campaign_id}-{n:05d}"


# ---------------------------------------------------------------------------
# Issuing shares
# ---------------------------------------------------------------------------


def settled_rounds_without_issue(limit: int = 100) -> list[int]:
    """Ids of settled equity settlements whose shares have not been issued yet."""
    return list(
        db.session.scalars(
            select(Settlement.id)
            .join(Campaign, Campaign.id == Settlement.campaign_id)
            .outerjoin(ShareIssue, ShareIssue.campaign_id == Settlement.campaign_id)
            .where(
                Campaign.kind == CampaignKind.EQUITY,
                Settlement.state == SettlementState.SETTLED,
                ShareIssue.id.is_(None),
            )
            .order_by(Settlement.id)
            .limit(limit)
        )
    )


def issue_due_shares(*, now: datetime | None = None) -> int:
    """Issue the shares of every settled equity round not issued yet; how many rounds."""
    now = now or utcnow()
    return sum(1 for sid in settled_rounds_without_issue() if issue_shares(sid, now=now) is not None)


def blocked_pledges(campaign_id: int) -> set[int]:
    """Pledges whose latest reconfirmation is pending, declined or lapsed: nothing is issued."""
    latest: dict[int, Reconfirmation] = {}
    for r in db.session.scalars(
        select(Reconfirmation).where(Reconfirmation.campaign_id == campaign_id).order_by(Reconfirmation.id)
    ):
        latest[r.pledge_id] = r
    return {pid for pid, r in latest.items() if r.state in BLOCKING_STATES}


def _charge_transaction(operation_id: int | None) -> LedgerTransaction | None:
    if operation_id is None:
        return None
    key = payment_key(operation_id, TransactionKind.CHARGE)
    return db.session.scalar(select(LedgerTransaction).where(LedgerTransaction.key == key))


@retry_on_lock
def issue_shares(settlement_id: int, *, now: datetime | None = None) -> ShareIssue | None:
    """Issue a settled round's shares once; None when it is not a settled equity round."""
    now = now or utcnow()
    settlement = db.session.get(Settlement, settlement_id) if valid_id(settlement_id) else None
    if settlement is None:
        return None
    with unit_of_work():
        campaign = lock_campaign(settlement.campaign_id)
        settlement = lock(Settlement, settlement_id)
        if campaign.kind is not CampaignKind.EQUITY or settlement.state is not SettlementState.SETTLED:
            return None
        existing = db.session.scalar(select(ShareIssue).where(ShareIssue.campaign_id == campaign.id))
        if existing is not None:
            return existing
        price = campaign.equity_terms.price_per_share_amount
        issue = ShareIssue(
            campaign_id=campaign.id,
            organisation_id=campaign.organisation_id,
            settlement_id=settlement.id,
            price_amount=price,
            currency=campaign.currency,
            issued_at=now,
        )
        db.session.add(issue)
        db.session.flush()
        _issue_holdings(campaign, issue, price, now)
    return issue


def _issue_holdings(campaign: Campaign, issue: ShareIssue, price: int, now: datetime) -> None:
    blocked = blocked_pledges(campaign.id)
    rows = db.session.execute(
        select(SettlementItem, Pledge)
        .join(Pledge, Pledge.id == SettlementItem.pledge_id)
        .where(
            SettlementItem.settlement_id == issue.settlement_id,
            SettlementItem.state == ItemState.CHARGED,
            SettlementItem.charged_amount > 0,
        )
        .order_by(Pledge.id)
    ).all()
    n = 0
    holders: set[int] = set()
    for item, pledge in rows:
        shares = item.charged_amount // price
        if shares <= 0 or pledge.id in blocked:
            continue
        n += 1
        tx = _charge_transaction(item.payment_operation_id or pledge.payment_operation_id)
        holding = ShareHolding(
            issue_id=issue.id,
            organisation_id=campaign.organisation_id,
            campaign_id=campaign.id,
            pledge_id=pledge.id,
            user_id=pledge.user_id,
            certificate_number=certificate_number(campaign.id, n),
            holder_name=(pledge.user.name or pledge.user.email)[:200],
            shares=shares,
            price_amount=price,
            currency=campaign.currency,
            paid_amount=shares * price,
            ledger_transaction_id=tx.id if tx is not None else None,
            issued_at=now,
        )
        db.session.add(holding)
        db.session.add(
            InvestorNotice(
                user_id=pledge.user_id,
                campaign_id=campaign.id,
                pledge_id=pledge.id,
                code=NoticeCode.SHARES_ISSUED.value,
                params={
                    "shares": f"{shares:,}",
                    "issuer": campaign.organisation.legal_name,
                    "certificate": holding.certificate_number,
                },
                created_at=now,
            )
        )
        issue.shares_issued += shares
        holders.add(pledge.user_id)
    issue.holder_count = len(holders)


# ---------------------------------------------------------------------------
# Cap table
# ---------------------------------------------------------------------------


def split_percent(parts: list[int], whole: int) -> list[int]:
    """Each part's share of `whole` in hundredths of a percent, by largest remainder: when the
    parts make the whole they sum to exactly 10,000."""
    if whole <= 0:
        return [0 for _ in parts]
    scaled = [p * 10_000 for p in parts]
    floors = [s // whole for s in scaled]
    target = 10_000 if sum(parts) == whole else sum(floors)
    order = sorted(range(len(parts)), key=lambda i: (-(scaled[i] % whole), i))
    for i in order[: max(0, target - sum(floors))]:
        floors[i] += 1
    return floors


@dataclass
class CapTableRow:
    holder: str
    shares: int
    #: Hundredths of a percent (of the whole company when the pre-round shares are known,
    #: else of the shares issued on the platform).
    percent_bp: int
    round_title: str
    round_id: int | None
    date: datetime | None
    certificates: list[str] = field(default_factory=list)

    @property
    def percent(self) -> str:
        return f"{self.percent_bp // 100}.{self.percent_bp % 100:02d}%"


@dataclass
class CapTable:
    organisation: Organisation
    rows: list[CapTableRow]
    #: Shares issued through the platform's rounds.
    issued: int
    #: What the organisation stated it had before; None when it has not.
    pre_round: int | None

    @property
    def total(self) -> int:
        return self.issued + (self.pre_round or 0)

    @property
    def of_whole_company(self) -> bool:
        return self.pre_round is not None

    def csv_rows(self) -> list[list[str]]:
        basis = "of the company" if self.of_whole_company else "of shares issued on HealthFund"
        out = [["holder", "shares", f"percent {basis}", "round", "date", "certificates"]]
        for r in self.rows:
            out.append(
                [
                    r.holder,
                    str(r.shares),
                    r.percent,
                    r.round_title,
                    r.date.date().isoformat() if r.date else "",
                    " ".join(r.certificates),
                ]
            )
        out.append(["total", str(self.total), "100.00%" if self.total else "0.00%", "", "", ""])
        return out


def can_see_cap_table(user: User | None, organisation_id: int) -> bool:
    if user is None or not getattr(user, "is_authenticated", False):
        return False
    return bool(user.is_operator) or is_member(user, organisation_id)


def cap_table_for(user: User, organisation_id: Any) -> CapTable:
    """The organisation's cap table for one of its members or an operator; NotFound otherwise."""
    org = db.session.get(Organisation, organisation_id) if valid_id(organisation_id) else None
    if org is None or not can_see_cap_table(user, org.id):
        raise NotFound("We could not find that organisation.", code=ErrorCode.NOT_FOUND)
    return cap_table(org)


def cap_table(org: Organisation) -> CapTable:
    """Holders (one row per holder and round), shares, percentage, round and date."""
    holdings = db.session.scalars(
        select(ShareHolding)
        .where(ShareHolding.organisation_id == org.id)
        .order_by(ShareHolding.issued_at, ShareHolding.id)
    ).all()
    grouped: dict[tuple[int, int], CapTableRow] = {}
    for h in holdings:
        row = grouped.get((h.campaign_id, h.user_id))
        if row is None:
            row = grouped[(h.campaign_id, h.user_id)] = CapTableRow(
                holder=h.holder_name,
                shares=0,
                percent_bp=0,
                round_title=h.campaign.title,
                round_id=h.campaign_id,
                date=h.issued_at,
            )
        row.shares += h.shares
        row.certificates.append(h.certificate_number)
    rows = list(grouped.values())
    issued = sum(r.shares for r in rows)
    base = db.session.get(PreRoundShares, org.id)
    pre_round = base.shares if base is not None else None
    if pre_round is not None:
        rows.insert(
            0,
            CapTableRow(
                holder="Shareholders before HealthFund (as stated by the organisation)",
                shares=pre_round,
                percent_bp=0,
                round_title="Before HealthFund",
                round_id=None,
                date=base.set_at,
            ),
        )
    whole = issued + (pre_round or 0)
    for row, bp in zip(rows, split_percent([r.shares for r in rows], whole), strict=True):
        row.percent_bp = bp
    return CapTable(organisation=org, rows=rows, issued=issued, pre_round=pre_round)


def parse_share_count(value: Any) -> int:
    text = str(value if value is not None else "").strip().replace(",", "").replace("_", "")
    if not text.isdigit() or len(text) > 16 or int(text) < 1 or int(text) > MAX_PRE_ROUND_SHARES:
        raise ValidationError(
            "Enter the number of shares issued before the round: a whole number of at least 1.",
            code=ErrorCode.VALIDATION_ERROR,
            field="shares",
        )
    return int(text)


@retry_on_lock
def set_pre_round_shares(user: User, organisation_id: Any, shares: Any) -> PreRoundShares:
    """A member of the organisation states how many shares it had issued before HealthFund."""
    count = parse_share_count(shares)
    if not valid_id(organisation_id) or not is_member(user, organisation_id):
        raise NotFound("We could not find that organisation.", code=ErrorCode.NOT_FOUND)
    with unit_of_work():
        org = lock(Organisation, organisation_id)
        if org is None:
            raise NotFound("We could not find that organisation.", code=ErrorCode.NOT_FOUND)
        base = db.session.get(PreRoundShares, org.id, populate_existing=True)
        if base is None:
            base = PreRoundShares(organisation_id=org.id, shares=count, set_by_id=user.id)
            db.session.add(base)
        base.shares, base.set_by_id, base.set_at = count, user.id, utcnow()
    return base


# ---------------------------------------------------------------------------
# Holdings and certificates
# ---------------------------------------------------------------------------


def own_holding(user: User, holding_id: Any) -> ShareHolding:
    """A holding of `user`'s; NotFound for anyone else's (or none)."""
    holding = db.session.get(ShareHolding, holding_id) if valid_id(holding_id) else None
    if holding is None or user is None or holding.user_id != getattr(user, "id", None):
        raise NotFound("We could not find that certificate.", code=ErrorCode.NOT_FOUND)
    return holding


def holdings_for_pledges(pledge_ids: list[int]) -> dict[int, ShareHolding]:
    """The holding issued for each of these pledges (one query)."""
    if not pledge_ids:
        return {}
    return {
        h.pledge_id: h
        for h in db.session.scalars(select(ShareHolding).where(ShareHolding.pledge_id.in_(pledge_ids)))
    }


def notices_for(user: User, limit: int = 20) -> list[InvestorNotice]:
    return list(
        db.session.scalars(
            select(InvestorNotice)
            .where(InvestorNotice.user_id == user.id)
            .order_by(InvestorNotice.id.desc())
            .limit(limit)
        )
    )
