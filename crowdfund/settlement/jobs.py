"""Settlement's periodic jobs, for `crowdfund.jobs`: open settlements of closed campaigns,
charge the items that are due, finalise settlements whose grace period and payout delay are over.

Each entry: (name, what its count means, function of `now`, least seconds between runs).
"""

from __future__ import annotations

from datetime import datetime

from crowdfund.settlement import service


def open_settlements(now: datetime) -> int:
    return service.open_due_settlements(now=now)


def charge_due_items(now: datetime) -> int:
    total = 0
    while True:  # drain what is due now, a batch at a time
        done = service.process_due_items(now=now)
        total += done
        if done < 200:
            return total


def finalise_settlements(now: datetime) -> int:
    return service.finalise_due_settlements(now=now)


JOBS = (
    ("settlement.open", "settlements opened", open_settlements, 60),
    ("settlement.charge", "pledges worked", charge_due_items, 0),
    ("settlement.finalise", "settlements finalised", finalise_settlements, 300),
)
