"""The payments' periodic jobs, for `crowdfund.jobs`: settle operations left pending.

Each entry: (name, what its count means, function of `now`, least seconds between runs).
"""

from __future__ import annotations

from datetime import datetime, timedelta

from flask import current_app

from crowdfund.payments import service
from crowdfund.payments.gateway import GatewayUnavailable


def settle_stale_operations(now: datetime) -> int:
    """Settle operations pending for longer than a gateway call may take, from the gateway's view.

    The gateway keeps real time, so "stale" is measured on the wall clock, not `now`.
    Returns how many changed state; one the gateway cannot be asked about waits for the next run.
    """
    stale_after = timedelta(seconds=current_app.config["PAYMENT_CALL_LEASE_SECONDS"])
    settled = 0
    for op in service.operations_needing_attention(stale_after):
        before = op.state
        try:
            settled += service.reconcile_operation(op).state is not before
        except GatewayUnavailable:
            continue
    return settled


JOBS = (("payments.settle-stale", "operations settled", settle_stale_operations, 60),)
