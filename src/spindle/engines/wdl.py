"""The WDL engine (WES workflow_type ``WDL``), run by miniwdl.

miniwdl runs as its own process from its own environment (``.engines/miniwdl``), with
Spindle's task runner installed there (``engines/miniwdl-spindle``, miniwdl's
``container_backend`` named ``spindle``): a task's command runs on the host, or in podman when
the task names ``runtime.docker`` and the compute environment has ``containers = "podman"``.
File inputs given by http(s) URL are fetched by the same package (not by miniwdl's aria2c
container).

Everything stays in the run folder: the miniwdl configuration and input JSON in
``support/miniwdl/``, the run itself in ``work/`` (one folder per call, ``call-NAME``), the
outputs JSON (or the error JSON) on its stdout, the run's ``logs/stdout``. ``[file_io]
root`` is the run folder, so miniwdl refuses an input file outside it (only attachments,
and downloads, are inside).

Inputs: ``workflow_params`` is WDL's JSON input, keys with or without the workflow's name
(``wordcount.text`` or ``text``); a relative File name is an attachment (miniwdl runs in
``attachments/``), an http(s) URL is fetched.

Tasks come from miniwdl's structured log (``--log-json``, on stderr): ``task setup`` starts
a call, ``done`` ends it, a failure record carries its ``exit_status``; the command and the
standard streams are the call folder's ``command``, ``stdout.txt`` and ``stderr.txt``.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import PurePosixPath
from typing import Any

from pydantic import BaseModel

from spindle.config import Settings
from spindle.domain import ComputeEnv, LogSpan, Run, RunRequest, State, Task
from spindle.engines import containers
from spindle.engines.base import Engine, EngineInfo, EngineSettings, ask, local_files
from spindle.engines.cwl import workflow_argument
from spindle.engines.tail import LogTails
from spindle.errors import EngineUnavailable, InvalidRequest
from spindle.execution import Launch, Site
from spindle.storage.files import RunFiles, open_inside
from spindle.storage.rundir import RUN_FILE_SCHEME, RunDir

#: Seconds ``miniwdl --version`` may take.
DETECT_TIMEOUT = 60.0
#: WDL versions Spindle offers, those of them the installed miniwdl's grammar has
#: (:meth:`MiniwdlEngine.detect`); 1.2 is left out until its ``requirements`` section is
#: tried with the task runner.
KNOWN_VERSIONS = ("1.0", "1.1")
#: Asked of miniwdl's own Python: the WDL versions its grammar parses.
_GRAMMARS = "import WDL._grammar as g; print(*g.versions)"
#: The task runner's name (engines/miniwdl-spindle's entry point).
BACKEND = "spindle"
#: Lines of a failing task's stderr said in the run's system logs.
STDERR_LINES = 10


class MiniwdlEngine(Engine):
    """Runs WDL documents with the ``miniwdl`` executable found at ``executable``."""

    name = "miniwdl"
    workflow_type = "WDL"
    workflow_files = ("*.wdl",)

    def __init__(self, executable: str) -> None:
        self.executable = executable
        self.versions: list[str] = list(KNOWN_VERSIONS)
        self._tails: LogTails[_Log] = LogTails(lambda inode: _Log(inode=inode))

    @classmethod
    def from_settings(cls, settings: Settings, own: BaseModel) -> MiniwdlEngine:
        explicit = own.executable if isinstance(own, EngineSettings) else ""
        return cls(settings.engine_executable(cls.name, explicit))

    async def detect(self) -> EngineInfo:
        text = await ask(self.executable, "--version", limit=DETECT_TIMEOUT)
        words = text.split()  # "miniwdl v1.16.0"
        if not words:
            raise EngineUnavailable(f"`{self.executable} --version` printed nothing")
        python = _interpreter(self.executable)
        if python:  # else (not a Python script): the versions this code knows it runs
            grammars = (await ask(python, "-c", _GRAMMARS, limit=DETECT_TIMEOUT)).split()
            self.versions = [v for v in KNOWN_VERSIONS if v in grammars]
            if not self.versions:
                raise EngineUnavailable(
                    f"{self.executable} parses none of WDL {', '.join(KNOWN_VERSIONS)}"
                )
        return EngineInfo(
            name=self.name,
            version=words[-1].removeprefix("v"),
            workflow_type=self.workflow_type,
            workflow_type_versions=list(self.versions),
        )

    def validate(self, request: RunRequest, env: ComputeEnv | None = None) -> None:
        if request.workflow_type_version not in self.versions:
            raise InvalidRequest(
                "workflow_type_version",
                f"{request.workflow_type_version!r} is not supported for WDL; supported: "
                + ", ".join(self.versions),
            )

    def prepare(self, run: Run, rundir: RunDir, site: Site | None = None) -> Launch:
        site = site or Site.local(rundir)
        request = run.request
        workflow = workflow_argument(request.workflow_url, rundir, site)
        own = rundir.support / "miniwdl"
        own.mkdir(parents=True, exist_ok=True)
        inputs = own / "inputs.json"
        inputs.write_text(json.dumps(request.workflow_params, indent=2) + "\n")
        there = site.path(rundir, own.absolute())
        work = site.path(rundir, rundir.work.absolute())
        (own / "miniwdl.cfg").write_text(
            _config(site.root, work, site.containers, site.container_network)
        )
        argv = [
            site.executable(self.name, self.executable),
            "run",
            workflow,
            "--input",
            str(there / "inputs.json"),
            "--dir",
            f"{work}/.",  # "/.": this folder itself, not a new one inside it
            "--log-json",
            "--error-json",  # on stdout, where the outputs JSON goes otherwise
            "--no-color",
        ]
        env = {
            "MINIWDL_CFG": str(there / "miniwdl.cfg"),
            "PYTHONUNBUFFERED": "1",
            "HOME": str(work),  # nothing of the run's in the server's home folder
        }
        if site.containers == containers.PODMAN:
            env |= containers.write_conf(rundir, site)
        return Launch(argv=argv, cwd=site.root / "attachments", env=env)

    # --- reading what the run left -------------------------------------------------------

    def progress(self, rundir: RunDir) -> list[Task]:
        """Tasks from miniwdl's JSON log; only what was added since the last call is read."""
        return self._tails.read(
            rundir,
            rundir.stderr,
            lambda log: [call.task(rundir, log.root) for call in log.calls.values()],
            [],
        )

    def outputs(self, rundir: RunDir, files: RunFiles | None = None) -> dict[str, Any]:
        """miniwdl's outputs JSON (its stdout), names without the workflow's prefix, each file
        inside the run folder a File object with a ``run:`` location."""
        f = open_inside(rundir.root, rundir.stdout)
        if f is None:
            return {}
        try:
            with f:
                printed = json.loads(f.read())
        except ValueError:
            return {}
        outputs = printed.get("outputs") if isinstance(printed, dict) else None
        if not isinstance(outputs, dict):
            return {}
        where = local_files(rundir, files)
        return {
            key.partition(".")[2] or key: _references(value, where)
            for key, value in outputs.items()
        }

    def failure_notes(self, rundir: RunDir) -> list[str]:
        """What miniwdl said went wrong: an input it refused (named as in
        ``workflow_params``), a task's exit status with the end of its stderr, a task that
        names a container where the environment has none."""
        try:
            text = rundir.stderr.read_text(errors="replace")[-256 * 1024 :]
        except FileNotFoundError:
            return []
        notes: list[str] = []
        plain: list[str] = []  # miniwdl's plain-text paragraphs (refused inputs)
        for line in [*text.splitlines(), ""]:
            record = _record(line)
            if record is None and line.strip():
                plain.append(line.strip())
                continue
            said = " ".join(plain)
            plain = []
            if any(word in said for word in ("input", "Input", "file_io.root")):
                notes.append(_named(rundir, said))
            if record is None:
                continue
            if record.get("levelno", 0) < 40 or record.get("source") != "miniwdl-run":
                continue
            message = str(record.get("message", ""))
            if "exit_status" in record:
                message = f"{message} ({_call_of(record)})"
                stderr = _tail(rundir, record.get("stderr_file"))
                if stderr:
                    message += "; its stderr ends with:\n" + stderr
            elif record.get("error") in ("InputError", "ValidationError", "ReadSourceError"):
                message = f"workflow_params or workflow: {message}"
            notes.append(message)
        return list(dict.fromkeys(notes))


