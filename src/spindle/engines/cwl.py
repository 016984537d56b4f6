"""The CWL engine (WES workflow_type ``CWL``), run by cwltool.

cwltool runs as its own process from its own environment, always with ``--no-container``.
Everything it writes stays in the run directory: final outputs are moved to ``outputs/``,
job scratch and output folders live under ``work/`` (``--tmpdir-prefix``,
``--tmp-outdir-prefix``, ``TMPDIR``), HTTP downloads are cached in ``work/cache``
(``XDG_CACHE_HOME``) and the per-user document cache in ``~/.cache`` is switched off.

cwltool reports nothing machine-readable while it runs, so tasks come from its log on
stderr, written with ``--timestamps --disable-color`` under ``TZ=UTC`` so that each record
starts with a UTC time. The final output object is the JSON document it prints on stdout.

Relative inputs: cwltool resolves a relative ``location``/``path`` in the job file against
the job file's folder, and the job file is ``params.json`` at the top of the run directory,
one level above the attachments. Rather than hide the job file among the client's files,
:meth:`CwltoolEngine.prepare` rewrites every relative ``location``/``path`` of a File or
Directory to an absolute one inside ``attachments/``, and refuses (InvalidRequest, field
``workflow_params``) one that would leave them. The written ``params.json`` is therefore
exactly what cwltool ran with.
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import unquote, urlsplit

from pydantic import BaseModel

from spindle.config import Settings
from spindle.domain import ComputeEnv, Run, RunRequest, Task
from spindle.engines.base import (
    Engine,
    EngineInfo,
    EngineParameter,
    EngineSettings,
    ask,
    local_files,
)
from spindle.engines.cwl_log import CwltoolLog
from spindle.errors import EngineUnavailable, InvalidPath, InvalidRequest
from spindle.execution import Launch, Site
from spindle.storage.files import RunFiles
from spindle.storage.rundir import RUN_FILE_SCHEME, RunDir, safe_relative

#: Seconds ``cwltool --version`` may take (a cold start imports a lot).
DETECT_TIMEOUT = 60.0
#: CWL versions this code knows cwltool runs, used until :meth:`CwltoolEngine.detect` asks.
KNOWN_VERSIONS = ("v1.0", "v1.1", "v1.2")
#: Parsed logs kept between ``progress`` calls (one per run being watched).
LOG_CACHE_SIZE = 256

# Under ``work/``: job scratch folders (also TMPDIR), job output folders, HTTP download cache.
_TMP, _JOBS, _CACHE = "tmp", "jobs", "cache"


class CwltoolEngine(Engine):
    """Runs CWL documents with the ``cwltool`` executable found at ``executable``."""

    name = "cwltool"
    workflow_type = "CWL"
    workflow_files = ("*.cwl",)

    def __init__(self, executable: str) -> None:
        self.executable = executable
        self.versions: list[str] = list(KNOWN_VERSIONS)
        self._logs: OrderedDict[Path, CwltoolLog] = OrderedDict()
        self._logs_lock = threading.Lock()

    @classmethod
    def from_settings(cls, settings: Settings, own: BaseModel) -> CwltoolEngine:
        """``[engines.cwltool]``, or the older top-level ``cwltool`` setting."""
        explicit = own.executable if isinstance(own, EngineSettings) else ""
        return cls(settings.engine_executable(cls.name, explicit or settings.cwltool))

    # --- what is installed ---------------------------------------------------------------

    async def detect(self) -> EngineInfo:
        # Both at once (a cold start is slow), each seen to its end even if the other fails.
        answers = await asyncio.gather(
            self._ask("--version"), self._ask("--print-supported-versions"), return_exceptions=True
        )
        for answer in answers:
            if isinstance(answer, BaseException):
                raise answer
        version_text, versions_text = (str(answer) for answer in answers)
        words = version_text.split()
        if not words:
            raise EngineUnavailable(f"`{self.executable} --version` printed nothing")
        versions = [line.strip() for line in versions_text.splitlines() if line.strip()]
        if not versions:
            raise EngineUnavailable(
                f"`{self.executable} --print-supported-versions` printed no CWL version"
            )
        self.versions = versions
        return EngineInfo(
            name=self.name,
            version=words[-1],  # cwltool prints "<its path> <version>"
            workflow_type=self.workflow_type,
            workflow_type_versions=list(versions),
        )

    async def _ask(self, option: str) -> str:
        """Run ``cwltool <option>`` and return its stdout; EngineUnavailable if it fails."""
        return await ask(self.executable, option, limit=DETECT_TIMEOUT)

    def parameters(self) -> list[EngineParameter]:
        return [
            EngineParameter(
                name="parallel",
                type="bool",
                default_value="false",
                description="Run independent steps and scatter jobs at the same time "
                "(cwltool --parallel).",
            )
        ]

    # --- checking and launching ----------------------------------------------------------

    def validate(self, request: RunRequest, env: ComputeEnv | None = None) -> None:
        """Refuse an unsupported CWL version, a bad ``parallel`` parameter, and relative
        inputs that leave the attachments (checked again against the real folder in
        :meth:`prepare`)."""
        workflow_type_version = request.workflow_type_version
        parallel_parameter(request.workflow_engine_parameters)
        if workflow_type_version not in self.versions:
            raise InvalidRequest(
                "workflow_type_version",
                f"{workflow_type_version!r} is not supported for CWL; supported: "
                + ", ".join(self.versions),
            )
        rewrite_inputs(request.workflow_params, lambda rel, as_uri: rel.as_posix())

    def prepare(self, run: Run, rundir: RunDir, site: Site | None = None) -> Launch:
        """Write ``params.json`` (relative inputs made absolute inside the attachments as the
        site sees them, see the module docstring) and build the cwltool command; every path
        in it is absolute, so the command means the same whatever folder a backend starts
        it from."""
        site = site or Site.local(rundir)
        request = run.request
        parallel = parallel_parameter(request.workflow_engine_parameters)
        workflow = workflow_argument(request.workflow_url, rundir, site)
        attachments = rundir.attachments.resolve()
        there = site.root / "attachments"
        params = rewrite_inputs(
            request.workflow_params,
            lambda rel, as_uri: attached(attachments, rel, as_uri, there),
        )
        rundir.params_file.write_text(json.dumps(params, indent=2) + "\n")
        for sub in (_TMP, _JOBS, _CACHE):
            (rundir.work / sub).mkdir(parents=True, exist_ok=True)
        work = site.path(rundir, rundir.work.absolute())
        argv = [
            site.executable(self.name, self.executable),
            "--no-container",
            "--disable-color",  # colour codes would sit in the middle of every log line
            "--timestamps",  # task times come from these
            "--no-doc-cache",  # it would write to ~/.cache/salad, outside the run directory
            "--outdir",
            str(site.path(rundir, rundir.outputs.absolute())),
            "--tmpdir-prefix",
            f"{work / _TMP}/",  # trailing slash: cwltool splits it into folder and prefix
            "--tmp-outdir-prefix",
            f"{work / _JOBS}/",
        ]
        if parallel:
            argv.append("--parallel")
        argv += [workflow, str(site.path(rundir, rundir.params_file.absolute()))]
        env = {
            "PYTHONUNBUFFERED": "1",
            "TZ": "UTC",  # --timestamps prints local time; tools do not inherit TZ
            "TMPDIR": str(work / _TMP),
            "XDG_CACHE_HOME": str(work / _CACHE),
            "CWLTOOL_OPTIONS": "",  # argv is the whole command: nothing added from outside
        }
        return Launch(argv=argv, cwd=work, env=env)

    # --- reading what the run left -------------------------------------------------------

    def progress(self, rundir: RunDir) -> list[Task]:
        """Tasks read from cwltool's stderr. Only the bytes added since the last call are
        parsed (the parsed state is kept per log file), so this stays cheap on long runs."""
        path = rundir.stderr.absolute()
        try:
            stat = path.stat()
        except FileNotFoundError:
            return []
        # The worker calls this in threads: taking the log out of the cache while feeding it
        # keeps a second caller off it (that one parses from the start into its own).
        with self._logs_lock:
            log = self._logs.pop(path, None)
        if log is None or log.inode != stat.st_ino or log.offset > stat.st_size:
            log = CwltoolLog(inode=stat.st_ino)
        with path.open("rb") as f:
            f.seek(log.offset)
            log.feed(f.read())
        tasks = log.tasks(rundir.stderr.relative_to(rundir.root).as_posix())
        with self._logs_lock:
            self._logs[path] = log
            while len(self._logs) > LOG_CACHE_SIZE:
                self._logs.popitem(last=False)
        return tasks

    def outputs(self, rundir: RunDir, files: RunFiles | None = None) -> dict[str, Any]:
        """The output object cwltool printed, with files inside the run folder (where it ran)
        as ``run:`` references. A run that failed before printing it (empty or cut-off
        stdout) has no outputs: ``{}``."""
        try:
            printed = json.loads(rundir.stdout.read_bytes())
        except (FileNotFoundError, ValueError):
            return {}
        if not isinstance(printed, dict):
            return {}
        where = local_files(rundir, files)
        return {key: run_references(value, where) for key, value in printed.items()}


# --- launch helpers ----------------------------------------------------------------------


def parallel_parameter(engine_parameters: dict[str, str]) -> bool:
    """The ``parallel`` engine parameter as a bool ("true"/"false", any case)."""
    raw = engine_parameters.get("parallel", "false")
    value = raw.strip().lower()
    if value not in ("true", "false"):
        raise InvalidRequest(
            "workflow_engine_parameters", f"parallel must be 'true' or 'false', got {raw!r}"
        )
    return value == "true"


def workflow_argument(workflow_url: str, rundir: RunDir, site: Site | None = None) -> str:
    """What to give cwltool as the workflow: an http(s) URL as given, or the attachment the
    relative URL names (inside the attachments, which keep their folder layout, so the
    documents it references resolve). A ``#fragment`` picks a process inside a packed
    document; cwltool then needs a ``file://`` URI to tell the fragment from the path."""
    scheme = urlsplit(workflow_url).scheme.lower()
    if scheme in ("http", "https"):
        return workflow_url
    if scheme or workflow_url.startswith("/"):
        raise InvalidRequest(
            "workflow_url",
            f"{workflow_url!r} must be a path relative to the attachments or an http(s) URL",
        )
    name, _, fragment = workflow_url.partition("#")
    rel = safe_relative(name, field="workflow_url")
    attachments = rundir.attachments.resolve()
    path = (attachments / rel).resolve()
    if not path.is_relative_to(attachments):
        raise InvalidRequest("workflow_url", f"{workflow_url!r} leaves the attachments")
    if not path.is_file():
        raise InvalidRequest("workflow_url", f"{workflow_url!r} names no attached file")
    site = site or Site.local(rundir)
    there = site.root / "attachments" / path.relative_to(attachments).as_posix()
    return f"{there.as_uri()}#{fragment}" if fragment else str(there)


