"""The ``spindle`` command. Server commands (serve, worker, db) live in ``server.py`` and
``users.py`` (they act on the database); commands that talk to a running Spindle through
``spindle.client`` in ``runs.py``, ``groups.py`` and ``tokens.py``."""

from __future__ import annotations

import importlib

import click

import spindle

#: each command's module (registered by its ``register``), imported only when the command
#: runs: ``spindle --version`` or a client command loads neither the server nor the database
COMMANDS = {
    "serve": "server",
    "worker": "server",
    "db": "server",
    "users": "users",
    "submit": "runs",
    "runs": "runs",
    "status": "runs",
    "logs": "runs",
    "cancel": "runs",
    "tasks": "runs",
    "outputs": "runs",
    "groups": "groups",
    "tokens": "tokens",
    "whoami": "tokens",
    "resubmit": "lineage",
    "resume": "lineage",
    "lineage": "lineage",
    "delete": "lineage",
    "notifications": "notifications",
}


class LazyGroup(click.Group):
    """A group whose commands are imported when one is asked for."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        module = COMMANDS.get(cmd_name)
        if module is None:
            return None
        commands = click.Group()
        importlib.import_module(f"spindle.cli.{module}").register(commands)
        return commands.commands.get(cmd_name)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(spindle.__version__, prog_name="spindle")
def main() -> None:
    """Spindle: a GA4GH WES service for Snakemake and CWL workflows."""
