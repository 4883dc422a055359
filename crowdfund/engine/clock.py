"""The campaign clock, kept for older imports: closing now lives in `crowdfund.campaigns.lifecycle`."""

from __future__ import annotations

from datetime import datetime

from crowdfund.campaigns.lifecycle import close_campaign_if_due, close_due_campaigns, close_reason, succeeded

__all__ = ["close_campaign_if_due", "close_due_campaigns", "close_reason", "reconcile_donations", "succeeded"]


def reconcile_donations(now: datetime | None = None) -> int:
    """Tick step: finish donations whose charge was interrupted (see the engine service)."""
    from crowdfund.engine.service import reconcile_pending_donations

    return reconcile_pending_donations(now=now)
