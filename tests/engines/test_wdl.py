"""The WDL engine (miniwdl) with real runs on the local backend: a scatter workflow with an
attached File input (shared with the contract, tests/engines/conftest.py), the same workflow
with its File given by URL, a failing task, an input outside the run folder, and a cancelled
run whose task is listed while it runs."""

from __future__ import annotations

import asyncio
import functools
import http.server
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from spindle.backends.local import LocalBackend
from spindle.domain import RunRequest, State
from spindle.engines.wdl import MiniwdlEngine
from spindle.execution import Job
from spindle.storage.rundir import RunDir
from spindle.testing import run_record
from tests.backends.contract import wait_terminal
from tests.engines import staged_run
from tests.engines.contract import Finished, run_to_end
from tests.support import EXAMPLES

WDL = EXAMPLES / "wdl"


def wdl_run(rundir: RunDir, example: str, params: dict[str, object]) -> object:
    """``examples/wdl/<example>`` staged with these ``workflow_params``."""
    staged_run(rundir, "wdl", example, RunRequest("WDL", "1.1", "workflow.wdl"), "none.json")
    return run_record(
        request=RunRequest("WDL", "1.1", "workflow.wdl", workflow_params=params),
        engine="miniwdl",
    )


def fresh(tmp_path: Path) -> RunDir:
    rundir = RunDir(tmp_path / "run")
    rundir.create()
    return rundir


def test_a_scatter_workflow_lists_every_call_and_its_outputs(wdl_scatter: Finished) -> None:
    engine, rundir = wdl_scatter.engine, wdl_scatter.rundir
    assert (wdl_scatter.state, wdl_scatter.exit_code) == (State.COMPLETE, 0)
    tasks = engine.progress(rundir)
    assert sorted(t.name for t in tasks) == ["count", "count", "count", "split_lines", "total"]
    assert len({t.id for t in tasks}) == 5
    for task in tasks:
        assert (task.state, task.exit_code) == (State.COMPLETE, 0)
        assert task.start_time is not None
        assert task.end_time is not None
        assert task.start_time <= task.end_time
        assert task.stdout is not None
        assert (rundir.root / task.stdout.path).is_file()
    (total,) = [t for t in tasks if t.name == "total"]
    assert "tee total.txt" in total.cmd[0]
    assert total.stdout is not None
    assert (rundir.root / total.stdout.path).read_text().strip() == "9"
    outputs = engine.outputs(rundir)
    assert outputs["words"] == 9
    assert outputs["per_line"] == [4, 2, 3]
    report = outputs["report"]
    assert report["class"] == "File"
    assert report["location"].startswith("run:work/")
    assert (rundir.root / report["location"].removeprefix("run:")).read_text().strip() == "9"


def test_a_failing_task_is_an_executor_error_with_its_exit_code(wdl_fail: Finished) -> None:
    engine, rundir = wdl_fail.engine, wdl_fail.rundir
    assert (wdl_fail.state, wdl_fail.exit_code) == (State.EXECUTOR_ERROR, 3)
    (task,) = engine.progress(rundir)
    assert (task.name, task.state, task.exit_code) == ("broken", State.EXECUTOR_ERROR, 3)
    notes = engine.failure_notes(rundir)
    assert any("exit status 3" in note and "about to fail" in note for note in notes), notes
    assert engine.outputs(rundir) == {}


@pytest.fixture
def served(tmp_path: Path) -> Iterator[str]:
    """An HTTP server on loopback serving ``examples/wdl/scatter``; its base URL."""
    handler = functools.partial(
        http.server.SimpleHTTPRequestHandler, directory=str(WDL / "scatter")
    )
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


async def test_a_file_input_by_url_without_the_workflow_prefix(
    miniwdl_engine: MiniwdlEngine, tmp_path: Path, served: str
) -> None:
    rundir = fresh(tmp_path)
    run = wdl_run(rundir, "scatter", {"text": f"{served}/poem.txt"})
    (rundir.attachments / "poem.txt").unlink()  # only the URL has it
    done = await run_to_end(miniwdl_engine, run, rundir)  # type: ignore[arg-type]
    assert done.state is State.COMPLETE, rundir.stderr.read_text()[-3000:]
    assert miniwdl_engine.outputs(rundir)["words"] == 9


async def test_an_input_outside_the_run_folder_is_refused_naming_it(
    miniwdl_engine: MiniwdlEngine, tmp_path: Path
) -> None:
    rundir = fresh(tmp_path)
    run = wdl_run(rundir, "scatter", {"wordcount.text": "/etc/passwd"})
    done = await run_to_end(miniwdl_engine, run, rundir)  # type: ignore[arg-type]
    assert done.state is State.EXECUTOR_ERROR
    assert not list(rundir.work.glob("call-*"))  # nothing ran
    notes = miniwdl_engine.failure_notes(rundir)
    assert any(
        note.startswith("input 'wordcount.text' of workflow_params") and "/etc/passwd" in note
        for note in notes
    ), notes


