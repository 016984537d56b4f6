"""The Snakemake engine (WES workflow_type ``SMK``).

Snakemake (9 or later) runs as its own process from its own environment. What Spindle learns
about jobs comes from a small logger plugin (``snakemake_logger/``) that Snakemake loads from
``PYTHONPATH``: it appends one JSON object per job event to ``logs/snakemake-events.jsonl``,
stamped with the sizes of the run's stdout and stderr files at that moment, so each task's
log is a byte range of the run's logs. Snakemake's own log stays on stderr as usual.

Snakemake runs as its users run it: in the workflow's own folder layout. The layout's root
(the attachments, or ``<root>`` when the Snakefile is ``<root>/workflow/Snakefile``, the
standard layout) is copied into the run's ``work/``, which is Snakemake's working directory
(``--directory``). So ``configfile: "config/config.yaml"``, ``resources/...`` and every other
relative path resolves as it does on the user's laptop, outputs land in ``work/``, and
``workflow_params`` are merged over the Snakefile's config file (``--configfile``, which
Snakemake applies on top of ``configfile:``).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import re
import shutil
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath
from typing import Any, TypeGuard
from urllib.parse import urlsplit

from pydantic import BaseModel, Field

from spindle.config import Settings
from spindle.domain import ComputeEnv, LogSpan, Run, RunRequest, State, Task
from spindle.engines.base import (
    Engine,
    EngineInfo,
    EngineParameter,
    EngineSettings,
    ask,
    local_files,
)
from spindle.errors import EngineUnavailable, InvalidRequest
from spindle.execution import Executor, Launch, Site
from spindle.storage.fetch import local_reference
from spindle.storage.files import FileStat, RunFiles
from spindle.storage.rundir import RUN_FILE_SCHEME, RunDir, safe_relative

#: Folder put on Snakemake's PYTHONPATH: it holds only the logger plugin package.
PLUGIN_DIR = Path(__file__).resolve().parent / "snakemake_logger"
#: The plugin's package and its name as Snakemake derives it from the package name.
PLUGIN_PACKAGE = "snakemake_logger_plugin_spindle"
PLUGIN_NAME = "spindle"
#: Where a run's jobs run: in the engine's process ("local") or as cluster jobs of their own.
EXECUTORS = ("local", "slurm")
#: Cluster jobs one run may have at once with a cluster executor (default, most).
DEFAULT_CLUSTER_JOBS = 10
MAX_CLUSTER_JOBS = 1000
#: Events file, relative to the run directory's ``logs/``.
EVENTS_FILE = "snakemake-events.jsonl"
#: Logger plugins arrived in Snakemake 9; older versions cannot report jobs to Spindle.
MIN_MAJOR = 9
#: Seconds ``snakemake --version`` may take (a cold start imports a lot).
DETECT_TIMEOUT = 60.0

_VERSION = re.compile(r"\b(\d+)\.\d+(?:\.\d+)?\S*")
_ANNOTATION = re.compile(r" \([^()]*\)$")
_WORK = PurePosixPath("work")


class SnakemakeSettings(EngineSettings):
    """``[engines.snakemake]``."""

    #: Cores Snakemake may use per run; empty: ``snakemake_cores``.
    cores: int | None = Field(default=None, gt=0)


class SnakemakeEngine(Engine):
    """Runs Snakefiles with the ``snakemake`` executable found at ``executable``.

    ``workflow_type_version`` names the Snakemake language, which is versioned with Snakemake
    itself: a request may give the installed major version (``"9"``) or the exact installed
    version (``"9.27.1"``). Before :meth:`detect` has run, only the major version this code
    supports is known.
    """

    name = "snakemake"
    workflow_type = "SMK"
    settings_model = SnakemakeSettings
    mirror_skip = ("work/.snakemake",)
    workflow_files = ("snakefile", "*.smk", "*.snakefile")

    def __init__(self, executable: str, cores: int) -> None:
        self.executable = executable
        self.cores = cores
        self.versions: list[str] = [str(MIN_MAJOR)]

    @classmethod
    def from_settings(cls, settings: Settings, own: BaseModel) -> SnakemakeEngine:
        """``[engines.snakemake]``, or the older top-level ``snakemake`` and
        ``snakemake_cores`` settings."""
        mine = own if isinstance(own, SnakemakeSettings) else SnakemakeSettings()
        executable = settings.engine_executable(cls.name, mine.executable or settings.snakemake)
        return cls(executable, mine.cores or settings.snakemake_cores)

    # --- what is installed ---------------------------------------------------------------

    async def detect(self) -> EngineInfo:
        version = parse_version(await self._run_version())
        major = int(version.split(".", 1)[0])
        if major < MIN_MAJOR:
            raise EngineUnavailable(
                f"snakemake {version} at {self.executable} is too old: Spindle needs "
                f"{MIN_MAJOR} or later (its job events come from a logger plugin)"
            )
        self.versions = [str(major), version]
        return EngineInfo(
            name=self.name,
            version=version,
            workflow_type=self.workflow_type,
            workflow_type_versions=list(self.versions),
        )

    async def _run_version(self) -> str:
        return await ask(self.executable, "--version", limit=DETECT_TIMEOUT)

    def parameters(self) -> list[EngineParameter]:
        return [
            EngineParameter(
                name="cores",
                type="int",
                default_value=str(self.cores),
                description=f"Cores Snakemake may use for this run (1 to {self.cores}).",
            ),
            EngineParameter(
                name="executor",
                type="string",
                default_value="local",
                description="'slurm' spreads the run's jobs over the cluster with Snakemake's "
                "SLURM executor (only in a compute environment of type slurm).",
            ),
            EngineParameter(
                name="jobs",
                type="int",
                default_value=str(DEFAULT_CLUSTER_JOBS),
                description=f"With executor 'slurm': most cluster jobs at once "
                f"(1 to {MAX_CLUSTER_JOBS}).",
            ),
        ]

    # --- checking and launching ----------------------------------------------------------

    def validate(self, request: RunRequest, env: ComputeEnv | None = None) -> None:
        workflow_type_version = request.workflow_type_version
        parameters = request.workflow_engine_parameters
        self.run_cores(parameters)
        executor = executor_parameter(parameters)
        cluster_jobs(parameters)
        if executor != "local" and (env is None or env.type != executor):
            where = f"{env.name!r} is {env.type}" if env else "the run is local"
            raise InvalidRequest(
                "workflow_engine_parameters",
                f"executor {executor!r} needs a compute_env of type {executor}; {where}",
            )
        if workflow_type_version not in self.versions:
            raise InvalidRequest(
                "workflow_type_version",
                f"{workflow_type_version!r} is not supported for SMK; supported: "
                + ", ".join(self.versions),
            )

    def run_cores(self, engine_parameters: Mapping[str, str], default: int | None = None) -> int:
        """The ``cores`` a run asked for, checked against what this service allows; else
        ``default`` (the site's CPUs), else the configured cores."""
        raw = engine_parameters.get("cores")
        if raw is None:
            return default or self.cores
        try:
            cores = int(raw)
        except ValueError:
            cores = 0
        if not 1 <= cores <= self.cores:
            raise InvalidRequest(
                "workflow_engine_parameters",
                f"cores must be an integer from 1 to {self.cores}, got {raw!r}",
            )
        return cores

    def prepare(self, run: Run, rundir: RunDir, site: Site | None = None) -> Launch:
        site = site or Site.local(rundir)
        request = run.request
        parameters = request.workflow_engine_parameters
        cores = self.run_cores(parameters, site.cpus)
        snakefile = snakefile_argument(request.workflow_url, rundir, site)
        rundir.params_file.write_text(json.dumps(request.workflow_params, indent=2) + "\n")
        copy_layout(layout_root(request.workflow_url, rundir), rundir.work)
        plugin = install_plugin(rundir)
        work = site.path(rundir, rundir.work.absolute())
        argv = [
            site.executable(self.name, self.executable),
            "--snakefile",
            snakefile,
            "--directory",
            str(work),
            "--configfile",
            str(site.path(rundir, rundir.params_file.absolute())),
            "--cores",
            str(cores),
            "--nocolor",
            "--printshellcmds",
            "--logger",
            PLUGIN_NAME,
            f"--logger-{PLUGIN_NAME}-events-file",
            str(site.path(rundir, events_path(rundir).absolute())),
        ]
        if executor_parameter(parameters) == "slurm":
            argv += slurm_executor_arguments(site.executor, cluster_jobs(parameters))
        # PYTHONPATH is the plugin folder alone: nothing of Spindle's environment leaks in.
        env = {"PYTHONPATH": str(site.path(rundir, plugin)), "PYTHONUNBUFFERED": "1"}
        return Launch(argv=argv, cwd=work, env=env, cpus=cores)

    def resume(self, run: Run, rundir: RunDir, launch: Launch) -> Launch:
        """Continue in the parent's working folder: unlock it (remove the locks a killed
        Snakemake left, exactly what ``snakemake --unlock`` does; nothing else can run in a
        handed-over folder) and ``--rerun-incomplete``, so only failed and incomplete jobs
        run again."""
        shutil.rmtree(rundir.work / ".snakemake" / "locks", ignore_errors=True)
        return dataclasses.replace(launch, argv=[*launch.argv, "--rerun-incomplete"])

    # --- reading what the run left -------------------------------------------------------

    def progress(self, rundir: RunDir) -> list[Task]:
        """The jobs Snakemake has described so far. ``job_started`` comes before the job's
        ``job_info``: a job is reported once its rule is known, never as a nameless task."""
        jobs = fold_jobs(read_events(events_path(rundir)))
        return [job.task(rundir) for job in jobs if job.rule]

    def planned_tasks(self, rundir: RunDir) -> int | None:
        counts = self.progress_counts(rundir)
        return counts[1] if counts else None

    def progress_counts(self, rundir: RunDir) -> tuple[int, int] | None:
        """(done, total) jobs for a progress bar: the latest ``progress`` event, else the
        total from ``run_info`` with none done, else None (Snakemake has not planned yet)."""
        return progress_counts(read_events(events_path(rundir)))

    def outputs(self, rundir: RunDir, files: RunFiles | None = None) -> dict[str, Any]:
        jobs = fold_jobs(read_events(events_path(rundir)))
        where = local_files(rundir, files)
        found: dict[str, dict[str, Any]] = {}
        for job in jobs:
            if job.state is not State.COMPLETE:
                continue
            for name in job.output:
                stat = output_stat(where, name)
                if stat is not None:
                    entry = file_entry(stat)
                    found.setdefault(entry["path"], entry)
        return {"files": [found[rel] for rel in sorted(found)]}


# --- launch helpers ----------------------------------------------------------------------


def events_path(rundir: RunDir) -> Path:
    return rundir.logs / EVENTS_FILE


def parse_version(text: str) -> str:
    """The version in ``snakemake --version`` output (its last line, e.g. ``9.27.1``)."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    found = _VERSION.search(lines[-1]) if lines else None
    if found is None:
        raise EngineUnavailable(f"snakemake printed no version: {text.strip()[:200]!r}")
    return found.group(0)


def executor_parameter(engine_parameters: Mapping[str, str]) -> str:
    raw = engine_parameters.get("executor", "local")
    if raw not in EXECUTORS:
        raise InvalidRequest(
            "workflow_engine_parameters",
            f"executor must be one of {', '.join(EXECUTORS)}, got {raw!r}",
        )
    return raw


def cluster_jobs(engine_parameters: Mapping[str, str]) -> int:
    raw = engine_parameters.get("jobs")
    if raw is None:
        return DEFAULT_CLUSTER_JOBS
    try:
        jobs = int(raw)
    except ValueError:
        jobs = 0
    if not 1 <= jobs <= MAX_CLUSTER_JOBS:
        raise InvalidRequest(
            "workflow_engine_parameters",
            f"jobs must be an integer from 1 to {MAX_CLUSTER_JOBS}, got {raw!r}",
        )
    return jobs


def slurm_executor_arguments(executor: Executor | None, jobs: int) -> list[str]:
    """Snakemake's SLURM executor plugin, with the environment's partition, account and QoS
    as the jobs' defaults (``--slurm-no-account`` when there is no account)."""
    if executor is None or executor.name != "slurm":
        raise InvalidRequest(
            "workflow_engine_parameters",
            "executor 'slurm' needs a compute_env of type slurm",
        )
    argv = ["--executor", "slurm", "--jobs", str(jobs)]
    defaults = executor.defaults
    resources = []
    if defaults.get("partition"):
        resources.append(f"slurm_partition={defaults['partition']}")
    if defaults.get("account"):
        resources.append(f"slurm_account={defaults['account']}")
    else:
        argv.append("--slurm-no-account")
    if resources:
        argv += ["--default-resources", *resources]
    if defaults.get("qos"):
        argv += ["--slurm-qos", defaults["qos"]]
    argv += executor.engine_args.get("snakemake", ())
    return argv


def install_plugin(rundir: RunDir) -> Path:
    """Copy the logger plugin package into the run folder's ``support/`` (the folder is put
    on Snakemake's PYTHONPATH, wherever the run folder is started) and return that folder."""
    folder = rundir.support / "snakemake"
    package = PLUGIN_DIR / PLUGIN_PACKAGE
    target = folder / PLUGIN_PACKAGE
    target.mkdir(parents=True, exist_ok=True)
    for source in package.glob("*.py"):
        shutil.copyfile(source, target / source.name)
    return folder.absolute()


def snakefile_argument(workflow_url: str, rundir: RunDir, site: Site | None = None) -> str:
    """What to pass as ``--snakefile``: the attachment the relative URL names, which must
    stay inside the attachments (as the site sees it); for an http(s) URL, the copy Spindle
    fetched at submission (``spindle.storage.fetch``), whose ``include:``s resolve among the
    attachments."""
    scheme = urlsplit(workflow_url).scheme.lower()
    if scheme in ("http", "https"):
        # Spindle fetched it at submission: the copy among the attachments is what runs
        workflow_url, scheme = local_reference(workflow_url), ""
    if scheme or workflow_url.startswith("/"):
        raise InvalidRequest(
            "workflow_url",
            f"{workflow_url!r} must be a path relative to the attachments or an http(s) URL",
        )
    rel = safe_relative(workflow_url.split("#", 1)[0], field="workflow_url")
    attachments = rundir.attachments.resolve()
    path = (attachments / rel).resolve()
    if not path.is_relative_to(attachments):
        raise InvalidRequest("workflow_url", f"{workflow_url!r} leaves the attachments")
    if not path.is_file():
        raise InvalidRequest("workflow_url", f"{workflow_url!r} names no attached file")
    site = site or Site.local(rundir)
    return str(site.root / "attachments" / path.relative_to(attachments).as_posix())


def layout_root(workflow_url: str, rundir: RunDir) -> Path:
    """The folder of the attachments that is the workflow's working directory on a user's
    laptop: ``<root>`` for Snakemake's standard layout (``<root>/workflow/Snakefile``), else
    the attachments themselves (a Snakefile is run from the top of what was attached)."""
    attachments = rundir.attachments
    if urlsplit(workflow_url).scheme:
        return attachments
    parent = PurePosixPath(workflow_url.split("#", 1)[0]).parent
    if parent.name == "workflow":
        root = (attachments / parent.parent.as_posix()).resolve()
        if root.is_relative_to(attachments.resolve()):
            return root
    return attachments


def copy_layout(source: Path, work: Path) -> None:
    """Copy the workflow's layout into ``work/`` (Snakemake's working directory). Files
    already there are kept (a run started again keeps what its workflow wrote); symbolic
    links are copied as links, never followed out of the attachments."""
    if not source.is_dir():
        return
    for top, dirnames, filenames in os.walk(source):
        folder = Path(top)
        target = work / folder.relative_to(source)
        target.mkdir(parents=True, exist_ok=True)
        for name in [*filenames, *(d for d in dirnames if (folder / d).is_symlink())]:
            if not os.path.lexists(target / name):
                shutil.copy2(folder / name, target / name, follow_symlinks=False)


# --- events ------------------------------------------------------------------------------


def read_events(path: Path) -> list[dict[str, Any]]:
    """Every complete event in the file. A line that does not parse (the plugin may be in the
    middle of writing the last one) is skipped; a missing file means no events yet."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return []
    events: list[dict[str, Any]] = []
    for line in raw.splitlines():
        with contextlib.suppress(ValueError):
            event = json.loads(line)
            if isinstance(event, dict) and isinstance(event.get("event"), str):
                events.append(event)
    return events


def progress_counts(events: list[dict[str, Any]]) -> tuple[int, int] | None:
    for event in reversed(events):
        kind = event["event"]
        if kind == "progress" and _is_int(event.get("done")) and _is_int(event.get("total")):
            return int(event["done"]), int(event["total"])
        if kind == "run_info" and _is_int(event.get("total")):
            return 0, int(event["total"])
    return None


@dataclass
class Job:
    """One Snakemake job as its events describe it so far."""

    jobid: int
    rule: str = ""
    wildcards: dict[str, str] = field(default_factory=dict)
    shellcmd: str | None = None
    output: list[str] = field(default_factory=list)
    state: State = State.RUNNING
    exit_code: int | None = None
    start_time: datetime | None = None
    end_time: datetime | None = None
    #: stdout/stderr sizes when the job started and ended (None: not a regular file)
    start_offsets: tuple[int | None, int | None] = (None, None)
    end_offsets: tuple[int | None, int | None] = (None, None)

    @property
    def name(self) -> str:
        if not self.wildcards:
            return self.rule
        return f"{self.rule}[{','.join(f'{k}={v}' for k, v in self.wildcards.items())}]"

    def task(self, rundir: RunDir) -> Task:
        return Task(
            id=str(self.jobid),
            name=self.name,
            state=self.state,
            cmd=[self.shellcmd] if self.shellcmd else [],
            start_time=self.start_time,
            end_time=self.end_time,
            exit_code=self.exit_code,
            stdout=_span(rundir, rundir.stdout, self.start_offsets[0], self.end_offsets[0]),
            stderr=_span(rundir, rundir.stderr, self.start_offsets[1], self.end_offsets[1]),
        )


def fold_jobs(events: list[dict[str, Any]]) -> list[Job]:
    """One :class:`Job` per Snakemake job, in the order the jobs started.

    ``job_started`` (a batch of job ids) comes first, then each job's ``job_info`` (rule,
    wildcards, outputs, command); offsets are taken at ``job_info``, just before the job runs.
    A job ends with ``job_finished`` or ``job_error``; until then it is RUNNING.
    """
    jobs: dict[int, Job] = {}

    def job(jobid: Any) -> Job | None:
        if not _is_int(jobid):
            return None
        return jobs.setdefault(int(jobid), Job(jobid=int(jobid)))

    for event in events:
        kind = event["event"]
        at = _time(event.get("time"))
        offsets = (_offset(event.get("stdout")), _offset(event.get("stderr")))
        if kind == "job_started":
            for jobid in event.get("jobs") or []:
                started = job(jobid)
                if started is not None and started.start_time is None:
                    started.start_time = at
                    started.start_offsets = offsets
        elif kind == "job_info" and (info := job(event.get("jobid"))) is not None:
            info.rule = str(event.get("rule_name") or "")
            info.wildcards = {str(k): str(v) for k, v in (event.get("wildcards") or {}).items()}
            info.shellcmd = event.get("shellcmd") or None
            info.output = [str(o) for o in event.get("output") or []]
            info.start_time = info.start_time or at
            info.start_offsets = offsets
        elif kind in ("job_finished", "job_error") and (done := job(event.get("jobid"))):
            done.end_time = at
            done.end_offsets = offsets
            if kind == "job_finished":
                done.state, done.exit_code = State.COMPLETE, 0
            else:
                code = event.get("exit_code")
                done.state = State.EXECUTOR_ERROR
                done.exit_code = code if _is_int(code) and code != 0 else 1
                done.rule = done.rule or str(event.get("rule_name") or "")
    return list(jobs.values())


def _is_int(value: Any) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool)


def _offset(value: Any) -> int | None:
    return value if _is_int(value) and value >= 0 else None


def _time(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        at = datetime.fromisoformat(value)
    except ValueError:
        return None
    return at.astimezone(UTC) if at.tzinfo else at.replace(tzinfo=UTC)


def _span(rundir: RunDir, log: Path, start: int | None, end: int | None) -> LogSpan:
    return LogSpan(log.relative_to(rundir.root).as_posix(), start, end)


# --- outputs -----------------------------------------------------------------------------


def output_stat(files: RunFiles, name: str) -> FileStat | None:
    """The existing file or folder a job output names, inside ``work/``, or None.

    Snakemake prints flagged outputs with a note (``x.txt (pipe)``); the bare name is tried
    when the printed one does not exist. Anything leading outside ``work/`` is ignored.
    """
    for candidate in (name, _ANNOTATION.sub("", name)):
        if candidate.startswith("/"):
            continue
        stat = files.stat(f"work/{candidate}")
        if stat is not None and stat.path != _WORK and stat.path.is_relative_to(_WORK):
            return stat
    return None


def file_entry(stat: FileStat) -> dict[str, Any]:
    """A CWL-style File or Directory object whose location is a ``run:`` reference."""
    rel = stat.path.relative_to(_WORK).as_posix()
    location = f"{RUN_FILE_SCHEME}{stat.path.as_posix()}"
    if stat.is_dir:
        return {"class": "Directory", "path": rel, "basename": stat.path.name, "location": location}
    return {
        "class": "File",
        "path": rel,
        "basename": stat.path.name,
        "size": stat.size,
        "location": location,
    }
