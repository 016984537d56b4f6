from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from spindle.backends.base import Handle
from spindle.backends.local import LocalBackend
from spindle.domain import State
from spindle.storage.rundir import RunDir
from tests.backends.contract import BackendContract, launch


@pytest.fixture
async def backend() -> AsyncIterator[LocalBackend]:
    b = LocalBackend(cancel_grace_seconds=2)
    yield b
    await b.close()


@pytest.fixture
async def fresh_backend() -> AsyncIterator[LocalBackend]:
    b = LocalBackend(cancel_grace_seconds=2)
    yield b
    await b.close()


class TestLocalBackend(BackendContract):
    async def test_vanished_process_is_system_error_with_reason(
        self, backend: LocalBackend, rundir: RunDir
    ) -> None:
        handle = await backend.submit("run-1", launch(backend, "sleep 300", rundir), rundir)
        os.killpg(handle.data["pgid"], signal.SIGKILL)
        await backend.wait(handle, 5)
        status = (await backend.poll([handle]))["run-1"]
        assert status.state is State.SYSTEM_ERROR
        assert status.reason is not None
        assert "recorded no exit code" in status.reason

    async def test_cancel_escalates_to_kill_when_term_is_ignored(
        self, backend: LocalBackend, rundir: RunDir
    ) -> None:
        handle = await backend.submit(
            "run-1", launch(backend, "trap '' TERM; sleep 300", rundir), rundir
        )
        await asyncio.sleep(0.3)
        await backend.cancel(handle)
        with pytest.raises(ProcessLookupError):
            os.killpg(handle.data["pgid"], 0)

    async def test_a_recycled_pid_is_not_taken_for_the_engine(
        self, backend: LocalBackend, rundir: RunDir
    ) -> None:
        handle = await backend.submit("run-1", launch(backend, "sleep 300", rundir), rundir)
        forged = Handle(
            run_id="run-1",
            backend="local",
            data={**handle.data, "start_ticks": handle.data["start_ticks"] + 1},
        )
        rundir_other = RunDir(rundir.root.parent / "other")
        rundir_other.create()
        forged = Handle("run-1", "local", {**forged.data, "rundir": str(rundir_other.root)})
        status = (await backend.poll([forged]))["run-1"]
        assert status.state is State.SYSTEM_ERROR
        await backend.cancel(handle)

    async def test_another_host_cannot_be_followed(
        self, backend: LocalBackend, rundir: RunDir, tmp_path: Path
    ) -> None:
        handle = Handle(
            "run-1",
            "local",
            {
                "pid": 1,
                "pgid": 1,
                "host": "elsewhere",
                "start_ticks": 1,
                "rundir": str(rundir.root),
            },
        )
        status = (await backend.poll([handle]))["run-1"]
        assert status.state is State.SYSTEM_ERROR
        assert status.reason is not None
        assert "elsewhere" in status.reason
