"""The ``spindle`` command. Server commands (serve, worker, db) live in ``server.py`` and
``users.py`` (they act on the database); commands that talk to a running Spindle through
``spindle.client`` in ``runs.py``, ``groups.py`` and ``tokens.py``."""

from __future__ import annotations

import click

import spindle


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(spindle.__version__, prog_name="spindle")
def main() -> None:
    """Spindle: a GA4GH WES service for Snakemake and CWL workflows."""


def _register() -> None:
    from spindle.cli import groups, runs, server, tokens, users

    server.register(main)
    users.register(main)
    runs.register(main)
    groups.register(main)
    tokens.register(main)


_register()
