"""``spindle resume``, ``resubmit``, ``lineage`` and ``delete`` (spindle.cli.lineage) against
a real running Spindle (tests.live), through click's CliRunner."""

from __future__ import annotations

import json
import time

import click
import pytest

from spindle.cli import lineage
from tests.cli.test_runs_cli import FAST, assert_error, ok, run_id_of, spindle
from tests.live import live_server
from tests.support import EXAMPLES, REPO

__all__ = ["live_server"]  # the fixture, imported so pytest finds it here


def wait_ended(url: str, run_id: str) -> str:
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        state = ok(spindle("status", run_id, "--url", url)).stdout.strip()
        if state in ("COMPLETE", "EXECUTOR_ERROR", "SYSTEM_ERROR", "CANCELED"):
            return state
        time.sleep(0.3)
    raise AssertionError(f"{run_id} did not end")


@pytest.mark.engine
def test_resume_resubmit_lineage_and_delete(live_server: str) -> None:
    url = ["--url", live_server]
    failed = spindle("submit", EXAMPLES / "snakemake" / "fail", "--wait", *url, *FAST)
    parent = run_id_of(failed)
    assert "EXECUTOR_ERROR" in failed.stdout

    child = ok(
        spindle("resume", parent, "--param", "retries=2", "--notes", "once more", *url)
    ).stdout.strip()
    assert child != parent
    shown = ok(spindle("lineage", child, *url)).stdout
    assert f"recovery of {parent}" in shown
    assert "once more" in shown
    assert "retries" in shown
    as_json = json.loads(ok(spindle("lineage", parent, "--json", *url)).stdout)
    assert [c["run_id"] for c in as_json["children"]] == [child]

    # its working folder went to the first recovery
    assert_error(spindle("resume", parent, *url), child)
    fresh = ok(spindle("resume", parent, "--fresh", *url)).stdout.strip()
    again = ok(spindle("resubmit", parent, *url)).stdout.strip()
    assert len({child, fresh, again}) == 3

    assert_error(spindle("delete", again, "--yes", *url), "cancel it")
    ok(spindle("cancel", again, "--wait", *url, *FAST))
    for run_id in (child, fresh):
        wait_ended(live_server, run_id)
    deleted = ok(spindle("delete", child, "--yes", *url))
    assert deleted.stdout.startswith(f"deleted {child}")
    assert child not in ok(spindle("runs", "--all", *url)).stdout


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
