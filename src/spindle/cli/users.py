"""``spindle users``: manage users on the database directly.

Like ``spindle db``, these commands are for whoever runs the server: they read the server's
settings (``SPINDLE_*``, ``spindle.toml``) and write the database itself, so they work before
the server has its first user (the first admin) and need no credentials. Passwords are read
from the terminal or stdin, never from the command line.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TypeVar

import click

from spindle.auth.accounts import AccountService
from spindle.cli.common import CliError, print_table, read_password
from spindle.cli.server import load_settings
from spindle.domain import User, UserStats
from spindle.errors import SpindleError

T = TypeVar("T")


def _on_database(work: Callable[[AccountService], Awaitable[T]]) -> T:
    from spindle.db.engine import create_engine
    from spindle.db.migrate import is_current

    settings = load_settings()

    async def go() -> T:
        db = create_engine(settings.effective_database_url)
        try:
            if not await is_current(db):
                raise CliError("the database is not migrated: run `spindle db upgrade`")
            return await work(AccountService(db))
        finally:
            await db.dispose()

    try:
        return asyncio.run(go())
    except SpindleError as exc:
        raise CliError(exc.message) from None


@click.group()
def users() -> None:
    """Manage users (on the database directly, like `spindle db`)."""


@users.command("add")
@click.argument("name")
@click.option("--admin", is_flag=True, help="Let the user see and act on every run.")
@click.option("--email", default=None, help="The user's e-mail address.")
@click.option("--display-name", default=None, help="The name shown for the user.")
@click.option(
    "--no-password",
    is_flag=True,
    help="No password (a user who signs in through the identity provider).",
)
def add(
    name: str, admin: bool, email: str | None, display_name: str | None, no_password: bool
) -> None:
    """Add a user; the password is read from the terminal (twice) or from stdin."""
    password = None if no_password else read_password(confirm=True)
    user = _on_database(
        lambda accounts: accounts.add_user(
            name, password=password, email=email, display_name=display_name, admin=admin
        )
    )
    click.echo(f"added user {user.name}" + (" (admin)" if user.admin else ""))


def _when(user: User) -> str:
    return user.last_login_at.strftime("%Y-%m-%dT%H:%M:%SZ") if user.last_login_at else "-"


@users.command("list")
def list_users() -> None:
    """List users with their run stats."""
    found = _on_database(lambda accounts: accounts.list_users())
    rows = []
    for u in found:
        stats = u.stats or UserStats()
        flags = ",".join(
            f
            for f, on in (
                ("admin", u.admin),
                ("disabled", u.disabled),
                ("password", bool(u.password_hash)),
            )
            if on
        )
        rows.append(
            (
                u.name,
                u.email or "-",
                flags or "-",
                _when(u),
                str(stats.submitted),
                str(stats.succeeded),
                str(stats.failed),
            )
        )
    print_table(["NAME", "EMAIL", "FLAGS", "LAST LOGIN", "RUNS", "SUCCEEDED", "FAILED"], rows)


@users.command("disable")
@click.argument("name")
def disable(name: str) -> None:
    """Stop a user from signing in (their tokens and sessions stop working too)."""
    _on_database(lambda accounts: accounts.set_disabled(name, True))
    click.echo(f"disabled user {name}")


@users.command("enable")
@click.argument("name")
def enable(name: str) -> None:
    """Let a disabled user sign in again."""
    _on_database(lambda accounts: accounts.set_disabled(name, False))
    click.echo(f"enabled user {name}")


@users.command("set-password")
@click.argument("name")
@click.option("--none", "remove", is_flag=True, help="Remove the password instead.")
def set_password(name: str, remove: bool) -> None:
    """Set a user's password (from the terminal, twice, or stdin); ends their sessions."""
    password = None if remove else read_password("New password", confirm=True)
    _on_database(lambda accounts: accounts.set_password(name, password))
    click.echo(f"{'removed the password of' if remove else 'set the password of'} {name}")


@users.command("set-admin")
@click.argument("name")
@click.option("--revoke", is_flag=True, help="Take the admin flag away instead.")
def set_admin(name: str, revoke: bool) -> None:
    """Make a user an admin (or, with --revoke, no longer one)."""
    _on_database(lambda accounts: accounts.set_admin(name, not revoke))
    click.echo(f"{name} is {'no longer ' if revoke else ''}an admin")


def register(main: click.Group) -> None:
    main.add_command(users)
