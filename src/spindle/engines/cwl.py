"""The CWL engine (WES workflow_type ``CWL``), run by cwltool.

cwltool runs as its own process from its own environment, with ``--no-container`` unless the
compute environment runs containers (``containers = "podman"``: tools with a DockerRequirement
run in podman, see :mod:`spindle.engines.containers`).
Everything it writes stays in the run directory: final outputs are moved to ``outputs/``,
job scratch folders live under ``work/`` (``--tmpdir-prefix``, ``TMPDIR``), job output
folders in the step cache ``work/cwl-cache`` (``--cachedir``: a recovery, which takes over
the working folder, reruns only the steps that did not finish there), HTTP downloads are
cached in ``work/cache`` (``XDG_CACHE_HOME``) and the per-user document cache in
``~/.cache`` is switched off.

cwltool reports nothing machine-readable while it runs, so tasks come from its log on
stderr, written with ``--timestamps --disable-color`` under ``TZ=UTC`` so that each record
starts with a UTC time. The final output object is the JSON document it prints on stdout.

Host files: an input naming a file of this host by absolute path or ``file://`` URI is
refused unless it is under a folder of the ``cwl_input_roots`` setting
(:func:`check_host_inputs`), and an output that is a link out of the run folder is refused by
a guard loaded into cwltool's own Python (``cwl_guard/sitecustomize.py``, copied into
``support/cwltool/`` and put on its ``PYTHONPATH``) before cwltool would copy its target into
``outputs/``.

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
import os
import re
import shutil
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import unquote, urlsplit

from pydantic import BaseModel

from spindle.config import Settings
from spindle.domain import ComputeEnv, Run, RunRequest, Task
from spindle.engines import containers
from spindle.engines.base import (
    Engine,
    EngineInfo,
    EngineParameter,
    EngineSettings,
    ask,
    local_files,
)
from spindle.engines.cwl_log import CwltoolLog
from spindle.engines.tail import LogTails
from spindle.errors import EngineUnavailable, InvalidPath, InvalidRequest
from spindle.execution import Launch, Site
from spindle.storage.fetch import local_reference
from spindle.storage.files import RunFiles, open_inside
from spindle.storage.rundir import RUN_FILE_SCHEME, RunDir, safe_relative

#: Seconds ``cwltool --version`` may take (a cold start imports a lot).
DETECT_TIMEOUT = 60.0
#: CWL versions this code knows cwltool runs, used until :meth:`CwltoolEngine.detect` asks.
KNOWN_VERSIONS = ("v1.0", "v1.1", "v1.2")

#: cwltool's output guard, copied into each run folder (see install_guard).
GUARD = Path(__file__).resolve().parent / "cwl_guard" / "sitecustomize.py"

# Under ``work/``: job scratch folders (also TMPDIR), HTTP download cache, the step cache
# with the jobs' output folders (``--cachedir``: a recovery takes over the working folder).
_TMP, _CACHE, _STEPS = "tmp", "cache", "cwl-cache"
#: Where the ``provenance`` engine parameter has cwltool write its research object, in the
#: run folder (the log archive's ``reports/cwltool-provenance/``).
PROVENANCE = "work/provenance"


class CwltoolEngine(Engine):
    """Runs CWL documents with the ``cwltool`` executable found at ``executable``."""

    name = "cwltool"
    workflow_type = "CWL"
    workflow_files = ("*.cwl",)

    def __init__(self, executable: str, input_roots: Sequence[Path] = ()) -> None:
        self.executable = executable
        #: folders of this host an input may name by absolute path (see check_host_inputs)
        self.input_roots = tuple(Path(os.path.realpath(root)) for root in input_roots)
        self.versions: list[str] = list(KNOWN_VERSIONS)
        self._tails: LogTails[CwltoolLog] = LogTails(lambda inode: CwltoolLog(inode=inode))

    @classmethod
    def from_settings(cls, settings: Settings, own: BaseModel) -> CwltoolEngine:
        """``[engines.cwltool]``, or the older top-level ``cwltool`` setting."""
        explicit = own.executable if isinstance(own, EngineSettings) else ""
        return cls(
            settings.engine_executable(cls.name, explicit or settings.cwltool),
            settings.cwl_input_roots,
        )

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
            ),
            EngineParameter(
                name="provenance",
                type="bool",
                default_value="false",
                description="Record a provenance research object (cwltool --provenance) in "
                f"{PROVENANCE}; the run's log archive carries it.",
            ),
        ]

    # --- checking and launching ----------------------------------------------------------

    def validate(self, request: RunRequest, env: ComputeEnv | None = None) -> None:
        """Refuse an unsupported CWL version, a bad ``parallel`` parameter, and relative
        inputs that leave the attachments (checked again against the real folder in
        :meth:`prepare`)."""
        workflow_type_version = request.workflow_type_version
        parallel_parameter(request.workflow_engine_parameters)
        provenance_parameter(request.workflow_engine_parameters)
        if workflow_type_version not in self.versions:
            raise InvalidRequest(
                "workflow_type_version",
                f"{workflow_type_version!r} is not supported for CWL; supported: "
                + ", ".join(self.versions),
            )
        rewrite_inputs(request.workflow_params, lambda rel, as_uri: rel.as_posix())
        check_host_inputs(request.workflow_params, self.input_roots)

    def prepare(self, run: Run, rundir: RunDir, site: Site | None = None) -> Launch:
        """Write ``params.json`` (relative inputs made absolute inside the attachments as the
        site sees them, see the module docstring) and build the cwltool command; every path
        in it is absolute, so the command means the same whatever folder a backend starts
        it from."""
        site = site or Site.local(rundir)
        request = run.request
        parallel = parallel_parameter(request.workflow_engine_parameters)
        check_host_inputs(request.workflow_params, self.input_roots)  # links may have moved
        workflow = workflow_argument(request.workflow_url, rundir, site)
        attachments = rundir.attachments.resolve()
        there = site.root / "attachments"
        params = rewrite_inputs(
            request.workflow_params,
            lambda rel, as_uri: attached(attachments, rel, as_uri, there),
        )
        rundir.params_file.write_text(json.dumps(params, indent=2) + "\n")
        guard = install_guard(rundir, self.input_roots)
        for sub in (_TMP, _CACHE, _STEPS):
            (rundir.work / sub).mkdir(parents=True, exist_ok=True)
        work = site.path(rundir, rundir.work.absolute())
        # Containers (docs/containers.md): podman behind a `docker` shim, no image pulled;
        # otherwise none at all, and a DockerRequirement is refused (explain_failure).
        in_podman = site.containers == containers.PODMAN
        argv = [
            site.executable(self.name, self.executable),
            "--disable-pull" if in_podman else "--no-container",
            "--disable-color",  # colour codes would sit in the middle of every log line
            "--timestamps",  # task times come from these
            "--no-doc-cache",  # it would write to ~/.cache/salad, outside the run directory
            "--outdir",
            str(site.path(rundir, rundir.outputs.absolute())),
            "--tmpdir-prefix",
            f"{work / _TMP}/",  # trailing slash: cwltool splits it into folder and prefix
            # every run caches its steps (their output folders are in the cache, so no
            # --tmp-outdir-prefix, which cwltool refuses beside it): a recovery, which takes
            # over this folder, runs only the steps that did not finish
            "--cachedir",
            str(work / _STEPS),
        ]
        if parallel:
            argv.append("--parallel")
        if provenance_parameter(request.workflow_engine_parameters):
            # (cwltool makes the folder: one left by an earlier try would stop it)
            shutil.rmtree(rundir.root / PROVENANCE, ignore_errors=True)
            argv += ["--provenance", str(site.path(rundir, (rundir.root / PROVENANCE).absolute()))]
        argv += [workflow, str(site.path(rundir, rundir.params_file.absolute()))]
        env = {
            "PYTHONUNBUFFERED": "1",
            "TZ": "UTC",  # --timestamps prints local time; tools do not inherit TZ
            "TMPDIR": str(work / _TMP),
            "XDG_CACHE_HOME": str(work / _CACHE),
            "CWLTOOL_OPTIONS": "",  # argv is the whole command: nothing added from outside
            # the guard that refuses outputs linking out of the run (cwl_guard/)
            "PYTHONPATH": str(site.path(rundir, guard)),
        }
        if in_podman:  # the guard puts the shim first on cwltool's PATH
            env |= containers.write_conf(rundir, site)
            containers.write_docker_shim(rundir, site.container_network)
        else:
            containers.remove_docker_shim(rundir)
        return Launch(argv=argv, cwd=work, env=env)

    # --- reading what the run left -------------------------------------------------------

    def progress(self, rundir: RunDir) -> list[Task]:
        """Tasks read from cwltool's stderr. Only the bytes added since the last call are
        parsed (the parsed state is kept per log file), so this stays cheap on long runs."""
        stderr = rundir.stderr.relative_to(rundir.root).as_posix()
        return self._tails.read(rundir, rundir.stderr, lambda log: log.tasks(stderr), [])

    def failure_notes(self, rundir: RunDir) -> list[str]:
        return explain_failure(rundir)

    def outputs(self, rundir: RunDir, files: RunFiles | None = None) -> dict[str, Any]:
        """The output object cwltool printed, with files inside the run folder (where it ran)
        as ``run:`` references. A run that failed before printing it (empty or cut-off
        stdout) has no outputs: ``{}``."""
        f = open_inside(rundir.root, rundir.stdout)
        if f is None:
            return {}
        try:
            with f:
                printed = json.loads(f.read())
        except ValueError:
            return {}
        if not isinstance(printed, dict):
            return {}
        where = local_files(rundir, files)
        return {key: run_references(value, where) for key, value in printed.items()}


# --- launch helpers ----------------------------------------------------------------------


def install_guard(rundir: RunDir, allowed_roots: Sequence[Path] = ()) -> Path:
    """Copy the output guard (``cwl_guard/sitecustomize.py``, loaded by cwltool's Python at
    start-up) into the run folder's ``support/cwltool/``, with the folders outputs may link
    into besides the run (``cwl_input_roots``), and return that folder."""
    folder = rundir.support / "cwltool"
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(GUARD, folder / GUARD.name)
    roots = [str(root) for root in allowed_roots]
    (folder / "allowed_roots.json").write_text(json.dumps(roots) + "\n")
    return folder.absolute()


def parallel_parameter(engine_parameters: dict[str, str]) -> bool:
    """The ``parallel`` engine parameter as a bool ("true"/"false", any case)."""
    return _bool_parameter(engine_parameters, "parallel")


def provenance_parameter(engine_parameters: dict[str, str]) -> bool:
    """The ``provenance`` engine parameter: record cwltool's research object."""
    return _bool_parameter(engine_parameters, "provenance")


