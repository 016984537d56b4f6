"""``spindle groups`` and ``spindle submit --group/--cpus/--priority`` against a real running
Spindle (tests.live), through click's CliRunner: real runs, real HTTP, nothing mocked."""

from __future__ import annotations

import json
import time

import click
import pytest

from spindle.cli import groups
from tests.cli.test_runs_cli import assert_error, ok, run_id_of, spindle
from tests.live import live_server
from tests.support import EXAMPLES, REPO

__all__ = ["live_server"]  # the fixture, imported so pytest finds it here

FAIL_CWL = EXAMPLES / "cwl" / "fail" / "workflow.cwl"
SLEEP_CWL = EXAMPLES / "cwl" / "sleep"


def show(url: str, group_id: str) -> dict[str, str]:
    """``groups show`` as {key: value}."""
    out = ok(spindle("groups", "show", group_id, "--url", url)).stdout
    return {k.strip(): v.strip() for k, _, v in (line.partition(":") for line in out.splitlines())}


def wait_state(url: str, run_id: str, state: str, seconds: float = 120) -> None:
    deadline = time.monotonic() + seconds
    now = ""
    while now != state:
        assert time.monotonic() < deadline, f"run {run_id} is {now}, not {state}"
        time.sleep(0.2)
        now = ok(spindle("status", run_id, "--url", url)).stdout.strip()


def test_create_show_list_update_delete(live_server: str) -> None:
    url = live_server
    created = ok(
        spindle(
            "groups", "create", "cli batch", "--description", "made by the CLI",
            "--max-runs", "2", "--max-cpus", "8", "--max-duration", "90.5", "--url", url,
        )
    )  # fmt: skip
    group_id = created.stdout.strip()
    assert len(created.stdout.splitlines()) == 1  # only the id, for scripts

    shown = show(url, group_id)
    assert shown["id"] == group_id
    assert shown["name"] == "cli batch"
    assert shown["description"] == "made by the CLI"
    assert shown["running"] == "0 / 2"
    assert shown["cpus in use"] == "0 / 8"
    assert shown["max duration"] == "90.5 min"
    assert shown["compute env"] == "-"
    assert shown["runs"] == "no runs"
    as_json = json.loads(ok(spindle("groups", "show", group_id, "--json", "--url", url)).stdout)
    assert (as_json["max_runs"], as_json["usage"]) == (2, {"running": 0, "cpus_in_use": 0})

    # none clears a limit; options not given stay as they were
    updated = ok(
        spindle(
            "groups", "update", group_id, "--max-runs", "none", "--name", "renamed",
            "--compute-env", "local", "--url", url,
        )
    )  # fmt: skip
    assert "max runs -, max cpus 8, max duration 90.5 min" in updated.stdout
    shown = show(url, group_id)
    assert (shown["name"], shown["running"], shown["compute env"]) == ("renamed", "0 / -", "local")
    ok(spindle("groups", "update", group_id, "--compute-env", "none", "--url", url))
    assert show(url, group_id)["compute env"] == "-"

    other = ok(spindle("groups", "create", "zz other", "--url", url)).stdout.strip()
    lines = ok(spindle("groups", "list", "--all", "--url", url)).stdout.splitlines()
    assert lines[0].split()[:4] == ["GROUP", "ID", "NAME", "MAX"]
    row = next(line for line in lines if line.startswith(group_id))
    assert row.split()[1:] == ["renamed", "-", "8", "90.5", "0", "0", "0"]
    by_name = ok(spindle("groups", "list", "--sort", "name", "--all", "--url", url)).stdout
    ids = [line.split()[0] for line in by_name.splitlines()[1:]]
    assert ids.index(group_id) < ids.index(other)  # "renamed" before "zz other"
    searched = ok(spindle("groups", "list", "--search", "renam", "--url", url)).stdout
    assert [line.split()[0] for line in searched.splitlines()[1:]] == [group_id]
    assert len(ok(spindle("groups", "list", "--limit", "1", "--url", url)).stdout.splitlines()) == 2

    deleted = ok(spindle("groups", "delete", other, "--url", url))
    assert deleted.stdout.strip() == f"deleted run group {other}"
    assert_error(spindle("groups", "show", other, "--url", url), f"run group {other!r}")


