"""The contract every backend keeps (STYLE.md item 11): each backend's test module subclasses
:class:`BackendContract` and provides the ``backend`` and ``fresh_backend`` fixtures; these
tests then run for it. Launches are built for the backend's site (``backend.site``), as
engines build them, and everything checked afterwards is read from the local run folder,
which a remote backend must bring the engine's logs back to."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from spindle.backends.base import Backend, Handle, Status
from spindle.domain import State
from spindle.execution import Launch, Site
from spindle.storage.rundir import RunDir
from spindle.testing import job


def sh(script: str, site: Site) -> Launch:
    """A shell script as the launch, started in the site's ``work/``."""
    return Launch(argv=["/bin/sh", "-c", script], cwd=site.root / "work")


def launch(backend: Backend, script: str, rundir: RunDir, run_id: str = "run-1") -> Launch:
    return sh(script, backend.site(run_id, rundir))


async def wait_terminal(backend: Backend, handle: Handle, seconds: float = 60) -> Status:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        status = (await backend.poll([handle]))[handle.run_id]
        if not (
            status.state is State.RUNNING or status.state in (State.QUEUED, State.INITIALIZING)
        ):
            return status
        await backend.wait(handle, 0.2)
    raise AssertionError(f"{handle.run_id} did not finish within {seconds}s")


async def wait_running(backend: Backend, handle: Handle, seconds: float = 60) -> None:
    """Until the backend says the launch runs (a queueing backend may take a moment)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        state = (await backend.poll([handle]))[handle.run_id].state
        if state is State.RUNNING:
            return
        assert state in (State.QUEUED, State.INITIALIZING), state
        await backend.wait(handle, 0.2)
    raise AssertionError(f"{handle.run_id} did not start within {seconds}s")


class BackendContract:
    @pytest.fixture
    def run_id(self) -> str:
        """The run's id; a backend whose jobs outlive the test (a cluster) needs new ones."""
        return "run-1"

    @pytest.fixture
    def rundir(self, tmp_path: Path, run_id: str) -> RunDir:
        rd = RunDir(tmp_path / run_id)
        rd.create()
        return rd

    async def test_success_is_complete_with_exit_code_and_logs(
        self, backend: Backend, rundir: RunDir, run_id: str
    ) -> None:
        handle = await backend.submit(
            job(run_id, launch(backend, "echo out-line; echo err-line >&2", rundir, run_id), rundir)
        )
        status = await wait_terminal(backend, handle)
        assert status == Status(State.COMPLETE, exit_code=0)
        assert rundir.stdout.read_text() == "out-line\n"
        assert rundir.stderr.read_text() == "err-line\n"

    async def test_failure_is_executor_error_with_its_exit_code(
        self, backend: Backend, rundir: RunDir, run_id: str
    ) -> None:
        handle = await backend.submit(
            job(run_id, launch(backend, "exit 3", rundir, run_id), rundir)
        )
        status = await wait_terminal(backend, handle)
        assert status.state is State.EXECUTOR_ERROR
        assert status.exit_code == 3

    async def test_cancel_stops_everything(
        self, backend: Backend, rundir: RunDir, run_id: str
    ) -> None:
        # an absolute path on this host: the test backends all run their jobs here
        marker = rundir.root / "survivor"
        script = f"(sleep 3; touch {marker}) & sleep 300"
        handle = await backend.submit(job(run_id, launch(backend, script, rundir, run_id), rundir))
        await wait_running(backend, handle)
        await backend.cancel(handle)
        status = (await backend.poll([handle]))[run_id]
        assert status.state is not State.RUNNING
        await asyncio.sleep(3.5)
        assert not marker.exists(), "a process of the cancelled run survived"

    async def test_submit_is_idempotent_per_run(
        self, backend: Backend, rundir: RunDir, run_id: str
    ) -> None:
        once = launch(backend, "sleep 2; echo once", rundir, run_id)
        first = await backend.submit(job(run_id, once, rundir))
        again = await backend.submit(job(run_id, once, rundir))
        assert again.data == first.data
        await wait_terminal(backend, first)
        assert rundir.stdout.read_text() == "once\n"

    async def test_attach_from_another_backend_instance(
        self, backend: Backend, fresh_backend: Backend, rundir: RunDir, run_id: str
    ) -> None:
        """A restarted Spindle (a new backend object) follows a run to its end."""
        handle = await backend.submit(
            job(run_id, launch(backend, "sleep 3; exit 5", rundir, run_id), rundir)
        )
        saved = Handle.from_json(handle.to_json())
        assert (await fresh_backend.attach(saved)).state in (State.QUEUED, State.RUNNING)
        status = await wait_terminal(fresh_backend, saved)
        assert status == Status(State.EXECUTOR_ERROR, exit_code=5)
        # the first one sees the end too (and a local one reaps its child)
        assert await wait_terminal(backend, handle) == status
