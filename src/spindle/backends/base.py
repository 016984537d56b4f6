"""The backend seam: where an engine process runs (or, for a managed service, where the
workflow itself runs).

``site`` says where a run's folder and engines are for the process (the engine builds its
command for that); ``submit`` takes the :class:`~spindle.execution.Job` (the run, its folder
and the engine's launch, or none for a workflow type the backend runs itself) and returns a
:class:`Handle` that the scheduler saves before anything else happens; ``poll`` takes all
active handles of a backend at once (and brings the engine's logs into the local run
folder); ``cancel`` is separate; ``attach`` re-adopts a handle after Spindle restarted;
``files`` tells what the run left in its folder; ``report`` (optional) gives the tasks and
outputs of a workflow the backend follows itself. Backends return statuses and never call
back into the scheduler.
"""

from __future__ import annotations

import asyncio
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any, ClassVar

from spindle.compute import EnvSettings
from spindle.domain import State
from spindle.errors import NotFound
from spindle.execution import Job, Report, Site
from spindle.storage.files import LocalFiles, RunFiles
from spindle.storage.rundir import RunDir

if TYPE_CHECKING:
    from spindle.config import Settings


@dataclass(frozen=True)
class Handle:
    """Enough to find the engine process again, from any worker, after any restart."""

    run_id: str
    data: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {"run_id": self.run_id, "data": self.data}

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> Handle:
        """A saved handle (one saved by an older Spindle also names its backend: the run's
        compute environment says that)."""
        return cls(run_id=raw["run_id"], data=dict(raw.get("data", {})))


@dataclass(frozen=True)
class Status:
    """What the backend knows of a handle now. ``QUEUED`` means the backend's own queue (a
    SLURM job waiting): the run itself stays INITIALIZING until the backend says RUNNING."""

    state: State
    exit_code: int | None = None
    reason: str | None = None


@dataclass(frozen=True)
class Capabilities:
    #: the run folder where the engine runs is the local one (nothing to copy or fetch)
    local_files: bool = True
    #: the backend can wait for a change instead of being polled
    waits: bool = False
    #: submit only queues the launch: the run is RUNNING once ``poll`` says so (otherwise
    #: it is RUNNING as soon as ``submit`` returns)
    queues: bool = False


class Backend(ABC):
    """A backend plugin (registered in the ``spindle.backends`` entry point group, see
    :mod:`spindle.plugins`); one object per compute environment of its type."""

    #: the backend type (``local``, ``slurm``): a compute environment's ``type``
    name: str
    #: the model of a ``[compute_envs.NAME]`` table of this type (its ``type`` field a
    #: ``Literal`` of ``name``)
    settings_model: ClassVar[type[EnvSettings]] = EnvSettings
    #: the page of docs/ that documents its settings (a table row per key)
    docs: ClassVar[str] = "configuration.md"
    capabilities: Capabilities = Capabilities()
    #: workflow types the backend runs itself, with their versions (a managed service): a
    #: run of one needs no local engine, and its job comes without a launch
    workflow_types: ClassVar[Mapping[str, tuple[str, ...]]] = {}
    #: seconds between polls of all its runs; None: the worker's ``monitor_interval``
    poll_interval: float | None = None

    @classmethod
    def from_settings(cls, env_name: str, env: EnvSettings, settings: Settings) -> Backend:
        """The backend of compute environment ``env_name`` (``env``: its settings model)."""
        raise NotImplementedError(f"{cls.__qualname__} does not say how it is configured")

    def site(self, run_id: str, rundir: RunDir) -> Site:
        """Where the run's engine will run and find its folder (default: ``rundir`` here)."""
        return Site.local(rundir)

    @abstractmethod
    async def submit(self, job: Job) -> Handle:
        """Start the job (its launch, or its workflow when the backend runs the workflow
        type itself). Idempotent per run id: a second submit finds the first."""

    @abstractmethod
    async def poll(self, handles: Sequence[Handle]) -> dict[str, Status]:
        """Status of every handle, keyed by run id, in as few external calls as possible."""

    @abstractmethod
    async def cancel(self, handle: Handle) -> None:
        """Stop everything the run started and return once it is gone."""

    async def attach(self, handle: Handle) -> Status:
        """Re-adopt a handle saved by another (possibly dead) worker."""
        return (await self.poll([handle]))[handle.run_id]

    async def wait(self, handle: Handle, max_wait: float) -> None:
        """Return when the handle's status may have changed, or after ``max_wait`` seconds."""
        await asyncio.sleep(max_wait)

    async def report(self, handle: Handle, rundir: RunDir) -> Report | None:
        """The run's tasks (and outputs once it ended) as the backend knows them, for a
        backend that follows the workflow itself; the worker prefers this when it answers.
        Default None: the engine reads them from the run folder."""
        return None

    async def files(self, handle: Handle, rundir: RunDir) -> RunFiles:
        """The run folder where the engine ran, to list its outputs (default: ``rundir``)."""
        return LocalFiles(rundir)

    async def fetch(self, handle: Mapping[str, Any], rel: PurePosixPath, dest: Path) -> None:
        """Copy one file of the run folder where the engine ran (``rel`` inside it) to
        ``dest``, for a download. Default: there is nothing elsewhere to fetch."""
        raise NotFound(f"run {handle.get('run_id')!r} has no file {rel.as_posix()!r}")

    async def close(self) -> None:  # noqa: B027
        """Release connections. Running engine processes are left alone."""
