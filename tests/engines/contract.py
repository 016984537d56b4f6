"""The contract every engine keeps (STYLE.md item 11, as tests/backends/contract.py is for
backends): each engine's test subclasses :class:`EngineContract` and provides ``engine`` and
``runs`` (a run that succeeds and one whose workflow fails, staged into a run folder); these
tests then run for it. The launch runs on the real local backend. A real engine's subclass
overrides ``good`` and ``bad`` with the session's shared runs (tests/engines/conftest.py), so
the contract and the engine's own tests start each real run once."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import pytest
from pydantic import BaseModel

from spindle.backends.local import LocalBackend
from spindle.config import Settings
from spindle.domain import Run, State
from spindle.engines.base import Engine, EngineInfo
from spindle.execution import Job, Site
from spindle.storage.rundir import RunDir
from tests.backends.contract import wait_terminal

#: a run folder and the kind of run to stage into it → the run
Stage = Callable[[RunDir, str], Run]


@dataclass(frozen=True)
class Finished:
    """A run an engine took to its end on the local backend."""

    engine: Engine
    rundir: RunDir
    state: State
    exit_code: int


async def run_to_end(engine: Engine, run: Run, rundir: RunDir) -> Finished:
    backend = LocalBackend(cancel_grace_seconds=1)
    try:
        launch = engine.prepare(run, rundir, backend.site(run.id, rundir))
        handle = await backend.submit(Job(run, rundir, launch))
        status = await wait_terminal(backend, handle, seconds=120)
    finally:
        await backend.close()
    code = status.exit_code if status.exit_code is not None else -1
    return Finished(engine, rundir, status.state, code)


class EngineContract:
    @pytest.fixture
    def rundir(self, tmp_path: Path) -> RunDir:
        rundir = RunDir(tmp_path / "run")
        rundir.create()
        return rundir

    @pytest.fixture
    async def good(self, engine: Engine, runs: Stage, rundir: RunDir) -> Finished:
        """The run that succeeds, taken to its end."""
        return await run_to_end(engine, runs(rundir, "good"), rundir)

    @pytest.fixture
    async def bad(self, engine: Engine, runs: Stage, rundir: RunDir) -> Finished:
        """The run whose workflow fails, taken to its end."""
        return await run_to_end(engine, runs(rundir, "bad"), rundir)

    def test_it_declares_what_the_registry_needs(self, engine: Engine) -> None:
        assert engine.name
        assert engine.workflow_type
        assert issubclass(engine.settings_model, BaseModel)
        assert all(p == p.lower() for p in engine.workflow_files)
        own = engine.settings_model()
        assert isinstance(type(engine).from_settings(Settings(), own), type(engine))

    @pytest.fixture
    async def info(self, engine: Engine) -> EngineInfo:
        """What ``detect`` found (a real engine's: the session's catalog, detected once)."""
        return await engine.detect()

    def test_detect_says_what_it_runs(self, engine: Engine, info: EngineInfo) -> None:
        assert (info.name, info.workflow_type) == (engine.name, engine.workflow_type)
        assert info.workflow_type_versions

    def test_the_launch_names_only_the_sites_paths(
        self, engine: Engine, runs: Stage, rundir: RunDir
    ) -> None:
        """Built for a site elsewhere, the command never names the local run folder."""
        site = Site(root=PurePosixPath("/elsewhere/run-1"), by_name=True)
        launch = engine.prepare(runs(rundir, "good"), rundir, site)
        local = str(rundir.root.absolute())
        shown = json.dumps([launch.argv, str(launch.cwd), launch.env])
        assert local not in shown
        assert str(launch.cwd).startswith("/elsewhere/run-1")
        assert launch.argv[0] == engine.name or launch.argv[0].startswith("/")

    def test_a_good_run_completes_with_its_tasks_and_outputs(self, good: Finished) -> None:
        engine, rundir, state, code = good.engine, good.rundir, good.state, good.exit_code
        assert (state, code) == (State.COMPLETE, 0), rundir.stderr.read_text()[-2000:]
        tasks = engine.progress(rundir)
        assert tasks
        assert all(t.state is State.COMPLETE for t in tasks)
        outputs = engine.outputs(rundir)
        json.dumps(outputs)  # stored as JSON
        assert outputs

    def test_a_failing_workflow_is_an_executor_error(self, bad: Finished) -> None:
        state, code = bad.state, bad.exit_code
        assert state is State.EXECUTOR_ERROR
        assert code != 0
