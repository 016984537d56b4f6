"""The run commands of the ``spindle`` CLI (spindle.cli.runs) against a real running Spindle
(tests.live), through click's CliRunner: real runs, real HTTP, nothing mocked."""

from __future__ import annotations

import json
import time
from pathlib import Path

import click
import pytest
from click.testing import CliRunner, Result

from spindle.cli import main, runs
from tests.live import free_port, live_server
from tests.support import EXAMPLES, REPO

__all__ = ["live_server"]  # the fixture, imported so pytest finds it here

FAST = ["--poll", "0.2"]


def spindle(*args: str | Path, env: dict[str, str] | None = None) -> Result:
    """Run ``spindle ARGS`` in-process; stdout and stderr are kept apart."""
    return CliRunner().invoke(main, [str(a) for a in args], env=env)


def ok(result: Result) -> Result:
    assert result.exit_code == 0, (
        f"exit {result.exit_code}\nstdout:\n{result.stdout}\nstderr:\n{result.stderr}"
    )
    return result


def run_id_of(result: Result) -> str:
    return result.stdout.splitlines()[0].strip()


def assert_error(result: Result, *fragments: str) -> None:
    """A failure the user can read: ``error: ...`` on stderr, exit code 1, no traceback."""
    assert result.exit_code == 1, result.stdout + result.stderr
    last = result.stderr.rstrip("\n").splitlines()[-1]
    assert last.startswith("error: "), result.stderr
    assert "Traceback" not in result.stderr
    for fragment in fragments:
        assert fragment in last


@pytest.mark.engine
def test_submit_wait_runs_a_snakefile_to_complete(live_server: str) -> None:
    result = ok(
        spindle(
            "submit",
            EXAMPLES / "snakemake" / "wordcount" / "Snakefile",
            "--wait",
            "--url",
            live_server,
            *FAST,
        )
    )
    run_id = run_id_of(result)
    lines = result.stdout.splitlines()
    assert "COMPLETE" in lines
    assert f"{live_server}/ga4gh/wes/v1/runs/{run_id}/files/work/results/summary.txt" in (
        result.stdout
    )
    assert any(line.startswith("results/summary.txt ") for line in lines)
    assert "attaching 4 files" in result.stderr  # Snakefile, params.json, data/, rules/

    status = json.loads(ok(spindle("status", run_id, "--json", "--url", live_server)).stdout)
    assert status["state"] == "COMPLETE"
    assert status["request"]["workflow_url"] == "Snakefile"
    assert status["request"]["workflow_type"] == "SMK"


@pytest.mark.engine
def test_submit_a_cwl_folder_with_params(live_server: str, tmp_path: Path) -> None:
    folder = EXAMPLES / "cwl" / "wordcount"
    result = ok(
        spindle(
            "submit", folder, "--params", folder / "inputs.json", "--wait",
            "--url", live_server, *FAST,
        )
    )  # fmt: skip
    run_id = run_id_of(result)
    assert "COMPLETE" in result.stdout.splitlines()
    assert any(line.startswith("counts ") for line in result.stdout.splitlines())

    status = json.loads(ok(spindle("status", run_id, "--json", "--url", live_server)).stdout)
    assert status["request"]["workflow_url"] == "workflow.cwl"
    assert status["request"]["workflow_type_version"] == "v1.2"  # what the file declares

    ok(spindle("outputs", run_id, "--download", tmp_path / "out", "--url", live_server))
    counts = (tmp_path / "out" / "counts.txt").read_text()
    assert [int(n) for n in counts.split()] == [3, 9]

    tasks = ok(spindle("tasks", run_id, "--url", live_server)).stdout.splitlines()
    assert tasks[0].split() == ["TASK", "ID", "NAME", "START", "END", "EXIT"]
    assert {line.split()[1] for line in tasks[1:]} == {"shout", "count"}


@pytest.mark.engine
def test_a_failing_run_exits_1(live_server: str) -> None:
    result = spindle(
        "submit", EXAMPLES / "snakemake" / "fail", "--wait", "--url", live_server, *FAST
    )
    assert result.exit_code == 1
    assert "EXECUTOR_ERROR" in result.stdout.splitlines()
    assert f"spindle logs {run_id_of(result)} --stderr" in result.stderr


