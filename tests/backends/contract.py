"""The contract every backend keeps (STYLE.md item 11): each backend's test module subclasses
:class:`BackendContract` and provides the ``backend`` fixture; these tests then run for it."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from spindle.backends.base import Backend, Handle, Status
from spindle.domain import State
from spindle.engines.base import Launch
from spindle.storage.rundir import RunDir


def sh(script: str, rundir: RunDir) -> Launch:
    return Launch(argv=["/bin/sh", "-c", script], cwd=rundir.work)


async def wait_terminal(backend: Backend, handle: Handle, seconds: float = 60) -> Status:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        status = (await backend.poll([handle]))[handle.run_id]
        if status.state is not State.RUNNING and status.state is not State.QUEUED:
            return status
        await backend.wait(handle, 0.2)
    raise AssertionError(f"{handle.run_id} did not finish within {seconds}s")


class BackendContract:
    @pytest.fixture
    def rundir(self, tmp_path: Path) -> RunDir:
        rd = RunDir(tmp_path / "run-1")
        rd.create()
        return rd

    async def test_success_is_complete_with_exit_code_and_logs(
        self, backend: Backend, rundir: RunDir
    ) -> None:
        handle = await backend.submit(
            "run-1", sh("echo out-line; echo err-line >&2", rundir), rundir
        )
        status = await wait_terminal(backend, handle)
        assert status == Status(State.COMPLETE, exit_code=0)
        assert rundir.stdout.read_text() == "out-line\n"
        assert rundir.stderr.read_text() == "err-line\n"

    async def test_failure_is_executor_error_with_its_exit_code(
        self, backend: Backend, rundir: RunDir
    ) -> None:
        handle = await backend.submit("run-1", sh("exit 3", rundir), rundir)
        status = await wait_terminal(backend, handle)
        assert status.state is State.EXECUTOR_ERROR
        assert status.exit_code == 3

    async def test_cancel_stops_everything(self, backend: Backend, rundir: RunDir) -> None:
        marker = rundir.root / "survivor"
        script = f"(sleep 3; touch {marker}) & sleep 300"
        handle = await backend.submit("run-1", sh(script, rundir), rundir)
        await asyncio.sleep(0.3)
        assert (await backend.poll([handle]))["run-1"].state is State.RUNNING
        await backend.cancel(handle)
        status = (await backend.poll([handle]))["run-1"]
        assert status.state is not State.RUNNING
        await asyncio.sleep(3.5)
        assert not marker.exists(), "a process of the cancelled run survived"

    async def test_submit_is_idempotent_per_run(self, backend: Backend, rundir: RunDir) -> None:
        first = await backend.submit("run-1", sh("sleep 2; echo once >> count", rundir), rundir)
        again = await backend.submit("run-1", sh("sleep 2; echo once >> count", rundir), rundir)
        assert again.data == first.data
        await wait_terminal(backend, first)
        assert (rundir.work / "count").read_text() == "once\n"

    async def test_attach_from_another_backend_instance(
        self, backend: Backend, fresh_backend: Backend, rundir: RunDir
    ) -> None:
        """A restarted Spindle (a new backend object) follows a run to its end."""
        handle = await backend.submit("run-1", sh("sleep 1; exit 5", rundir), rundir)
        saved = Handle.from_json(handle.to_json())
        assert (await fresh_backend.attach(saved)).state is State.RUNNING
        status = await wait_terminal(fresh_backend, saved)
        assert status == Status(State.EXECUTOR_ERROR, exit_code=5)
