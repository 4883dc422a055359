"""Patient aid's periodic jobs, for `crowdfund.jobs`: pay the tranches whose public notice is
over, end appeals whose period after close is over, and finish surplus returns a crash or
an unreachable gateway left.

Each entry: (name, what its count means, function of `now`, least seconds between runs).
"""

from __future__ import annotations

from datetime import datetime

from crowdfund.patient_aid import service


def pay_tranches(now: datetime) -> int:
    return service.pay_due_tranches(now=now)


def end_appeals(now: datetime) -> int:
    return service.end_due_appeals(now=now)


def finish_surplus(now: datetime) -> int:
    return service.finish_surplus_returns(now=now)


JOBS = (
    ("patient_aid.pay", "tranches paid to hospitals", pay_tranches, 60),
    ("patient_aid.end", "appeals ended", end_appeals, 3600),
    ("patient_aid.surplus", "surplus returns finished", finish_surplus, 300),
)
