"""`flask payments reconcile`: payments, the ledger and pledges checked against the gateway.

It belongs to the `payments` command group (wired by `create_app`) but lives here: after
the payments are reconciled, the pledges that depend on them are brought in line, and only
the engine knows both.
"""

from __future__ import annotations

from datetime import timedelta

import click

from crowdfund.engine import donations


@click.command("reconcile")
@click.option(
    "--stale-after",
    default=300,
    show_default=True,
    type=click.IntRange(min=0),
    help="Settle operations pending for more than this many seconds.",
)
@click.option(
    "--days",
    default=30,
    show_default=True,
    type=click.IntRange(min=1),
    help="Ask the gateway about this many days.",
)
@click.option(
    "--no-retry", is_flag=True, help="Only look at the gateway; never call it again for a lost operation."
)
def reconcile_command(stale_after: int, days: int, no_retry: bool) -> None:
    """Compare our payment records and the ledger with the gateway's view and print the differences."""
    from crowdfund.payments.reconcile import reconcile
    from crowdfund.payments.service import gateway_name

    report = reconcile(
        stale_after=timedelta(seconds=stale_after), since=timedelta(days=days), retry=not no_retry
    )
    pledges = donations.finish_pending_donations(grace=timedelta(seconds=stale_after), retry=not no_retry)
    pledges += donations.record_missing_refunds()
    if pledges:
        report.resolved.append(f"{pledges} pledge(s) brought in line with their payments")
    report.differences.extend(str(found) for found in donations.pledge_disagreements())
    click.echo(f"Gateway: {gateway_name()}. {report.checked} payment operation(s) checked.")
    for line in report.resolved:
        click.echo(f"resolved: {line}")
    for line in report.differences:
        click.echo(f"DIFFERENCE: {line}")
    if report.ok:
        click.echo("Everything matches.")
    else:
        click.echo(f"{len(report.differences)} difference(s).")
        raise SystemExit(1)