#: Turns a checked relative input (and whether it was a ``location`` URI) into its new text.
Relocate = Callable[[PurePosixPath, bool], str]


def rewrite_inputs(value: Any, relocate: Relocate) -> Any:
    """A copy of ``value`` where each relative ``location``/``path`` of a File or Directory
    (at any depth: arrays, records, ``secondaryFiles``, ``listing``) went through
    ``relocate``. URIs with a scheme and absolute paths are left alone. A relative name that
    is empty, has ``..`` or a backslash is refused (InvalidPath, field ``workflow_params``)."""
    if isinstance(value, list):
        return [rewrite_inputs(item, relocate) for item in value]
    if not isinstance(value, dict):
        return value
    out = {key: rewrite_inputs(item, relocate) for key, item in value.items()}
    if out.get("class") in ("File", "Directory"):
        for key, as_uri in (("location", True), ("path", False)):
            ref = out.get(key)
            if isinstance(ref, str) and not _is_absolute(ref, as_uri):
                # a location is a URI reference: cwltool reads "%20" as a space
                name = unquote(ref) if as_uri else ref
                out[key] = relocate(safe_relative(name, field="workflow_params"), as_uri)
    return out


def _is_absolute(ref: str, as_uri: bool) -> bool:
    return ref.startswith("/") or (as_uri and bool(urlsplit(ref).scheme))


