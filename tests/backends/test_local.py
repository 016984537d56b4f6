from __future__ import annotations

import asyncio
import gc
import os
import signal
import time
import warnings
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from spindle.backends.base import Handle
from spindle.backends.local import LocalBackend
from spindle.domain import State
from spindle.storage.rundir import RunDir
from spindle.testing import job
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
        handle = await backend.submit(job("run-1", launch(backend, "sleep 300", rundir), rundir))
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
            job("run-1", launch(backend, "trap '' TERM; sleep 300", rundir), rundir)
        )
        await asyncio.sleep(0.3)
        await backend.cancel(handle)
        with pytest.raises(ProcessLookupError):
            os.killpg(handle.data["pgid"], 0)

    async def test_a_recycled_pid_is_not_taken_for_the_engine(
        self, backend: LocalBackend, rundir: RunDir
    ) -> None:
        handle = await backend.submit(job("run-1", launch(backend, "sleep 300", rundir), rundir))
        forged = Handle(
            run_id="run-1",
            data={**handle.data, "start_ticks": handle.data["start_ticks"] + 1},
        )
        rundir_other = RunDir(rundir.root.parent / "other")
        rundir_other.create()
        forged = Handle("run-1", {**forged.data, "rundir": str(rundir_other.root)})
        status = (await backend.poll([forged]))["run-1"]
        assert status.state is State.SYSTEM_ERROR
        await backend.cancel(handle)

    async def test_another_host_cannot_be_followed(
        self, backend: LocalBackend, rundir: RunDir, tmp_path: Path
    ) -> None:
        handle = Handle(
            "run-1",
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

    def test_closing_with_the_engine_running_leaves_nothing_behind(self, rundir: RunDir) -> None:
        """Spindle shutting down (backend closed, event loop closed) while an engine runs:
        the engine keeps running; when it ends later it is reaped (no zombie in its process
        group, so a cancel sees the group gone) and no process object is collected with
        "subprocess N is still running" (the asyncio-subprocess version left one whose exit
        could no longer be delivered to the closed loop, and CI failed on its warning)."""

        async def start_then_shut_down() -> Handle:
            backend = LocalBackend(cancel_grace_seconds=2)
            handle = await backend.submit(job("run-1", launch(backend, "sleep 1", rundir), rundir))
            await backend.close()
            return handle

        handle = asyncio.run(start_then_shut_down())
        assert asyncio.run(LocalBackend().poll([handle]))["run-1"].state is State.RUNNING
        pid = handle.data["pid"]
        deadline = time.monotonic() + 30
        while Path(f"/proc/{pid}").exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not Path(f"/proc/{pid}").exists(), "the ended engine was never reaped"
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            gc.collect()
        assert [str(w.message) for w in caught if w.category is ResourceWarning] == []
        assert asyncio.run(LocalBackend().poll([handle]))["run-1"].state is State.COMPLETE

    async def test_an_adopted_engine_is_seen_ending_at_once(
        self, backend: LocalBackend, fresh_backend: LocalBackend, rundir: RunDir
    ) -> None:
        """A re-attached engine is not a child of the new backend, yet its end wakes
        ``wait`` at once (pidfd) instead of after the whole wait."""
        handle = await backend.submit(job("run-1", launch(backend, "sleep 1", rundir), rundir))
        assert (await fresh_backend.attach(handle)).state is State.RUNNING
        loop = asyncio.get_running_loop()
        started = loop.time()
        await fresh_backend.wait(handle, 30)
        assert loop.time() - started < 20, "wait slept its whole length"
        status = (await fresh_backend.poll([handle]))["run-1"]
        for _ in range(50):  # the wrapper writes exit_code just before it ends
            if status.state is not State.RUNNING:
                break
            await asyncio.sleep(0.1)
            status = (await fresh_backend.poll([handle]))["run-1"]
        assert status.state is State.COMPLETE
