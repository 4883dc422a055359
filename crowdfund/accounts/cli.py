"""`flask users …` commands: create staff accounts and list users."""

from __future__ import annotations

import click
from flask.cli import AppGroup

from crowdfund.accounts import service
from crowdfund.accounts.models import Role
from crowdfund.errors import DomainError

users_cli = AppGroup("users", help="Manage user accounts.")


def _create_staff(role: Role, email: str, name: str | None, password: str | None, promote: bool) -> None:
    existing = service.find_user_by_email(email)
    if existing is None or not promote:
        if existing is None and not name:
            name = click.prompt("Name")
        if existing is None and password is None:
            password = click.prompt("Password", hide_input=True, confirmation_prompt=True)
    try:
        user, created = service.create_staff_user(email, name or "", password, role, promote=promote)
    except DomainError as exc:
        raise click.ClickException(exc.message) from exc
    if created:
        click.echo(f"Created {role.value} {user.email} (id {user.id}).")
    else:
        click.echo(f"{user.email} (id {user.id}) is now an {role.value}.")


def _staff_command(role: Role):
    @click.option("--email", required=True, help="E-mail address used to log in.")
    @click.option("--name", default=None, help="Full name shown to colleagues (asked for when missing).")
    @click.option("--password", default=None, help="Password (asked for, hidden, when missing).")
    @click.option(
        "--promote", is_flag=True, help=f"If the e-mail already has an account, make it an {role.value}."
    )
    def command(email: str, name: str | None, password: str | None, promote: bool) -> None:
        _create_staff(role, email, name, password, promote)

    command.__doc__ = f"Create an {role.value} account (or promote an existing one with --promote)."
    return command


users_cli.command("create-admin")(_staff_command(Role.ADMIN))
users_cli.command("create-operator")(_staff_command(Role.OPERATOR))


@users_cli.command("list")
@click.option(
    "--role", type=click.Choice([r.value for r in Role]), default=None, help="Only users with this role."
)
def list_users(role: str | None) -> None:
    """List user accounts: id, role, e-mail, name."""
    users = service.list_users(Role(role) if role else None)
    if not users:
        click.echo("No users.")
        return
    width = max(len(u.email) for u in users)
    click.echo(f"{'ID':>5}  {'ROLE':<8}  {'E-MAIL':<{width}}  NAME")
    for user in users:
        status = "" if user.is_active else "  (deactivated)"
        click.echo(f"{user.id:>5}  {user.role.value:<8}  {user.email:<{width}}  {user.name}{status}")
