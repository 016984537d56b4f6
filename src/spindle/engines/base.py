"""The engine seam: one module per workflow language.

An engine never runs anything itself and never imports the scheduler, the API or a backend.
It turns a run into a :class:`~spindle.execution.Launch` (argv, environment, working
directory) for the :class:`~spindle.execution.Site` the backend names, and later reads
what the engine process left in the run directory: tasks (from the engine's own events) and
outputs. Engines are external programs started as processes, so their dependency trees never
meet Spindle's.
"""

from __future__ import annotations

import asyncio
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from pydantic import BaseModel

from spindle.domain import ComputeEnv, Run, RunRequest, Task
from spindle.errors import EngineSlow, EngineUnavailable
from spindle.execution import Launch, Site
from spindle.plugins import PluginSettings
from spindle.storage.files import LocalFiles, RunFiles
from spindle.storage.rundir import RunDir

if TYPE_CHECKING:
    from spindle.config import Settings


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


class EngineSettings(PluginSettings):
    """An engine's ``[engines.NAME]`` table (a plugin's model may add fields)."""

    #: The engine's executable; empty: ``<engines_dir>/NAME/bin/NAME``, then ``PATH``.
    executable: str = ""


class Engine(ABC):
    """An engine plugin (registered in the ``spindle.engines`` entry point group, see
    :mod:`spindle.plugins`)."""

    #: engine name as clients give it in ``workflow_engine`` (e.g. "snakemake", "cwltool")
    name: str
    #: WES workflow_type this engine runs (e.g. "SMK", "CWL")
    workflow_type: str
    #: the model of its ``[engines.NAME]`` settings
    settings_model: ClassVar[type[BaseModel]] = EngineSettings
    #: folders of the run folder that are the engine's own bookkeeping: never listed as
    #: outputs, nor copied back from a remote run folder (``work/.snakemake``)
    mirror_skip: ClassVar[tuple[str, ...]] = ()
    #: file names (fnmatch patterns, lowercase) of workflows of its type, for the CLI to
    #: infer ``workflow_type`` from (``*.cwl``)
    workflow_files: ClassVar[tuple[str, ...]] = ()

    @classmethod
    def from_settings(cls, settings: Settings, own: BaseModel) -> Engine:
        """The engine as the settings configure it (``own``: its ``settings_model``)."""
        raise NotImplementedError(f"{cls.__qualname__} does not say how it is configured")

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

        The workflow's files are in ``rundir.attachments``, where relative ``workflow_url``
        values point; an http(s) one was fetched at submission into the attachments under
        ``spindle.storage.fetch.local_reference(workflow_url)``.
        Everything the engine needs must be inside the run directory: a remote backend
        copies that folder to the site before it starts the launch.
        """

    def resume(self, run: Run, rundir: RunDir, launch: Launch) -> Launch:
        """The resume hook: ``launch`` (from :meth:`prepare`) changed to continue a recovered
        run whose ``work/`` is its parent's working folder, handed over (see
        :mod:`spindle.runs.lineage`): reuse what the parent finished (Snakemake
        ``--rerun-incomplete``, a call cache, Nextflow ``-resume``). Default: ``launch`` as it
        is (the run starts afresh in that folder)."""
        return launch

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
        raise EngineSlow(f"`{shown}` did not answer within {limit:g} s") from None
    if proc.returncode != 0:
        tail = err.decode(errors="replace").strip()[-500:]
        raise EngineUnavailable(f"`{shown}` exited with {proc.returncode}: {tail}")
    return out.decode(errors="replace")
