"""`flask ledger verify`: recompute the hash chain and every balance; exit 1 if anything is off."""

from __future__ import annotations

import click
from flask.cli import AppGroup

from crowdfund.ledger.service import parse_head, verify_ledger
from crowdfund.money import Money

ledger_cli = AppGroup("ledger", help="The double-entry ledger.")


def _head(_ctx, _param, values: tuple[str, ...]) -> list[tuple[int, str]]:
    try:
        return [parse_head(value) for value in values]
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None


@ledger_cli.command("verify")
@click.option(
    "--expect-head",
    "expect_heads",
    multiple=True,
    callback=_head,
    metavar="SEQUENCE:HASH",
    help="A chain head published earlier (/ledger/head.json); fail unless it is still in the chain. Repeatable.",
)
def verify_command(expect_heads: list[tuple[int, str]]) -> None:
    """Check the hash chain, that every transaction balances, every stored balance and the head."""
    report = verify_ledger(expect_heads=expect_heads)
    click.echo("Ledger verification")
    click.echo(f"  transactions: {report.transactions}")
    click.echo(f"  accounts:     {report.accounts}")
    if not report.totals:
        click.echo("  totals:       none yet")
    for currency, (debits, credits) in report.totals.items():
        mark = "=" if debits == credits else "!="
        click.echo(
            f"  {currency}: debits {Money(debits, currency).format_plain()} {mark} "
            f"credits {Money(credits, currency).format_plain()}"
        )
    click.echo(f"  head:         #{report.head_sequence} {report.head_hash}")
    for sequence, head_hash in expect_heads:
        click.echo(f"  expected:     #{sequence} {head_hash}")
    if report.ok:
        click.echo("OK: the hash chain, every transaction and every account balance check out.")
        return
    if report.first_broken is not None:
        sequence, txn_id, key = report.first_broken
        click.echo(f"FAILED at transaction #{sequence} (id {txn_id}, key {key!r})", err=True)
    else:
        click.echo("FAILED", err=True)
    for problem in report.problems:
        click.echo(f"  - {problem}", err=True)
    raise SystemExit(1)
