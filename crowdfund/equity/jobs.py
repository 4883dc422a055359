"""Equity's periodic jobs, for `crowdfund.jobs`: cancel commitments whose reconfirmation
lapsed, issue the shares of rounds whose settlement is settled.

Each entry: (name, what its count means, function of `now`, least seconds between runs).
"""

from __future__ import annotations

from datetime import datetime

from crowdfund.equity import amendments, service


def lapse_reconfirmations(now: datetime) -> int:
    return amendments.lapse_due_reconfirmations(now=now)


def issue_shares(now: datetime) -> int:
    return service.issue_due_shares(now=now)


JOBS = (
    ("equity.lapse", "commitments not reconfirmed", lapse_reconfirmations, 60),
    ("equity.issue", "rounds issued", issue_shares, 60),
)
