"""Workflows whose tools name a container image, in a compute environment with
``containers = "podman"`` (real podman, the test image built locally, tests/containers.py)
and in one without: a CWL DockerRequirement tool and a WDL task with ``runtime.docker`` see
the image's root folder, not the host's; without containers the error names the setting."""

from __future__ import annotations

import asyncio
import os
import subprocess
from pathlib import Path

from spindle.backends.local import LocalBackend
from spindle.domain import Run, RunRequest, State
from spindle.engines.base import Engine
from spindle.engines.cwl import CwltoolEngine
from spindle.engines.wdl import MiniwdlEngine
from spindle.execution import Job
from spindle.storage.rundir import RunDir
from spindle.testing import run_record
from tests.backends.contract import wait_terminal
from tests.engines import staged_run

#: Folders of this host's root that the test image has not (cwltool mounts its output
#: folder under /var, so that one is left out).
HOST_ONLY = {"usr", "home", "root", "opt", "srv"}


def test_the_host_has_what_the_image_has_not() -> None:
    assert Path("/usr").is_dir()  # else the tests below could not tell the roots apart


async def run_with(engine: Engine, run: Run, rundir: RunDir, containers: str) -> State:
    """The run taken to its end on the local backend whose ``containers`` setting is this."""
    backend = LocalBackend(cancel_grace_seconds=1)
    backend.containers = containers
    try:
        launch = engine.prepare(run, rundir, backend.site(run.id, rundir))
        handle = await backend.submit(Job(run, rundir, launch))
        status = await wait_terminal(backend, handle, seconds=120)
    finally:
        await backend.close()
    return status.state


def staged(tmp_path: Path, language: str, request: RunRequest) -> tuple[RunDir, Run]:
    rundir = RunDir(tmp_path / "run")
    rundir.create()
    return rundir, staged_run(rundir, language, "container", request, "none.json")


WDL_REQUEST = RunRequest("WDL", "1.1", "workflow.wdl", workflow_engine="miniwdl")
CWL_REQUEST = RunRequest("CWL", "v1.2", "workflow.cwl", workflow_engine="cwltool")


async def test_a_wdl_task_with_runtime_docker_runs_in_podman(
    miniwdl_engine: MiniwdlEngine, podman_image: str, tmp_path: Path
) -> None:
    rundir, run = staged(tmp_path, "wdl", WDL_REQUEST)
    state = await run_with(miniwdl_engine, run, rundir, "podman")
    assert state is State.COMPLETE, rundir.stderr.read_text()[-3000:]
    outputs = miniwdl_engine.outputs(rundir)
    root = set(outputs["root"])
    assert {"bin", "lib"} <= root
    assert not root & HOST_ONLY  # the image's root, not the host's
    assert outputs["interfaces"] == ["lo"]  # no network (container_network is false)
    (task,) = miniwdl_engine.progress(rundir)
    assert (task.state, task.exit_code) == (State.COMPLETE, 0)


async def test_a_cwl_docker_requirement_runs_in_podman(
    cwltool_engine: CwltoolEngine, podman_image: str, tmp_path: Path
) -> None:
    rundir, run = staged(tmp_path, "cwl", CWL_REQUEST)
    state = await run_with(cwltool_engine, run, rundir, "podman")
    assert state is State.COMPLETE, rundir.stderr.read_text()[-3000:]
    listed = cwltool_engine.outputs(rundir)["root"]["location"].removeprefix("run:")
    root = set((rundir.root / listed).read_text().split())
    assert {"bin", "lib"} <= root
    assert not root & HOST_ONLY
    conf = rundir.support / "containers" / "containers.conf"
    assert 'runtime = "runc"' in conf.read_text()  # Spindle's own, for this run only


async def test_without_containers_a_wdl_image_is_refused_naming_the_setting(
    miniwdl_engine: MiniwdlEngine, tmp_path: Path
) -> None:
    rundir, run = staged(tmp_path, "wdl", WDL_REQUEST)
    state = await run_with(miniwdl_engine, run, rundir, "none")
    assert state is State.EXECUTOR_ERROR
    notes = miniwdl_engine.failure_notes(rundir)
    assert any("containers = 'podman'" in note for note in notes), notes


def _containers_of(rundir: RunDir) -> list[str]:
    """Containers podman has (running or not) whose task folder is in this run's folder."""
    out = subprocess.run(
        ["podman", "ps", "--all", "--format", "{{.ID}} {{.Mounts}}"],
        capture_output=True,
        text=True,
        check=True,
        env={
            **os.environ,
            "CONTAINERS_CONF": str(rundir.support / "containers" / "containers.conf"),
        },
    ).stdout
    return [line for line in out.splitlines() if str(rundir.root) in line]


async def test_cancel_removes_the_running_container(
    miniwdl_engine: MiniwdlEngine, podman_image: str, tmp_path: Path
) -> None:
    rundir = RunDir(tmp_path / "run")
    rundir.create()
    staged_run(rundir, "wdl", "container", WDL_REQUEST, "none.json")
    run = run_record(
        request=RunRequest("WDL", "1.1", "workflow.wdl", workflow_params={"seconds": 120}),
        engine="miniwdl",
    )
    backend = LocalBackend(cancel_grace_seconds=5)
    backend.containers = "podman"
    try:
        launch = miniwdl_engine.prepare(run, rundir, backend.site(run.id, rundir))
        handle = await backend.submit(Job(run, rundir, launch))
        for _ in range(600):
            if _containers_of(rundir):
                break
            await asyncio.sleep(0.2)
        assert _containers_of(rundir), rundir.stderr.read_text()[-2000:]
        await backend.cancel(handle)
        status = await wait_terminal(backend, handle, seconds=60)
    finally:
        await backend.close()
    assert status.state is not State.COMPLETE
    assert _containers_of(rundir) == []
