"""``spindle`` imports only what the command it runs needs: ``spindle --version`` and the
client commands load neither the server (FastAPI) nor the database (SQLAlchemy)."""

from __future__ import annotations

import subprocess
import sys

import click

from spindle import cli
from spindle.cli import groups, lineage, notifications, runs, server, tokens, users

HEAVY = ("fastapi", "sqlalchemy", "uvicorn", "spindle.app")


def _imported_after(code: str) -> set[str]:
    done = subprocess.run(
        [sys.executable, "-c", f"{code}\nimport sys\nprint(' '.join(sys.modules))"],
        capture_output=True,
        text=True,
        check=True,
    )
    return set(done.stdout.split())


def test_importing_the_cli_loads_no_server_or_database() -> None:
    loaded = _imported_after("import spindle.cli")
    assert not {m for m in loaded if m.split(".")[0] in HEAVY or m in HEAVY}


def test_a_client_command_loads_no_server_or_database() -> None:
    loaded = _imported_after(
        "from spindle.cli import main\n"
        "import click\n"
        "main.get_command(click.Context(main), 'status')"
    )
    assert "spindle.cli.runs" in loaded
    assert not {m for m in loaded if m.split(".")[0] in HEAVY or m in HEAVY}


def test_the_notifications_command_loads_no_server_or_database() -> None:
    loaded = _imported_after(
        "from spindle.cli import main\n"
        "import click\n"
        "main.get_command(click.Context(main), 'notifications')"
    )
    assert "spindle.cli.notifications" in loaded
    assert not {m for m in loaded if m.split(".")[0] in HEAVY or m in HEAVY}


def test_the_lazy_table_names_every_registered_command() -> None:
    registered: dict[str, str] = {}
    for module in (server, users, runs, groups, tokens, notifications, lineage):
        group = click.Group()
        module.register(group)
        registered |= {name: module.__name__.rsplit(".", 1)[1] for name in group.commands}
    assert registered == cli.COMMANDS
    for name in cli.COMMANDS:
        assert cli.main.get_command(click.Context(cli.main), name) is not None
