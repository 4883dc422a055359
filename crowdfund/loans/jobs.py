"""Loans' periodic jobs, for `crowdfund.jobs`: open the loan of each settled debt campaign,
finish repayments a crash left pending, apply the late rules (late fee, penalty, default).

Each entry: (name, what its count means, function of `now`, least seconds between runs).
"""

from __future__ import annotations

from datetime import datetime

from crowdfund.loans import service


def open_loans(now: datetime) -> int:
    return service.open_due_loans(now=now)


def resume_repayments(now: datetime) -> int:
    return service.resume_repayments(now=now)


def apply_late_rules(now: datetime) -> int:
    return service.apply_late_rules(now=now)


JOBS = (
    ("loans.open", "loans opened", open_loans, 60),
    ("loans.repayments", "repayments finished", resume_repayments, 60),
    ("loans.late", "instalments or loans made late", apply_late_rules, 3600),
)
