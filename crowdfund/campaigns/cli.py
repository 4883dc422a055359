"""`flask campaigns …` commands; `tick` is what a scheduler runs every minute."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

import click
from flask.cli import AppGroup

from crowdfund.campaigns.service import launch_due_campaigns
from crowdfund.engine.clock import close_due_campaigns, reconcile_donations
from crowdfund.models_base import utcnow

campaigns_cli = AppGroup("campaigns", help="Campaign lifecycle jobs.")

#: The steps of `flask campaigns tick`, run in order with the same `now`: each returns how
#: many campaigns it moved. Other packages append theirs (e.g. closing campaigns past their end).
TICK_STEPS: list[tuple[str, Callable[[datetime], int]]] = [
    ("launched", launch_due_campaigns),
    ("closed", close_due_campaigns),
    ("donations reconciled", reconcile_donations),
]


def add_tick_step(label: str, step: Callable[[datetime], int]) -> None:
    """Run `step(now)` on every tick after the existing steps; `label` names its count."""
    if not any(existing is step for _, existing in TICK_STEPS):
        TICK_STEPS.append((label, step))


def run_tick(now: datetime | None = None) -> dict[str, int]:
    """Run every tick step once; returns each step's count by label."""
    now = now or utcnow()
    return {label: step(now) for label, step in TICK_STEPS}


@campaigns_cli.command("tick")
def tick() -> None:
    """Launch approved campaigns whose start has come (and run the other lifecycle steps)."""
    for label, count in run_tick().items():
        click.echo(f"{label}: {count}")