def _bool_parameter(engine_parameters: dict[str, str], name: str) -> bool:
    raw = engine_parameters.get(name, "false")
    value = raw.strip().lower()
    if value not in ("true", "false"):
        raise InvalidRequest(
            "workflow_engine_parameters", f"{name} must be 'true' or 'false', got {raw!r}"
        )
    return value == "true"


def workflow_argument(workflow_url: str, rundir: RunDir, site: Site | None = None) -> str:
    """What to give cwltool as the workflow: the attachment the relative URL names (inside
    the attachments, which keep their folder layout, so the documents it references resolve);
    for an http(s) URL, the copy Spindle fetched at submission (``spindle.storage.fetch``).
    A ``#fragment`` picks a process inside a packed document; cwltool then needs a
    ``file://`` URI to tell the fragment from the path."""
    scheme = urlsplit(workflow_url).scheme.lower()
    if scheme in ("http", "https"):
        # Spindle fetched it at submission: the copy among the attachments is what runs
        workflow_url, scheme = local_reference(workflow_url), ""
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


#: URI schemes an input ``location`` may have besides ``file:`` (fetched by cwltool).
REMOTE_SCHEMES = ("http", "https")
#: URI schemes Spindle itself stages into the attachments before cwltool starts
#: (``s3://``, docs/storage.md), so cwltool never reads them.
STAGED_SCHEMES = ("s3",)


