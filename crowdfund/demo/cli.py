"""`flask demo seed`: demo users, organisations, campaigns of all four kinds — and their money."""

from __future__ import annotations

import click
from flask.cli import AppGroup

from crowdfund.demo.data import DEMO_PASSWORD, USERS
from crowdfund.demo.seed import seed_demo

demo_cli = AppGroup("demo", help="Demo data.")


@demo_cli.command("seed")
def seed_command() -> None:
    """Create demo users, organisations, campaigns and pledges through the services (safe to run again)."""
    result = seed_demo()
    click.echo(
        f"Demo data: {result.created_users} users, {result.created_organisations} organisations and "
        f"{result.created_campaigns} campaigns created; {result.covers_written} cover images drawn."
    )
    click.echo(
        f"Money: {result.cards_saved} sandbox cards saved, {result.investor_profiles} investor profiles, "
        f"{result.pledges_placed} pledges placed, {result.payout_accounts} payout accounts set up, "
        f"{result.repayments} loan repayments made, {result.hospitals} hospitals registered, "
        f"{result.tranches} tranches requested."
    )
    click.echo(
        f"Jobs run as of {result.job_runs} past moments (closes, settlement retries, payouts, "
        "shares issued, the loan opened and its late instalment, a tranche paid to a hospital)."
    )
    for line in result.skipped:
        click.echo(f"  skipped: {line}")
    click.echo("")
    click.echo(f"Log in with any of these e-mails and the password: {DEMO_PASSWORD}")
    rows = [(u.email, u.what) for u in USERS] + [("backer1 … backer12@healthfund.example", "Demo backers")]
    width = max(len(email) for email, _ in rows)
    for email, what in rows:
        click.echo(f"  {email:<{width}}  {what}")
