"""Failures of the machine or of Spindle, not of the workflow, that the local backend must
name for what they are: an engine that is gone when the run starts, and an exit code that
cannot be written."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from spindle.backends.local import LocalBackend
from spindle.domain import State
from spindle.execution import Launch
from spindle.storage.rundir import RunDir
from spindle.testing import job
from tests.backends.contract import launch, wait_terminal


@pytest.fixture
async def backend() -> AsyncIterator[LocalBackend]:
    b = LocalBackend(cancel_grace_seconds=2)
    yield b
    await b.close()


@pytest.fixture
def rundir(tmp_path: Path) -> RunDir:
    rd = RunDir(tmp_path / "run-1")
    rd.create()
    return rd


async def _run(backend: LocalBackend, rundir: RunDir, argv: list[str]) -> tuple[State, str]:
    handle = await backend.submit(job("run-1", Launch(argv=argv, cwd=rundir.work), rundir))
    status = await wait_terminal(backend, handle, 30)
    return status.state, status.reason or ""


async def test_an_engine_removed_after_start_up_is_a_system_error_naming_it(
    backend: LocalBackend, rundir: RunDir, tmp_path: Path
) -> None:
    gone = tmp_path / "engines" / "snakemake" / "bin" / "snakemake"
    state, reason = await _run(backend, rundir, [str(gone), "--cores", "1"])
    assert state is State.SYSTEM_ERROR
    assert (
        reason == f"the engine could not be started: the engine {gone} is missing or not executable"
    )


async def test_an_engine_whose_interpreter_is_gone_is_a_system_error_naming_it(
    backend: LocalBackend, rundir: RunDir, tmp_path: Path
) -> None:
    # what an engine's virtual environment leaves when its Python was removed
    script = tmp_path / "cwltool"
    script.write_text("#!/nowhere/venv/bin/python3\nprint('never')\n")
    script.chmod(0o755)
    state, reason = await _run(backend, rundir, [str(script)])
    assert state is State.SYSTEM_ERROR
    assert "the interpreter /nowhere/venv/bin/python3 named by the engine" in reason
    assert str(script) in reason


async def test_a_workflow_that_exits_127_is_still_its_own_failure(
    backend: LocalBackend, rundir: RunDir
) -> None:
    handle = await backend.submit(job("run-1", launch(backend, "exit 127", rundir), rundir))
    status = await wait_terminal(backend, handle, 30)
    assert (status.state, status.exit_code) == (State.EXECUTOR_ERROR, 127)


async def test_an_exit_code_that_cannot_be_written_is_named_with_its_path(
    backend: LocalBackend, rundir: RunDir
) -> None:
    # Tests run as root, which file modes do not stop: a directory where the wrapper writes
    # its exit code makes the write fail as a full disk or a read-only folder would.
    blocker = rundir.root / "exit_code.tmp"
    blocker.mkdir()
    handle = await backend.submit(job("run-1", launch(backend, "echo ran", rundir), rundir))
    status = await wait_terminal(backend, handle, 30)
    assert status.state is State.SYSTEM_ERROR
    reason = status.reason or ""
    assert f"its exit code could not be written to {rundir.exit_code_file}" in reason
    assert f"Is a directory ({blocker})" in reason
    assert "killed or the machine restarted" not in reason
    assert "could not record the exit code 0" in rundir.stderr.read_text()
