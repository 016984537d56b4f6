"""``spindle users`` on every database, through click's CliRunner: the commands act on the
database the settings name, read passwords from stdin, and report mistakes as ``error:``."""

from __future__ import annotations

from pathlib import Path

import click
from click.testing import CliRunner, Result

from spindle.cli import main, tokens, users
from tests.support import REPO


def spindle(env: dict[str, str], *args: str, input: str | None = None) -> Result:
    return CliRunner().invoke(main, list(args), env=env, input=input)


def ok(result: Result) -> Result:
    assert result.exit_code == 0, f"exit {result.exit_code}\n{result.stdout}\n{result.stderr}"
    return result


def error(result: Result, fragment: str) -> None:
    assert result.exit_code == 1, result.stdout + result.stderr
    assert result.stderr.startswith("error: "), result.stderr
    assert fragment in result.stderr
    assert "Traceback" not in result.stderr


def rows(result: Result) -> dict[str, list[str]]:
    lines = result.stdout.splitlines()
    assert lines[0].split() == [
        "NAME",
        "EMAIL",
        "FLAGS",
        "LAST",
        "LOGIN",
        "RUNS",
        "SUCCEEDED",
        "FAILED",
    ]
    return {line.split()[0]: line.split()[1:] for line in lines[1:]}


def test_users_commands(database_url: str, tmp_path: Path) -> None:
    env = {
        "SPINDLE_DATABASE_URL": database_url,
        "SPINDLE_DATA_DIR": str(tmp_path),
        "SPINDLE_CONFIG": str(tmp_path / "absent.toml"),
    }
    added = ok(spindle(env, "users", "add", "alice", "--email", "a@example.org", input="pw one\n"))
    assert added.stdout == "added user alice\n"
    ok(spindle(env, "users", "add", "root", "--admin", input="pw two\n"))
    ok(spindle(env, "users", "add", "sso-user", "--no-password"))
    listed = rows(ok(spindle(env, "users", "list")))
    assert listed["alice"] == ["a@example.org", "password", "-", "0", "0", "0"]
    assert listed["root"][1] == "admin,password"
    assert listed["sso-user"][1] == "-"
    assert listed["local"][1] == "-"

    ok(spindle(env, "users", "disable", "alice"))
    ok(spindle(env, "users", "set-admin", "alice"))
    assert rows(ok(spindle(env, "users", "list")))["alice"][1] == "admin,disabled,password"
    ok(spindle(env, "users", "enable", "alice"))
    ok(spindle(env, "users", "set-admin", "alice", "--revoke"))
    ok(spindle(env, "users", "set-password", "alice", "--none"))
    assert rows(ok(spindle(env, "users", "list")))["alice"][1] == "-"
    ok(spindle(env, "users", "set-password", "alice", input="pw three\n"))
    assert rows(ok(spindle(env, "users", "list")))["alice"][1] == "password"

    error(spindle(env, "users", "add", "alice", input="x\n"), "user 'alice' exists already")
    error(spindle(env, "users", "disable", "nobody"), "user 'nobody' does not exist")
    error(spindle(env, "users", "add", "carol", input="\n"), "the password is empty")
    error(spindle(env, "users", "add", " carol", "--no-password"), "name: must not start")


def test_users_needs_a_migrated_database(tmp_path: Path) -> None:
    env = {"SPINDLE_DATA_DIR": str(tmp_path), "SPINDLE_CONFIG": str(tmp_path / "absent.toml")}
    error(spindle(env, "users", "list"), "run `spindle db upgrade`")


def test_every_account_command_and_option_is_in_cli_md() -> None:
    """docs/cli.md names each users/tokens subcommand (and whoami) and every option."""
    text = (REPO / "docs" / "cli.md").read_text()
    group = click.Group()
    users.register(group)
    tokens.register(group)
    commands: list[tuple[str, click.Command]] = []
    for name, command in group.commands.items():
        if isinstance(command, click.Group):
            commands.extend((f"{name} {sub}", c) for sub, c in command.commands.items())
        else:
            commands.append((name, command))
    for name, command in commands:
        heading = f"## `spindle {name}"
        assert heading in text, heading
        section = text.split(heading, 1)[1].split("\n## ", 1)[0]
        for param in command.params:
            if isinstance(param, click.Option) and max(param.opts, key=len) != "--url":
                assert f"`{max(param.opts, key=len)}" in section, f"spindle {name} {param.opts}"