# --- the run's configuration ---------------------------------------------------------------


def _config(root: PurePosixPath, work: PurePosixPath, kind: str, network: bool) -> str:
    """miniwdl's configuration for one run (``MINIWDL_CFG``): Spindle's task runner, no
    default image, inputs only from inside the run folder, caches off."""
    return f"""\
# Written by Spindle for this run.
[scheduler]
container_backend = {BACKEND}

[task_runtime]
# no image unless a task names one: then it runs on the host
defaults = {{}}

[file_io]
root = {root}

[download_cache]
put = false
get = false

[call_cache]
put = false
get = false
dir = {work}/.call_cache

[spindle]
containers = {kind}
network = {"true" if network else "false"}
downloads = {work}/_downloads
"""


# --- the structured log ----------------------------------------------------------------------


@dataclass
class _Call:
    id: str
    name: str
    dir: str
    start: datetime | None
    end: datetime | None = None
    state: State = State.RUNNING
    exit_code: int | None = None
    system_logs: list[str] = field(default_factory=list)

    def task(self, rundir: RunDir, there: str = "") -> Task:
        folder = _inside(rundir, self.dir, there)
        cmd: list[str] = []
        stdout = stderr = None
        if folder is not None:
            command = open_inside(rundir.root, rundir.root / folder / "command")
            if command is not None:
                with command:
                    cmd = [command.read().decode(errors="replace")]
            stdout = LogSpan((folder / "stdout.txt").as_posix())
            stderr = LogSpan((folder / "stderr.txt").as_posix())
        return Task(
            id=self.id,
            name=self.name,
            state=self.state,
            cmd=cmd,
            start_time=self.start,
            end_time=self.end,
            exit_code=self.exit_code,
            stdout=stdout,
            stderr=stderr,
            system_logs=list(self.system_logs),
        )