@pytest.mark.engine
def test_params_tags_and_env_url(live_server: str) -> None:
    """--param values are YAML (numbers, booleans), --tag values stay strings, and the
    server comes from SPINDLE_URL when --url is not given."""
    env = {"SPINDLE_URL": live_server}
    result = ok(
        spindle(
            "submit", EXAMPLES / "snakemake" / "sleep",
            "--param", "seconds=1", "--param", "flag=true", "--param", "name=x y",
            "--tag", "n=1", "--engine-param", "compute_env=local",
            env=env,
        )
    )  # fmt: skip
    run_id = run_id_of(result)
    request = json.loads(ok(spindle("status", run_id, "--json", env=env)).stdout)["request"]
    assert request["workflow_params"] == {"seconds": 1, "flag": True, "name": "x y"}
    assert request["tags"] == {"n": "1"}
    assert request["workflow_engine_parameters"] == {"compute_env": "local"}

    listed = ok(spindle("runs", "--all", env=env)).stdout.splitlines()
    assert listed[0].split()[:3] == ["RUN", "ID", "STATE"]
    mine = [line for line in listed if line.startswith(run_id)]
    assert len(mine) == 1
    assert mine[0].rstrip().endswith("n=1")
    assert len(ok(spindle("runs", "--limit", "1", env=env)).stdout.splitlines()) == 2

    # logs --follow returns once the run has ended, with everything it wrote
    followed = ok(spindle("logs", run_id, "--follow", *FAST, env=env))
    assert "sleeping 1s" in followed.stdout
    assert ok(spindle("status", run_id, env=env)).stdout.strip() == "COMPLETE"
    stderr_log = ok(spindle("logs", run_id, "--stderr", env=env)).stdout_bytes
    assert b"nap" in stderr_log


@pytest.mark.engine
@pytest.mark.slow
def test_cancel_stops_a_running_workflow(live_server: str) -> None:
    submitted = ok(
        spindle("submit", EXAMPLES / "snakemake" / "sleep", "--url", live_server)
    )  # params.json is not read unless --params names it: the Snakefile sleeps 300 s
    run_id = run_id_of(submitted)
    deadline = time.monotonic() + 120
    while ok(spindle("status", run_id, "--url", live_server)).stdout.strip() != "RUNNING":
        assert time.monotonic() < deadline, "the run never started"
        time.sleep(0.1)
    result = ok(spindle("cancel", run_id, "--wait", "--url", live_server, *FAST))
    assert result.stdout.strip() == "CANCELED"
    assert ok(spindle("status", run_id, "--url", live_server)).stdout.strip() == "CANCELED"


def test_server_errors_print_error_and_exit_1(live_server: str) -> None:
    assert_error(spindle("status", "no-such-run", "--url", live_server), "no-such-run")
    assert_error(
        spindle(
            "submit", EXAMPLES / "snakemake" / "wordcount", "--type", "XYZ",
            "--type-version", "1", "--url", live_server,
        ),
        "workflow_type",
    )  # fmt: skip


def test_unreachable_server_is_an_error() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    assert_error(spindle("runs", "--url", url), "could not reach", url)


def test_local_mistakes_are_errors(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("no workflow here")
    assert_error(spindle("submit", tmp_path), "holds no Snakefile")
    assert_error(spindle("submit", tmp_path / "notes.txt"), "--type")
    (tmp_path / "a.cwl").write_text("")
    (tmp_path / "b.cwl").write_text("")
    assert_error(spindle("submit", tmp_path), "several .cwl files")
    bad = spindle("submit", tmp_path / "a.cwl", "--tag", "novalue")
    assert bad.exit_code == 2  # a usage error, reported by click
    assert "KEY=VALUE" in bad.stderr


def test_every_run_command_and_option_is_in_cli_md() -> None:
    """docs/cli.md names each command of runs.py and every option it takes."""
    text = (REPO / "docs" / "cli.md").read_text()
    group = click.Group()
    runs.register(group)
    for name, command in group.commands.items():
        heading = f"## `spindle {name}"
        assert heading in text, heading
        section = text.split(heading, 1)[1].split("\n## ", 1)[0]
        for param in command.params:
            if not isinstance(param, click.Option):
                continue
            flag = max(param.opts, key=len)
            if flag == "--url":
                assert f"| `{flag} URL` |" in text  # the table of options every command takes
            else:
                assert f"`{flag}" in section, f"spindle {name} {flag}"


# --- spindle resume, resubmit, lineage, delete (spindle.cli.lineage) ----------------------


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
