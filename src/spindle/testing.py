"""Fakes for fast tests, registered through the plugin path (:mod:`spindle.plugins`).

- :class:`FakeEngine` (``fake``, workflow type ``FAKE`` version ``1``): its "workflow" is its
  params, e.g. ``{"sleep": 0.1, "exit": 0, "tasks": 3}``: the launch is a shell loop that
  runs ``tasks`` tasks in ``sleep`` seconds in all (a line on stdout as each starts),
  writes ``work/result.txt`` and exits with ``exit``. It runs on any backend that runs
  launches (``local``, SLURM).
- :class:`FakeBackend` (compute environment type ``fake``): a managed service that runs
  ``FAKE`` workflows itself, in no process at all: a run's state follows from the time since
  submit (kept in its run folder, so another worker adopts it), it reports its tasks and
  outputs itself, and ``{"submit_error": "why"}`` in the params makes submit fail.

``with plugins(): ...`` registers both (:func:`spindle.plugins.registered`); then a compute
environment ``{"type": "fake"}`` can be configured like any other. ``job`` builds the job a
backend receives from a launch alone (for backend tests, in- or out-of-tree).
"""

from __future__ import annotations

import contextlib
import json
import math
import shlex
import time
from collections.abc import Iterator, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath
from typing import Any, ClassVar, Literal

from pydantic import BaseModel

from spindle.backends.base import Backend, Capabilities, Handle, Status
from spindle.compute import EnvSettings
from spindle.config import Settings
from spindle.domain import ComputeEnv, Run, RunRequest, State, Task
from spindle.engines.base import Engine, EngineInfo
from spindle.errors import BackendError, InvalidRequest
from spindle.execution import Job, Launch, Report, Site
from spindle.plugins import Registry, registered
from spindle.storage.files import RunFiles
from spindle.storage.rundir import RunDir

FAKE_TYPE = "FAKE"
#: The fake engine's task events, one ``start N``/``end N`` line each, in ``logs/``.
EVENTS = "fake-tasks"
RESULT = "work/result.txt"


def fake_params(params: Mapping[str, Any]) -> tuple[float, int, int]:
    """``sleep``, ``exit`` and ``tasks`` of a fake workflow, or InvalidRequest."""
    try:
        sleep = float(params.get("sleep", 0))
        code = int(params.get("exit", 0))
        tasks = int(params.get("tasks", 1))
    except (TypeError, ValueError):
        raise InvalidRequest(
            "workflow_params", "sleep must be a number, exit and tasks integers"
        ) from None
    if not (math.isfinite(sleep) and sleep >= 0 and 0 <= code <= 255 and 0 <= tasks <= 1000):
        raise InvalidRequest(
            "workflow_params", "sleep must be >= 0, exit 0 to 255 and tasks 0 to 1000"
        )
    return sleep, code, tasks


class FakeEngine(Engine):
    name = "fake"
    workflow_type = FAKE_TYPE
    workflow_files = ("*.fake",)

    @classmethod
    def from_settings(cls, settings: Settings, own: BaseModel) -> FakeEngine:
        return cls()

    async def detect(self) -> EngineInfo:
        return EngineInfo(self.name, "1.0", FAKE_TYPE, ["1"])

    def validate(self, request: RunRequest, env: ComputeEnv | None = None) -> None:
        fake_params(request.workflow_params)

    def prepare(self, run: Run, rundir: RunDir, site: Site | None = None) -> Launch:
        site = site or Site.local(rundir)
        sleep, code, tasks = fake_params(run.request.workflow_params)
        rundir.params_file.write_text(json.dumps({"tasks": tasks}))
        rundir.work.mkdir(parents=True, exist_ok=True)
        events = shlex.quote(str(site.path(rundir, rundir.logs.absolute() / EVENTS)))
        each = sleep / tasks if tasks else sleep
        script = (
            f"mkdir -p {shlex.quote(str(site.root / 'logs'))}; "
            f"i=1; while [ $i -le {tasks} ]; do "
            f"echo start $i >> {events}; echo task $i of {tasks} started; "
            f"sleep {each:.6f}; echo end $i >> {events}; "
            "i=$((i+1)); done; "
            f"{'' if tasks else f'sleep {each:.6f}; '}"
            f"echo done > {shlex.quote(str(site.root / RESULT))}; "
            f"echo fake ran {tasks} tasks; exit {code}"
        )
        return Launch(
            argv=["/bin/sh", "-c", script],
            cwd=site.path(rundir, rundir.work.absolute()),
        )

    def progress(self, rundir: RunDir) -> list[Task]:
        try:
            lines = (rundir.logs / EVENTS).read_text().split()
        except FileNotFoundError:
            return []
        state: dict[str, State] = {}
        for word, n in zip(lines[::2], lines[1::2], strict=False):
            state[n] = State.COMPLETE if word == "end" else State.RUNNING
        return [Task(id=n, name=f"task-{n}", state=s) for n, s in state.items()]

    def planned_tasks(self, rundir: RunDir) -> int | None:
        try:
            planned: int = json.loads(rundir.params_file.read_text())["tasks"]
        except (FileNotFoundError, KeyError, ValueError):
            return None
        return planned

    def outputs(self, rundir: RunDir, files: RunFiles | None = None) -> dict[str, Any]:
        result = rundir.root / RESULT
        if files is not None and files.stat(PurePosixPath(RESULT)) is None:
            return {}
        if files is None and not result.exists():
            return {}
        return {"result": {"class": "File", "location": f"run:{RESULT}"}}


