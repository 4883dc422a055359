"""The engine's periodic jobs, for `crowdfund.jobs`: finish donations a stopped process left pending.

Each entry: (name, what its count means, function of `now`, least seconds between runs).
"""

from __future__ import annotations

from datetime import datetime

from crowdfund.engine.donations import reconcile_pending_donations


def finish_pending_donations(now: datetime) -> int:
    return reconcile_pending_donations(now=now)


JOBS = (("engine.finish-donations", "pledges brought in line", finish_pending_donations, 60),)
