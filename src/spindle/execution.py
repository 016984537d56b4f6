"""The execution spec: what passes between an engine and a backend.

Engines and backends both import this module and never each other. An engine turns a run into
a :class:`Launch` for a :class:`Site` (where the backend says the run's folder and engines
are for the process); the backend receives a :class:`Job` (the run, its local folder and its
launch, or no launch when the backend runs the workflow itself) and starts it.

Outputs are references, not paths: a file output's ``location`` is a ``run:`` reference
into the run folder (``RunDir.ref``) or a URL the backend's storage answers for; the storage
layer (:mod:`spindle.storage.access`) opens or links to either.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import PurePath, PurePosixPath
from typing import Any

from spindle.domain import Run, Task
from spindle.storage.rundir import RunDir


@dataclass(frozen=True)
class Executor:
    """A batch scheduler an engine may hand its own jobs to (e.g. Snakemake's executor
    plugins), in a form no engine or backend has to share a type for: its name, the
    defaults its jobs get (``partition``, ``account``, ``qos``, ... as the site names them),
    and more arguments for that by engine name (from the compute environment's settings)."""

    name: str
    defaults: Mapping[str, str] = field(default_factory=dict)
    engine_args: Mapping[str, tuple[str, ...]] = field(default_factory=dict)


@dataclass(frozen=True)
class Site:
    """Where a launch will run, as the engine process there sees it. The backend says; the
    engine builds every path of its command from ``root``, so the same run folder layout
    works on this host and in a cluster's work folder."""

    #: the run folder there (its layout is the local :class:`RunDir`'s, copied as is)
    root: PurePosixPath
    #: engine commands there by engine name
    executables: Mapping[str, str] = field(default_factory=dict)
    #: an engine without a command in ``executables`` is found by its name there (on a
    #: cluster), not by the executable Spindle found on this host
    by_name: bool = False
    #: CPUs an engine process gets there unless its run asks for more (None: the engine's
    #: own default, e.g. ``snakemake_cores``)
    cpus: int | None = None
    #: the scheduler it may hand jobs to, if any
    executor: Executor | None = None
    #: what runs a workflow's containers there: "none" or "podman" (the compute
    #: environment's ``containers`` setting)
    containers: str = "none"
    #: whether those containers may reach the network (``container_network``)
    container_network: bool = False

    @classmethod
    def local(cls, rundir: RunDir) -> Site:
        return cls(root=PurePosixPath(rundir.root.absolute()))

    def path(self, rundir: RunDir, local: PurePath) -> PurePosixPath:
        """Where a path inside the local run folder is on the site."""
        rel = PurePosixPath(local.relative_to(rundir.root.absolute()).as_posix())
        return self.root / rel

    def executable(self, engine: str, here: str) -> str:
        """The command that starts ``engine`` there (``here``: its executable on this host)."""
        return self.executables.get(engine, engine if self.by_name else here)


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
    #: container image the process runs in, for a backend that runs containers (None: the
    #: site's own environment)
    image: str | None = None


@dataclass(frozen=True)
class Job:
    """What a backend receives: the run, its local folder, and the engine's launch, or None
    when the backend runs the run's workflow type itself (a managed service)."""

    run: Run
    rundir: RunDir
    launch: Launch | None
    #: folders of the run folder that are the engine's own bookkeeping (its
    #: ``mirror_skip``): a backend never lists them as outputs nor copies them back
    skip: tuple[str, ...] = ()
    #: the name of the run's Spindle user: a backend may run the engine as that user's OS
    #: account (the local backend's ``run_as_users``, docs/security.md)
    owner: str | None = None

    @property
    def run_id(self) -> str:
        return self.run.id


@dataclass(frozen=True)
class Report:
    """What a backend that follows the workflow itself knows of a run: its tasks, how many
    it plans, and (once it ended) its outputs, whose file references are ``location``s the
    storage layer opens (``run:`` references or URLs)."""

    tasks: list[Task] = field(default_factory=list)
    planned: int | None = None
    outputs: dict[str, Any] | None = None