class FakeEnv(EnvSettings):
    """``[compute_envs.NAME]`` of type ``fake``."""

    type: Literal["fake"]


#: In the run folder: what the fake backend submitted, and a cancel.
_JOB_FILE = "fake-job.json"
_CANCELLED = "fake-cancelled"


class FakeBackend(Backend):
    name = "fake"
    settings_model = FakeEnv
    capabilities = Capabilities(local_files=True, waits=False, queues=False)
    workflow_types: ClassVar[Mapping[str, tuple[str, ...]]] = {FAKE_TYPE: ("1",)}

    def __init__(self, env_name: str = "fake", poll_interval: float | None = 0.02) -> None:
        self.env_name = env_name
        self.poll_interval = poll_interval
        #: run ids in the order they were submitted (a second submit of one is not counted)
        self.submitted: list[str] = []
        self.polls = 0

    @classmethod
    def from_settings(cls, env_name: str, env: EnvSettings, settings: Settings) -> FakeBackend:
        return cls(env_name)

    async def submit(self, job: Job) -> Handle:
        path = job.rundir.root / _JOB_FILE
        if path.exists():
            return self._handle(job.run_id, job.rundir)
        params = job.run.request.workflow_params
        if params.get("submit_error"):
            raise BackendError(str(params["submit_error"]))
        sleep, code, tasks = fake_params(params)
        path.write_text(
            json.dumps({"started": time.time(), "sleep": sleep, "exit": code, "tasks": tasks})
        )
        self.submitted.append(job.run_id)
        return self._handle(job.run_id, job.rundir)

    def _handle(self, run_id: str, rundir: RunDir) -> Handle:
        return Handle(run_id, {"env": self.env_name, "rundir": str(rundir.root)})

    @staticmethod
    def _job(handle: Handle) -> tuple[Path, dict[str, Any]]:
        root = Path(handle.data["rundir"])
        return root, json.loads((root / _JOB_FILE).read_text())

    async def poll(self, handles: Sequence[Handle]) -> dict[str, Status]:
        self.polls += 1
        return {h.run_id: self._status(h) for h in handles}

    def _status(self, handle: Handle) -> Status:
        root, job = self._job(handle)
        if (root / _CANCELLED).exists():
            return Status(State.CANCELED)
        if time.time() - job["started"] < job["sleep"]:
            return Status(State.RUNNING)
        code = job["exit"]
        return Status(State.COMPLETE if code == 0 else State.EXECUTOR_ERROR, exit_code=code)

    async def cancel(self, handle: Handle) -> None:
        root, _ = self._job(handle)
        (root / _CANCELLED).touch()

    async def report(self, handle: Handle, rundir: RunDir) -> Report | None:
        _, job = self._job(handle)
        tasks, sleep = job["tasks"], job["sleep"]
        elapsed = time.time() - job["started"]
        done = tasks if elapsed >= sleep else int(elapsed / (sleep / tasks)) if tasks else 0
        listed = [
            Task(id=str(n), name=f"task-{n}", state=State.COMPLETE if n <= done else State.RUNNING)
            for n in range(1, min(tasks, done + 1) + 1)
        ]
        ended = self._status(handle).state.terminal
        outputs = {"tasks_done": done} if ended else None
        return Report(tasks=listed, planned=tasks, outputs=outputs)


@contextlib.contextmanager
def plugins() -> Iterator[Registry]:
    """The fake engine and backend registered for a while, as installed plugins are."""
    with registered(engines=(FakeEngine,), backends=(FakeBackend,)) as reg:
        yield reg


def run_record(
    run_id: str = "run-1",
    *,
    request: RunRequest | None = None,
    engine: str = "fake",
    compute_env: str = "local",
    state: State = State.INITIALIZING,
) -> Run:
    """A run as the worker holds it once claimed (nothing stored)."""
    return Run(
        id=run_id,
        seq=1,
        state=state,
        request=request or RunRequest(FAKE_TYPE, "1", "workflow"),
        engine=engine,
        compute_env=compute_env,
        submitted_at=datetime.now(UTC),
    )


def job(run_id: str, launch: Launch | None, rundir: RunDir, skip: tuple[str, ...] = ()) -> Job:
    """The job a backend receives for ``launch`` in ``rundir`` (``skip``: the engine's
    ``mirror_skip``)."""
    return Job(run_record(run_id), rundir, launch, skip)
