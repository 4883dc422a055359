"""Loan repayments split among lenders: one repayment over 10,000 lenders (target <= 1 s),
and a 100-lender loan repaid over 12 instalments.

    .venv/bin/python bench/repayment_split.py [--lenders 10000] [--small-lenders 100]
        [--database-url sqlite:/// | postgresql+psycopg://postgres@127.0.0.1:5432/postgres]

Creates a database of its own (a temporary SQLite file by default, or hf_bench_<random> on
the PostgreSQL server named), seeds a settled debt campaign with fast SQL inserts (each
lender a user with a charged pledge of a random amount), opens its loan (`open_loan`,
timed on its own: it creates each lender's wallet), then records repayments through
`record_bank_transfer` (the sandbox's bank transfer: the repayment row, the money into
escrow, the allocation, the split and one ledger transaction with every lender's leg, in
one unit of work). Prints the times, then checks that the lenders received exactly their
largest-remainder shares, that escrow is empty and that the ledger verifies. The
database is dropped at the end.
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from datetime import timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from flash_crowd import BenchDatabase  # noqa: E402
from settlement import _bulk, make_app  # noqa: E402


def seed_loan(lenders: int, term_months: int, tag: str) -> tuple[int, int]:
    """A settled debt campaign with `lenders` charged pledges; (settlement id, borrower user id)."""
    from werkzeug.security import generate_password_hash

    from crowdfund.accounts.models import Membership, Organisation, OrganisationType, User
    from crowdfund.campaigns.models import (
        Campaign,
        CampaignKind,
        CampaignState,
        DebtTerms,
        FundingModel,
        HealthCategory,
    )
    from crowdfund.engine.models import Pledge, PledgeState
    from crowdfund.extensions import db
    from crowdfund.models_base import utcnow
    from crowdfund.settlement.models import ItemState, Settlement, SettlementItem, SettlementState

    rng = random.Random(lenders)
    password = generate_password_hash("bench-password")
    now = utcnow()
    owner = User(
        email=f"borrower-{tag}@bench.example", name="Borrower", password_hash=password, session_token=tag
    )
    db.session.add(owner)
    db.session.flush()
    org = Organisation(
        type=OrganisationType.HEALTH_STARTUP,
        legal_name=f"Bench Clinic {tag}",
        registration_number=f"BENCH-{tag}",
        country="CN",
        created_by_id=owner.id,
    )
    db.session.add(org)
    db.session.flush()
    db.session.add(Membership(user_id=owner.id, organisation_id=org.id))
    amounts = [rng.randint(100, 5_000) * 100 for _ in range(lenders)]
    principal = sum(amounts)
    end = now - timedelta(days=20)
    campaign = Campaign(
        kind=CampaignKind.DEBT,
        organisation_id=org.id,
        created_by_id=owner.id,
        title=f"Loan of {lenders} lenders",
        slug=f"loan-{tag}",
        summary="Many lenders.",
        category=HealthCategory.MEDICAL_DEVICES,
        currency="CNY",
        goal_amount=principal,
        funding_model=FundingModel.ALL_OR_NOTHING,
        start_at=end - timedelta(days=30),
        end_at=end,
        state=CampaignState.SETTLED,
        launched_at=end - timedelta(days=30),
        raised_amount=principal,
        backer_count=lenders,
    )
    db.session.add(campaign)
    db.session.flush()
    db.session.add(
        DebtTerms(
            campaign_id=campaign.id,
            annual_rate_bp=948,
            term_months=term_months,
            min_amount=principal,
            max_amount=principal * 2,
            min_loan_share_amount=10_000,
        )
    )
    settlement = Settlement(
        campaign_id=campaign.id,
        organisation_id=org.id,
        state=SettlementState.SETTLED,
        currency="CNY",
        pledged_amount=principal,
        item_count=lenders,
        collected_amount=principal,
        closed_at=end,
        grace_ends_at=end + timedelta(days=7),
        payout_due_at=end + timedelta(days=14),
        paid_out_at=end + timedelta(days=14),
        finished_at=end + timedelta(days=14),
    )
    db.session.add(settlement)
    db.session.commit()
    user_ids = _bulk(
        User,
        [
            dict(
                email=f"l{tag}-{i}@bench.example",
                name=f"Lender {i}",
                password_hash=password,
                session_token=f"{tag}{i}",
            )
            for i in range(lenders)
        ],
        returning=User.id,
    )
    pledge_ids = _bulk(
        Pledge,
        [
            dict(
                campaign_id=campaign.id,
                user_id=u,
                kind=CampaignKind.DEBT,
                state=PledgeState.CHARGED,
                amount_amount=a,
                currency="CNY",
                quantity=1,
                extra_amount=0,
                created_at=end,
                updated_at=end,
            )
            for u, a in zip(user_ids, amounts, strict=True)
        ],
        returning=Pledge.id,
    )
    _bulk(
        SettlementItem,
        [
            dict(
                settlement_id=settlement.id,
                campaign_id=campaign.id,
                pledge_id=p,
                user_id=u,
                state=ItemState.CHARGED,
                amount_amount=a,
                currency="CNY",
                charged_amount=a,
                attempt=1,
            )
            for p, u, a in zip(pledge_ids, user_ids, amounts, strict=True)
        ],
    )
    db.session.commit()
    return settlement.id, owner.id


def _open(settlement_id: int):
    from crowdfund.loans import service

    started = time.perf_counter()
    loan = service.open_loan(settlement_id)
    return loan, time.perf_counter() - started


def _repay(borrower, loan_id: int, amount, key: str) -> float:
    from crowdfund.extensions import db
    from crowdfund.loans import service

    started = time.perf_counter()
    service.record_bank_transfer(borrower, loan_id, amount, reference=key, request_key=key)
    elapsed = time.perf_counter() - started
    db.session.expire_all()
    return elapsed


def check(loan_id: int) -> str:
    from sqlalchemy import select

    from crowdfund.extensions import db
    from crowdfund.ledger import service as ledger
    from crowdfund.loans.models import Loan, LoanLender, LoanState
    from crowdfund.loans.split import largest_remainder

    loan = db.session.get(Loan, loan_id)
    rows = db.session.execute(
        select(LoanLender.lent_amount, LoanLender.received_amount)
        .where(LoanLender.loan_id == loan_id)
        .order_by(LoanLender.id)
    ).all()
    received = [r.received_amount for r in rows]
    target = largest_remainder(loan.repaid_amount, [r.lent_amount for r in rows])
    worst = max(abs(a - b) for a, b in zip(received, target, strict=True))
    exact = received == target
    escrow = ledger.balance_of_escrow(loan.campaign_id, loan.currency)
    ok = sum(received) == loan.repaid_amount and escrow.amount == 0 and min(received) >= 0
    if loan.state is LoanState.REPAID:
        ok = ok and exact
    return (
        f"state {loan.state.value}, repaid {loan.repaid}, lenders' sum equal: {sum(received) == loan.repaid_amount}, "
        f"exact largest-remainder shares: {exact} (largest gap {worst} minor unit), escrow {escrow}: "
        + ("OK" if ok else "WRONG")
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--lenders", type=int, default=10_000)
    parser.add_argument("--small-lenders", type=int, default=100)
    parser.add_argument("--database-url", default="sqlite:///")
    args = parser.parse_args(argv)

    database = BenchDatabase(args.database_url)
    try:
        app = make_app(database.url)
        with app.app_context():
            from crowdfund.accounts.models import User
            from crowdfund.extensions import db
            from crowdfund.ledger import service as ledger
            from crowdfund.loans import service
            from crowdfund.models import create_schema

            create_schema()
            print(f"database: {database.url.split('@')[-1]}")

            settlement_id, borrower_id = seed_loan(args.lenders, 12, "big")
            loan, opened = _open(settlement_id)
            print(f"open a loan of {args.lenders:,} lenders (schedule, lenders, wallets): {opened:.2f} s")
            borrower = db.session.get(User, borrower_id)
            amount = service.next_due(loan).outstanding
            elapsed = _repay(borrower, loan.id, amount, "big-1")
            print(f"one repayment of {amount} split over {args.lenders:,} lenders: {elapsed:.3f} s")
            print("  " + check(loan.id))

            settlement_id, borrower_id = seed_loan(args.small_lenders, 12, "small")
            loan, _ = _open(settlement_id)
            borrower = db.session.get(User, borrower_id)
            times = []
            for n in range(12):
                loan = db.session.get(type(loan), loan.id)
                due = service.next_due(loan)
                times.append(_repay(borrower, loan.id, due.outstanding, f"small-{n}"))
            print(
                f"a {args.small_lenders}-lender loan repaid over 12 instalments: {sum(times):.3f} s "
                f"(each {min(times) * 1000:.0f}–{max(times) * 1000:.0f} ms)"
            )
            print("  " + check(loan.id))
            report = ledger.verify_ledger()
            print(f"ledger verifies: {report.ok} ({report.transactions} transactions)")
            db.session.remove()
            db.engine.dispose()
    finally:
        database.drop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