def check_host_inputs(params: dict[str, Any], roots: Sequence[Path]) -> None:
    """Refuse (InvalidRequest naming the input) a File or Directory input that names a file
    of this host by absolute path or ``file://`` URI outside ``roots`` (links followed), or
    a ``location`` of a scheme cwltool would not fetch over http(s). Relative names are the
    attachments' (checked by :func:`rewrite_inputs`)."""
    for name, value in params.items():
        for ref, as_uri in _file_refs(value):
            if not _is_absolute(ref, as_uri):
                continue
            scheme = urlsplit(ref).scheme.lower() if as_uri else ""
            if scheme in REMOTE_SCHEMES or scheme in STAGED_SCHEMES:
                continue
            if scheme not in ("", "file"):
                raise InvalidRequest(
                    "workflow_params",
                    f"input {name!r}: {ref!r} has a scheme Spindle does not let cwltool "
                    f"read ({scheme}:); use http(s), s3 or attach the file",
                )
            path = Path(os.path.realpath(unquote(urlsplit(ref).path) if scheme else ref))
            if not any(path.is_relative_to(root) for root in roots):
                raise InvalidRequest(
                    "workflow_params",
                    f"input {name!r}: {ref!r} is a file of this host outside the folders "
                    "inputs may come from (setting cwl_input_roots"
                    + (f": {', '.join(str(r) for r in roots)}" if roots else ", empty")
                    + "); attach the file or give an http(s) URL",
                )


