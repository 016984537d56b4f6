"""The engine seam: one module per workflow language.

An engine never runs anything itself and never imports the scheduler, the API or a backend.
It turns a run into a :class:`Launch` (argv, environment, working directory), and later reads
what the engine process left in the run directory: tasks (from the engine's own events) and
outputs. Engines are external programs started as processes, so their dependency trees never
meet Spindle's.
"""

from __future__ import annotations

import asyncio
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import PurePath, PurePosixPath
from typing import Any

from spindle.domain import ComputeEnv, Run, RunRequest, Task
from spindle.errors import EngineUnavailable
from spindle.storage.files import LocalFiles, RunFiles
from spindle.storage.rundir import RunDir


@dataclass(frozen=True)
class Cluster:
    """A batch scheduler the engine may hand its own jobs to (e.g. Snakemake's SLURM
    executor), with the settings of the compute environment."""

    scheduler: str
    partition: str = ""
    account: str = ""
    qos: str = ""
    #: more engine arguments for that, by engine name (from the environment's settings)
    engine_args: Mapping[str, tuple[str, ...]] = field(default_factory=dict)


@dataclass(frozen=True)
class Site:
    """Where a launch will run, as the engine process there sees it. The backend says; the
    engine builds every path of its command from ``root``, so the same run folder layout
    works on this host and in a cluster's work folder."""

    #: the run folder there (its layout is the local :class:`RunDir`'s, copied as is)
    root: PurePosixPath
    #: engine commands there by engine name; absent: the engine's own executable
    executables: Mapping[str, str] = field(default_factory=dict)
    #: CPUs an engine process gets there unless its run asks for more (None: the engine's
    #: own default, e.g. ``snakemake_cores``)
    cpus: int | None = None
    #: the scheduler it may hand jobs to, if any
    cluster: Cluster | None = None

    @classmethod
    def local(cls, rundir: RunDir) -> Site:
        return cls(root=PurePosixPath(rundir.root.absolute()))

    def path(self, rundir: RunDir, local: PurePath) -> PurePosixPath:
        """Where a path inside the local run folder is on the site."""
        rel = PurePosixPath(local.relative_to(rundir.root.absolute()).as_posix())
        return self.root / rel


@dataclass(frozen=True)
class Launch:
    """Everything a backend needs to start the engine: the process, not the workflow. Paths
    are the site's (see :class:`Site`)."""

    argv: list[str]
    cwd: PurePath
    env: dict[str, str] = field(default_factory=dict)
    #: CPUs the process will use (a batch backend asks its scheduler for them); None: the
    #: site's default
    cpus: int | None = None


@dataclass(frozen=True)
class EngineParameter:
    """One ``workflow_engine_parameters`` key an engine understands (WES
    ``DefaultWorkflowEngineParameter``)."""

    name: str
    type: str
    default_value: str
    description: str = ""


@dataclass(frozen=True)
class EngineInfo:
    """What is really installed: detected at start-up by running the engine."""

    name: str
    version: str
    workflow_type: str
    workflow_type_versions: list[str]


class Engine(ABC):
    #: engine name as clients give it in ``workflow_engine`` (e.g. "snakemake", "cwltool")
    name: str
    #: WES workflow_type this engine runs (e.g. "SMK", "CWL")
    workflow_type: str

    def parameters(self) -> list[EngineParameter]:
        """The ``workflow_engine_parameters`` keys this engine understands, with defaults."""
        return []

    @abstractmethod
    async def detect(self) -> EngineInfo:
        """Run the engine to learn its version; raise EngineUnavailable if it does not start."""

    @abstractmethod
    def prepare(self, run: Run, rundir: RunDir, site: Site | None = None) -> Launch:
        """Write whatever the engine needs into the run directory and build its command line
        for ``site`` (default: this host, in ``rundir`` itself).

        The workflow's files are in ``rundir.attachments`` (or ``run.request.workflow_url``
        is an http(s) URL). Relative ``workflow_url`` values are relative to the attachments.
        Everything the engine needs must be inside the run directory: a remote backend
        copies that folder to the site before it starts the launch.
        """

    @abstractmethod
    def progress(self, rundir: RunDir) -> list[Task]:
        """The tasks so far, read from what the engine process wrote. Cheap; called often."""

    def planned_tasks(self, rundir: RunDir) -> int | None:
        """How many tasks the engine plans to run, when it says so up front (else None)."""
        return None

    @abstractmethod
    def outputs(self, rundir: RunDir, files: RunFiles | None = None) -> dict[str, Any]:
        """The run's outputs once the engine has exited. File references are dicts whose
        ``location`` is a ``run:`` reference (see ``RunDir.ref``). ``files`` is the run
        folder where the engine ran (default: ``rundir`` on this host); the engine's own
        logs and event files are always in ``rundir``."""

    def failure_notes(self, rundir: RunDir) -> list[str]:
        """What the engine's own log says went wrong, said for the user, once a run ended in
        EXECUTOR_ERROR (added to the run's ``system_logs``). Default: nothing."""
        return []

    def validate(self, request: RunRequest, env: ComputeEnv | None = None) -> None:  # noqa: B027
        """Refuse, at submission, a request this engine cannot run (raise InvalidRequest
        naming the field): its version, params or engine parameters, also for the compute
        environment it is to run in (None: local). Default: accept."""


def local_files(rundir: RunDir, files: RunFiles | None) -> RunFiles:
    return files if files is not None else LocalFiles(rundir)


async def ask(executable: str, *args: str, limit: float) -> str:
    """Run ``executable args...`` (e.g. ``--version``) and return its stdout, or raise
    EngineUnavailable saying what went wrong: it does not start, hangs, or fails."""
    shown = " ".join((executable, *args))
    try:
        proc = await asyncio.create_subprocess_exec(
            executable,
            *args,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
    except OSError as e:
        raise EngineUnavailable(f"`{shown}` does not start: {e}") from e
    try:
        out, err = await asyncio.wait_for(proc.communicate(), limit)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise EngineUnavailable(f"`{shown}` did not answer within {limit:g} s") from None
    if proc.returncode != 0:
        tail = err.decode(errors="replace").strip()[-500:]
        raise EngineUnavailable(f"`{shown}` exited with {proc.returncode}: {tail}")
    return out.decode(errors="replace")
