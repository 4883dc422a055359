"""`flask settlement status <campaign id or slug>`: where a campaign's settlement stands."""

from __future__ import annotations

import click
from flask.cli import AppGroup
from sqlalchemy import select

from crowdfund.campaigns.models import Campaign
from crowdfund.database import valid_id
from crowdfund.extensions import db
from crowdfund.settlement import service

settlement_cli = AppGroup("settlement", help="Settlement of closed campaigns: progress and totals.")


def _campaign(ref: str) -> Campaign:
    campaign = None
    if ref.isdigit() and valid_id(int(ref)):
        campaign = db.session.get(Campaign, int(ref))
    if campaign is None:
        campaign = db.session.scalar(select(Campaign).where(Campaign.slug == ref))
    if campaign is None:
        raise click.BadParameter(f"no campaign with id or slug {ref!r}", param_hint="CAMPAIGN")
    return campaign


@settlement_cli.command("status")
@click.argument("campaign")
def status_command(campaign: str) -> None:
    """Items charged, failed, dropped and left, and the totals."""
    found = _campaign(campaign)
    progress = service.settlement_progress(found.id)
    click.echo(f"campaign {found.id} {found.slug}: {found.state.value}")
    if progress.settlement is None:
        click.echo("settlement: not opened")
        return
    click.echo(f"settlement {progress.settlement.id}: {progress.state.value}")
    click.echo(
        f"items {progress.total}: charged {progress.charged}, failed {progress.failed}, "
        f"dropped {progress.dropped}, left {progress.left} ({progress.percent_done}% done)"
    )
    for state, count in sorted(progress.counts.items(), key=lambda kv: kv[0].value):
        click.echo(f"  {state.value:<16} {count}")
    for label, money in (
        ("pledged", progress.pledged),
        ("collected", progress.collected),
        ("platform fee", progress.platform_fee),
        ("processing fee", progress.processing_fee),
        ("paid out", progress.paid_out),
        ("refunded", progress.refunded),
    ):
        click.echo(f"{label:<16} {money}")
    if progress.settlement.status_code:
        click.echo(f"status: {progress.settlement.status_message}")