@dataclass
class _Log:
    inode: int
    offset: int = 0
    rest: bytes = b""
    calls: dict[str, _Call] = field(default_factory=dict)
    #: the run folder where miniwdl ran (a cluster's), from its ``workflow start`` record
    root: str = ""

    def feed(self, data: bytes) -> None:
        self.offset += len(data)
        lines = (self.rest + data).split(b"\n")
        self.rest = lines.pop()
        for line in lines:
            record = _record(line.decode(errors="replace"))
            if record is not None:
                self._record(record)

    def _record(self, record: dict[str, Any]) -> None:
        source = str(record.get("source", ""))
        folder = record.get("dir")
        if record.get("message") == "workflow start" and isinstance(folder, str):
            self.root = os.path.dirname(folder.rstrip("/").removesuffix("/."))
        _, marker, call_id = source.rpartition(".t:")
        if not marker:
            return
        at = _time(record.get("timestamp"))
        message = record.get("message")
        call = self.calls.get(call_id)
        if message == "task setup":
            self.calls[call_id] = _Call(
                call_id, str(record.get("name", call_id)), str(record.get("dir", "")), at
            )
            return
        if call is None:
            return
        if message == "done":
            call.state, call.end = State.COMPLETE, at
            call.exit_code = 0 if call.exit_code is None else call.exit_code
        elif record.get("levelno", 0) >= 40:
            call.end = at
            call.state = State.EXECUTOR_ERROR
            if isinstance(record.get("exit_status"), int):
                call.exit_code = record["exit_status"]
            if record.get("error") == "Terminated":
                call.state = State.CANCELED
            call.system_logs.append(str(record.get("message", "")))