def test_mistakes_are_errors(live_server: str) -> None:
    url = live_server
    assert_error(
        spindle("groups", "create", "g", "--max-runs", "0", "--url", url), "max_runs: Input"
    )
    assert_error(
        spindle("groups", "create", "g", "--max-duration", "0", "--url", url), "max_duration:"
    )
    assert_error(
        spindle("groups", "create", "g", "--compute-env", "mars", "--url", url), "compute_env:"
    )
    assert_error(spindle("groups", "show", "nope", "--url", url), "run group 'nope' was not found")
    assert_error(spindle("groups", "delete", "nope", "--url", url), "'nope' was not found")
    assert_error(
        spindle("groups", "update", "nope", "--max-cpus", "2", "--url", url), "'nope' was not"
    )
    assert_error(spindle("groups", "move", "no-run", "none", "--url", url), "'no-run' was not")
    bad = spindle("groups", "create", "g", "--max-runs", "lots", "--url", url)
    assert bad.exit_code == 2  # a usage error, reported by click
    assert "'lots' is not a whole number or 'none'" in bad.stderr
    nothing = spindle("groups", "update", "some-id", "--url", url)
    assert nothing.exit_code == 2
    assert "nothing to change" in nothing.stderr
    both = spindle("submit", FAIL_CWL, "--cpus", "2", "--engine-param", "cpus=3", "--url", url)
    assert both.exit_code == 2
    assert "either as --cpus or as --engine-param" in both.stderr


@pytest.mark.engine
def test_submit_into_a_group_and_manage_its_runs(live_server: str) -> None:
    url = live_server
    group_id = ok(spindle("groups", "create", "with runs", "--max-cpus", "4", "--url", url))
    gid = group_id.stdout.strip()
    run_id = run_id_of(
        ok(
            spindle(
                "submit", FAIL_CWL, "--group", gid, "--cpus", "2", "--priority", "7",
                "--url", url,
            )
        )
    )  # fmt: skip
    wait_state(url, run_id, "EXECUTOR_ERROR")
    request = json.loads(ok(spindle("status", run_id, "--json", "--url", url)).stdout)["request"]
    assert request["workflow_engine_parameters"] == {"cpus": "2", "priority": "7"}
    assert_error(
        spindle("submit", FAIL_CWL, "--group", gid, "--cpus", "5", "--url", url),
        "the run asks for 5 CPUs",
    )
    assert_error(spindle("submit", FAIL_CWL, "--group", "nope", "--url", url), "run_group_id:")

    listed = ok(spindle("groups", "runs", gid, "--url", url)).stdout.splitlines()
    assert listed[0].split() == ["RUN", "ID", "STATE", "START", "END"]
    assert [line.split()[:2] for line in listed[1:]] == [[run_id, "EXECUTOR_ERROR"]]
    only_done = ok(spindle("groups", "runs", gid, "--state", "COMPLETE", "--url", url))
    assert len(only_done.stdout.splitlines()) == 1
    assert show(url, gid)["runs"] == "EXECUTOR_ERROR=1"

    # a finished run cannot change groups; cancelling a group of finished runs is a no-op
    assert_error(
        spindle("groups", "move", run_id, "none", "--url", url), "only a QUEUED run can change"
    )
    nothing = ok(spindle("groups", "cancel", gid, "--url", url))
    assert (nothing.stdout, nothing.stderr.strip()) == ("", "no unfinished runs")

    # cancel every unfinished run of the group at once
    sleeper = run_id_of(ok(spindle("submit", SLEEP_CWL, "--group", gid, "--url", url)))
    canceled = ok(spindle("groups", "cancel", gid, "--url", url))
    assert canceled.stdout.split() == [sleeper]
    wait_state(url, sleeper, "CANCELED")

    assert_error(spindle("groups", "delete", gid, "--url", url), "detach_runs=true")
    detached = ok(spindle("groups", "delete", gid, "--detach-runs", "--url", url))
    assert detached.stdout.strip() == f"deleted run group {gid} (2 runs detached)"
    assert ok(spindle("status", run_id, "--url", url)).stdout.strip() == "EXECUTOR_ERROR"


def test_every_groups_command_and_option_is_in_cli_md() -> None:
    """docs/cli.md names each groups subcommand and every option it takes."""
    text = (REPO / "docs" / "cli.md").read_text()
    for name, command in groups.groups.commands.items():
        heading = f"## `spindle groups {name}"
        assert heading in text, heading
        section = text.split(heading, 1)[1].split("\n## ", 1)[0]
        for param in command.params:
            if isinstance(param, click.Option) and max(param.opts, key=len) != "--url":
                assert f"`{max(param.opts, key=len)}" in section, f"groups {name} {param.opts}"