def attached(
    attachments: Path, rel: PurePosixPath, as_uri: bool, there: PurePosixPath | None = None
) -> str:
    """The absolute ``file://`` URI (for a location) or path of an input inside the
    (resolved) attachments folder, as found at ``there`` (the attachments where the engine
    runs; default: this host's); refuses one that a symlink leads out of it."""
    path = (attachments / rel).resolve()
    if not path.is_relative_to(attachments):
        raise InvalidPath(
            field="workflow_params", name=rel.as_posix(), problem="leaves the attachments"
        )
    target = (there or PurePosixPath(attachments)) / path.relative_to(attachments).as_posix()
    return target.as_uri() if as_uri else str(target)


# --- outputs -----------------------------------------------------------------------------


def run_references(value: Any, files: RunFiles) -> Any:
    """A copy of cwltool's output ``value`` where each File/Directory inside the run
    directory has a ``run:`` location and no ``path`` (a server-local detail). Nested
    ``secondaryFiles`` and ``listing`` are File/Directory objects too and get the same."""
    if isinstance(value, list):
        return [run_references(item, files) for item in value]
    if not isinstance(value, dict):
        return value
    out = {key: run_references(item, files) for key, item in value.items()}
    if out.get("class") in ("File", "Directory"):
        out.pop("path", None)
        location = out.get("location")
        if isinstance(location, str) and urlsplit(location).scheme == "file":
            rel = files.ref_of(unquote(urlsplit(location).path))
            if rel is not None:  # outside the run directory: left as is
                out["location"] = f"{RUN_FILE_SCHEME}{rel.as_posix()}"
    return out