def _interpreter(executable: str) -> str:
    """The Python of a script's ``#!`` line ("" if it has none)."""
    path = shutil.which(executable) or executable
    try:
        with open(path, "rb") as f:
            first = f.readline(512)
    except OSError:
        return ""
    if not first.startswith(b"#!"):
        return ""
    words = first[2:].decode(errors="replace").split()
    if not words:
        return ""
    if os.path.basename(words[0]) == "env" and len(words) > 1:
        return shutil.which(words[1]) or ""
    return words[0] if "python" in os.path.basename(words[0]) else ""


def _record(line: str) -> dict[str, Any] | None:
    if not line.startswith("{"):
        return None
    try:
        record = json.loads(line)
    except ValueError:
        return None
    return record if isinstance(record, dict) else None


def _time(value: Any) -> datetime | None:
    if isinstance(value, int | float):
        return datetime.fromtimestamp(value, UTC)
    return None


def _inside(rundir: RunDir, path: str, there: str = "") -> PurePosixPath | None:
    """``path`` (as miniwdl printed it, where it ran: ``there``) relative to the run folder,
    or None."""
    if not path:
        return None
    for root in (str(rundir.root.absolute()), os.path.realpath(rundir.root), there):
        if root and path.startswith(root + "/"):
            return PurePosixPath(path.removeprefix(root + "/"))
    return None


def _named(rundir: RunDir, said: str) -> str:
    """miniwdl's refusal of an input, with the input named: the one of ``workflow_params``
    holding the value it quotes (`like this')."""
    said = re.sub(r"the configured `file_io.root' directory `[^']*'", "the run folder", said)
    try:
        params = json.loads((rundir.support / "miniwdl" / "inputs.json").read_text())
    except (OSError, ValueError):
        params = {}
    for quoted in re.findall(r"`([^`']+)'", said):
        for name, value in params.items() if isinstance(params, dict) else ():
            if quoted in _strings(value) or quoted.endswith("." + name) or quoted == name:
                return f"input {name!r} of workflow_params: {said}"
    return f"workflow_params: {said}"


def _call_of(record: dict[str, Any]) -> str:
    folder = str(record.get("from_dir") or record.get("dir") or "")
    return f"task {os.path.basename(folder)}, exit status {record['exit_status']}"


def _tail(rundir: RunDir, path: Any) -> str:
    rel = _inside(rundir, path) if isinstance(path, str) else None
    if rel is None:
        return ""
    f = open_inside(rundir.root, rundir.root / rel)
    if f is None:
        return ""
    with f:
        lines = f.read()[-8192:].decode(errors="replace").splitlines()
    return "\n".join(lines[-STDERR_LINES:])


def _strings(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, list):
        return [s for item in value for s in _strings(item)]
    if isinstance(value, dict):
        return [s for item in value.values() for s in _strings(item)]
    return []


def _references(value: Any, files: RunFiles) -> Any:
    """A copy of a WDL output value where each string naming a file or folder inside the
    run folder is a File/Directory object with a ``run:`` location (a link out of the run
    folder is left out: None)."""
    if isinstance(value, list):
        return [_references(item, files) for item in value]
    if isinstance(value, dict):
        return {key: _references(item, files) for key, item in value.items()}
    if not isinstance(value, str) or not value.startswith("/"):
        return value
    rel = files.ref_of(value)
    if rel is None:
        return value
    if files.leads_out(rel):
        return None
    stat = files.stat(rel)
    if stat is None:
        return value
    location = f"{RUN_FILE_SCHEME}{stat.path.as_posix()}"
    if stat.is_dir:
        return {"class": "Directory", "basename": stat.path.name, "location": location}
    return {"class": "File", "basename": stat.path.name, "size": stat.size, "location": location}
