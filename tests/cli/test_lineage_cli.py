"""``spindle resume``, ``resubmit``, ``lineage`` and ``delete`` (spindle.cli.lineage): their
documentation. The commands themselves run against the live server of
tests/cli/test_runs_cli.py (one server start for both)."""

from __future__ import annotations

import click

from spindle.cli import lineage
from tests.support import REPO


def test_every_lineage_command_and_option_is_in_cli_md() -> None:
    text = (REPO / "docs" / "cli.md").read_text()
    group = click.Group()
    lineage.register(group)
    for name, command in group.commands.items():
        heading = f"## `spindle {name}"
        assert heading in text, heading
        section = text.split(heading, 1)[1].split("\n## ", 1)[0]
        for param in command.params:
            if isinstance(param, click.Option) and max(param.opts, key=len) != "--url":
                flag = max(param.opts, key=len)
                assert f"`{flag}" in section, f"spindle {name} {flag}"