def _alive(pid: int) -> bool:
    """Whether ``pid`` is a process that has not ended (a zombie has)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rpartition(")")[2].split()[0] != "Z"


def _task_pids(rundir: RunDir) -> list[int]:
    """The pids the task runner logged for the commands it started ("host run")."""
    import json

    pids = []
    for line in rundir.stderr.read_text().splitlines():
        if '"host run"' in line:
            pids.append(int(json.loads(line)["pid"]))
    return pids


async def test_cancel_stops_every_task_process(
    miniwdl_engine: MiniwdlEngine, tmp_path: Path
) -> None:
    rundir = fresh(tmp_path)
    run = wdl_run(rundir, "sleep", {"nap.seconds": 120})
    backend = LocalBackend(cancel_grace_seconds=2)
    try:
        launch = miniwdl_engine.prepare(run, rundir, backend.site(run.id, rundir))  # type: ignore[arg-type]
        handle = await backend.submit(Job(run, rundir, launch))  # type: ignore[arg-type]
        for _ in range(600):  # the task is listed while it runs
            tasks = miniwdl_engine.progress(rundir)
            if tasks and _task_pids(rundir):
                break
            await asyncio.sleep(0.1)
        (task,) = tasks
        assert (task.name, task.state, task.end_time) == ("sleep_for", State.RUNNING, None)
        (pid,) = _task_pids(rundir)
        assert _alive(pid)
        await backend.cancel(handle)
        status = await wait_terminal(backend, handle, seconds=30)
    finally:
        await backend.close()
    assert status.state is not State.COMPLETE
    for _ in range(50):  # an orphan is reaped by init a moment after it died
        if not _alive(pid):
            break
        await asyncio.sleep(0.1)
    assert not _alive(pid)
    (task,) = miniwdl_engine.progress(rundir)
    assert task.state is not State.RUNNING or task.end_time is None  # never COMPLETE
    assert task.state is not State.COMPLETE


def test_versions_and_validation(miniwdl_engine: MiniwdlEngine) -> None:
    from spindle.errors import InvalidRequest

    assert "1.0" in miniwdl_engine.versions
    assert "1.1" in miniwdl_engine.versions
    with pytest.raises(InvalidRequest) as refused:
        miniwdl_engine.validate(RunRequest("WDL", "0.9", "workflow.wdl"))
    assert refused.value.field == "workflow_type_version"


def test_tasks_of_a_run_elsewhere_point_into_the_local_run_folder(tmp_path: Path) -> None:
    """On a cluster miniwdl prints the cluster's paths: a call's logs are still found in the
    local copy of the run folder (the root comes from its "workflow start" record)."""
    import json

    rundir = fresh(tmp_path)
    there = "/scratch/spindle/r1"
    records = [
        {"message": "workflow start", "source": "wdl.w:wf", "dir": f"{there}/work"},
        {
            "message": "task setup",
            "source": "wdl.w:wf.t:call-a",
            "name": "a",
            "dir": f"{there}/work/call-a",
            "timestamp": 1.0,
        },
        {"message": "done", "source": "wdl.w:wf.t:call-a", "timestamp": 2.0},
    ]
    rundir.stderr.write_text("".join(json.dumps(r) + "\n" for r in records))
    (task,) = MiniwdlEngine("miniwdl").progress(rundir)
    assert (task.id, task.name, task.state, task.exit_code) == ("call-a", "a", State.COMPLETE, 0)
    assert task.stdout is not None
    assert task.stdout.path == "work/call-a/stdout.txt"


async def test_versions_are_those_the_installed_grammar_parses(tmp_path: Path) -> None:
    """A miniwdl whose Python parses only WDL 1.0 offers only 1.0 (a stand-in script with
    a stand-in ``WDL`` package: the real one parses both, see the contract's detect test)."""
    import sys

    (tmp_path / "WDL").mkdir()
    (tmp_path / "WDL" / "__init__.py").write_text("")
    (tmp_path / "WDL" / "_grammar.py").write_text('versions = {"draft-2": 0, "1.0": 1}\n')
    python = tmp_path / "python"
    python.write_text(f'#!/bin/sh\nPYTHONPATH={tmp_path} exec {sys.executable} "$@"\n')
    python.chmod(0o755)
    exe = tmp_path / "miniwdl"
    exe.write_text(f"#!{tmp_path}/python\nprint('miniwdl v1.0.0')\n")
    exe.chmod(0o755)
    engine = MiniwdlEngine(str(exe))
    info = await engine.detect()
    assert (info.version, info.workflow_type_versions) == ("1.0.0", ["1.0"])
