"""``spindle tokens`` and ``spindle whoami``: your own personal API tokens, through the API.

These talk to a running Spindle like the run commands do, as whoever the credentials say
(``SPINDLE_TOKEN``, the client config file, or ``--username`` with a password typed at the
prompt), so every user manages their own tokens on a remote server without database access.
"""

from __future__ import annotations

from datetime import datetime

import click

from spindle.cli.common import make_client, print_table, read_password, run_async, url_option
from spindle.client import SpindleClient
from spindle.models.accounts import NewToken, TokenInfo, UserInfo


def _username_option(f: click.decorators.FC) -> click.decorators.FC:
    return click.option(
        "--username",
        default=None,
        metavar="NAME",
        help="Sign in as NAME with a password (read from the terminal or stdin) instead of "
        "SPINDLE_TOKEN or the config file.",
    )(f)


def _client(url: str | None, username: str | None) -> SpindleClient:
    password = read_password(f"Password for {username}") if username else None
    return make_client(url, username=username, password=password)


def _time(value: datetime | None) -> str:
    return value.strftime("%Y-%m-%dT%H:%M:%SZ") if value else "-"


@click.group()
def tokens() -> None:
    """Your personal API tokens (through the API)."""


@tokens.command("create")
@click.argument("name")
@click.option(
    "--expires-days",
    type=click.IntRange(1, 3650),
    default=None,
    metavar="DAYS",
    help="Days until the token stops working (default: never).",
)
@_username_option
@url_option
def create(name: str, expires_days: int | None, username: str | None, url: str | None) -> None:
    """Create a token and print it, once: Spindle keeps only a digest of it."""

    async def go() -> NewToken:
        async with _client(url, username) as client:
            return await client.create_token(name, expires_in_days=expires_days)

    token = run_async(go())
    click.echo(token.token)
    expiry = f", expires {_time(token.expires_at)}" if token.expires_at else ""
    click.echo(
        f"token {token.id} ({token.name}{expiry}); it is shown this once: keep it in "
        "SPINDLE_TOKEN or the client config file",
        err=True,
    )


@tokens.command("list")
@_username_option
@url_option
def list_tokens(username: str | None, url: str | None) -> None:
    """List your tokens (never their secrets)."""

    async def go() -> list[TokenInfo]:
        async with _client(url, username) as client:
            return await client.list_tokens()

    print_table(
        ["ID", "NAME", "CREATED", "LAST USED", "EXPIRES", "REVOKED"],
        [
            (
                str(t.id),
                t.name,
                _time(t.created_at),
                _time(t.last_used_at),
                _time(t.expires_at),
                _time(t.revoked_at),
            )
            for t in run_async(go())
        ],
    )


@tokens.command("revoke")
@click.argument("token_id", type=int)
@_username_option
@url_option
def revoke(token_id: int, username: str | None, url: str | None) -> None:
    """Revoke one of your tokens by its id; it stops working at once."""

    async def go() -> TokenInfo:
        async with _client(url, username) as client:
            return await client.revoke_token(token_id)

    token = run_async(go())
    click.echo(f"revoked token {token.id} ({token.name})")


@click.command()
@_username_option
@url_option
def whoami(username: str | None, url: str | None) -> None:
    """Print who the server takes you for, and your run stats."""

    async def go() -> UserInfo:
        async with _client(url, username) as client:
            return await client.me()

    me = run_async(go())
    role = "admin" if me.admin else "user"
    click.echo(f"{me.name} ({role}, signed in with {me.auth_method})")
    s = me.stats
    click.echo(
        f"runs: {s.submitted} submitted, {s.succeeded} succeeded, {s.failed} failed, "
        f"{s.canceled} canceled, {s.active} active"
    )


def register(main: click.Group) -> None:
    main.add_command(tokens)
    main.add_command(whoami)