def _file_refs(value: Any) -> Iterator[tuple[str, bool]]:
    """Every ``location`` (True) and ``path`` (False) of a File or Directory in ``value``."""
    if isinstance(value, list):
        for item in value:
            yield from _file_refs(item)
        return
    if not isinstance(value, dict):
        return
    if value.get("class") in ("File", "Directory"):
        for key, as_uri in (("location", True), ("path", False)):
            ref = value.get(key)
            if isinstance(ref, str):
                yield ref, as_uri
    for item in value.values():
        yield from _file_refs(item)


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
    ``secondaryFiles`` and ``listing`` are File/Directory objects too and get the same.
    One that is a link out of the run folder (a tool's output linking to ``/etc/passwd`` or
    another run) is left out: None in its place, dropped from a list."""
    if isinstance(value, list):
        items = [run_references(item, files) for item in value]
        return [
            new for old, new in zip(value, items, strict=True) if new is not None or old is None
        ]
    if not isinstance(value, dict):
        return value
    out = {key: run_references(item, files) for key, item in value.items()}
    if out.get("class") in ("File", "Directory"):
        out.pop("path", None)
        location = out.get("location")
        if isinstance(location, str) and urlsplit(location).scheme == "file":
            rel = files.ref_of(unquote(urlsplit(location).path))
            if rel is not None and files.leads_out(rel):
                return None
            if rel is not None:  # outside the run directory: left as is
                out["location"] = f"{RUN_FILE_SCHEME}{rel.as_posix()}"
    return out


# --- failures said for the user ----------------------------------------------------------

#: The end of cwltool's log read for the reason it stopped.
_LOG_TAIL = 64 * 1024
_NO_CONTAINER = re.compile(r"--no-container, but this (\w+) has DockerRequirement")
_NO_SUCH_FILE = re.compile(r"No such file or directory:\s+'([^']+)'")


def explain_failure(rundir: RunDir) -> list[str]:
    """cwltool's refusals that name what the user never wrote (``--no-container``) or point
    into Spindle's job file (``../params.json:4:5``), said in the user's terms."""
    try:
        with rundir.stderr.open("rb") as f:
            f.seek(max(0, f.seek(0, 2) - _LOG_TAIL))
            tail = f.read().decode(errors="replace")
    except FileNotFoundError:
        return []
    notes = []
    if found := _NO_CONTAINER.search(tail):
        notes.append(
            f"a {found.group(1)} of the workflow has a DockerRequirement under 'requirements', "
            "but this compute environment runs no containers (its setting "
            f"{containers.SETTING} is {containers.NONE!r}). Run it in a compute environment "
            f"with {containers.SETTING} = {containers.PODMAN!r}, or move DockerRequirement to "
            "'hints' to run the tool with the programs installed on the host."
        )
    for missing in dict.fromkeys(_NO_SUCH_FILE.findall(tail)):
        if note := _missing_input(rundir, missing):
            notes.append(note)
    return notes


def _missing_input(rundir: RunDir, missing: str) -> str | None:
    """The input of ``params.json`` that names the missing file, said by its name in the
    request (None: no input names it; the tool itself looked for it)."""
    try:
        params = json.loads(rundir.params_file.read_text())
    except (OSError, ValueError):
        params = {}
    attachments = str(rundir.attachments.resolve())
    shown = missing.removeprefix(attachments + "/") if missing.startswith(attachments) else missing
    for name, value in params.items() if isinstance(params, dict) else ():
        text = json.dumps(value, ensure_ascii=False)
        if missing in text or Path(missing).as_uri() in text:
            return f"input {name!r} of workflow_params: {shown!r} does not exist (not attached?)"
    return None
