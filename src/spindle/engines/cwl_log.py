"""Reading cwltool's log as it grows: one task per job (or per job-less step).

cwltool reports nothing machine-readable while it runs, so :class:`CwltoolLog` parses the
records it writes on stderr (``--timestamps --disable-color`` under ``TZ=UTC``) incrementally:
each call reads only the bytes added since the last one and keeps a half-written last line
for the next.
"""

from __future__ import annotations

import re
import shlex
import signal
from dataclasses import dataclass, field
from datetime import UTC, datetime

from spindle.domain import LogSpan, State, Task

#: One log record's first line: ``[2026-01-02 03:04:05] INFO message`` (time optional).
_RECORD = re.compile(
    r"^(?:\[(?P<at>\d{4}-\d\d-\d\d \d\d:\d\d:\d\d)\] )?"
    r"(?P<level>DEBUG|INFO|WARNING|ERROR|CRITICAL) (?P<msg>.*)$"
)
#: After ``[job name]``: ``<job output folder>$ <argv, shell-quoted, one argument a line>``
_JOB_CMD = re.compile(r"^(?P<outdir>[^$]*)\$ (?P<cmd>.*)$")
_SUBJECT = re.compile(r"^\[(?P<kind>job|step|workflow) (?P<name>[^\]]*)\] (?P<what>.*)$")
_EXITED = re.compile(r"^exited with status: (?P<code>-?\d+)$")
_SIGNALLED = re.compile(r"^was terminated by signal: (?P<signal>\w+)$")
_SCATTER_SUFFIX = re.compile(r"^(?P<stem>.+)_\d+$")
_ANSI = re.compile(r"\x1b\[[0-9;]*m")
#: cwltool puts each argument of a logged command on its own line, joined by this.
_ARG_BREAK = " \\\n    "
#: Continuation lines of one ERROR record kept in a task's system_logs.
_MAX_ERROR_LINES = 20


@dataclass
class _LogEntry:
    """A task's system log entry that an ERROR record's further lines are added to."""

    entries: list[str]
    index: int
    lines: int = 0

    def add(self, line: str) -> None:
        if self.lines < _MAX_ERROR_LINES:
            self.entries[self.index] += "\n" + line
            self.lines += 1


@dataclass
class _Job:
    """One cwltool job (a CommandLineTool execution) as the log describes it so far."""

    id: str
    name: str
    offset: int
    start_time: datetime | None
    command: str
    status: str | None = None
    exit_code: int | None = None
    end_time: datetime | None = None
    end_offset: int | None = None
    system_logs: list[str] = field(default_factory=list)


@dataclass
class _Step:
    """One workflow step as the log describes it so far."""

    name: str
    offset: int
    start_time: datetime | None
    status: str | None = None
    end_time: datetime | None = None
    end_offset: int | None = None
    has_jobs: bool = False
    is_workflow: bool = False
    system_logs: list[str] = field(default_factory=list)


@dataclass
class CwltoolLog:
    """An incremental reader of cwltool's log: :meth:`feed` it bytes as the file grows.

    Tasks are jobs: one per CommandLineTool execution, with cwltool's job name as id. cwltool
    makes job names unique within a run: a step's job is named after the step, a scattered
    step's jobs are ``name``, ``name_2``, ...; a lone CommandLineTool's job is named after
    its file (``count.cwl``). A task's name is its step's name (so scatter jobs share it).
    A step that runs no job of its own (an ExpressionTool, or a step that failed before
    making its job) becomes a task with its step name as id once it has finished: only then
    is it known not to be a sub-workflow (``[workflow name]``) or skipped, so a task, once
    reported, is reported on every later call.

    A task's stdout and stderr are the same byte range of the run's stderr: cwltool passes a
    tool's uncaptured output through to its own stderr, between the job's command line and
    its ``completed`` line. The range is open-ended (``end`` None) until the job completes.
    With ``--parallel`` jobs interleave, and a range holds other jobs' lines too.
    """

    inode: int = 0
    #: bytes consumed so far: always just after a complete line
    offset: int = 0
    jobs: dict[str, _Job] = field(default_factory=dict)
    steps: dict[str, _Step] = field(default_factory=dict)
    #: the job whose logged command continues on the next line
    _pending: _Job | None = None
    #: the ERROR record whose details continue on the next line
    _error: _LogEntry | None = None

    def feed(self, data: bytes) -> None:
        """Parse the complete lines in ``data`` (which starts at :attr:`offset`); a partly
        written last line is left for the next call."""
        start = 0
        while (end := data.find(b"\n", start)) >= 0:
            text = data[start:end].decode(errors="replace").rstrip("\r")
            self._line(text, self.offset + start, self.offset + end + 1)
            start = end + 1
        self.offset += start

    def _line(self, text: str, offset: int, end: int) -> None:
        if "\x1b" in text:
            text = _ANSI.sub("", text)
        record = _RECORD.match(text)
        if record is None:
            self._continuation(text)
            return
        self._pending = self._error = None
        at = _parse_time(record["at"])
        subject = _SUBJECT.match(record["msg"])
        if subject is None:
            return
        kind, name, what = subject["kind"], subject["name"], subject["what"]
        if kind == "job":
            self._job_line(name, what, record["level"], at, offset, end)
        elif kind == "step":
            self._step_line(name, what, record["level"], at, offset, end)
        elif name:  # "[workflow ]" is the top-level workflow; others are sub-workflow steps
            step = self._step_of(name)
            if step is not None:
                step.is_workflow = True

    def _continuation(self, text: str) -> None:
        """A line that is not a record: more of a job's command, more of an error, or a
        tool's own output (which stays in the log, found through the job's byte range)."""
        if self._pending is not None:
            self._pending.command += "\n" + text
            if _command_complete(self._pending.command):
                self._pending = None
        elif self._error is not None:
            self._error.add(text)

    def _job_line(
        self, name: str, what: str, level: str, at: datetime | None, offset: int, end: int
    ) -> None:
        command = _JOB_CMD.match(what)
        if command is not None and name not in self.jobs:
            self._job_started(name, command["cmd"], at, offset)
            return
        job = self.jobs.get(name)
        if job is None:
            return
        if what.startswith("completed "):
            job.status = what.removeprefix("completed ").strip()
            job.end_time, job.end_offset = at, end
            if job.status == "success" and job.exit_code is None:
                job.exit_code = 0
        elif exited := _EXITED.match(what):
            job.exit_code = int(exited["code"])
        elif signalled := _SIGNALLED.match(what):
            job.exit_code = _signal_exit_code(signalled["signal"])
        self._log(job.system_logs, level, what)

    def _job_started(self, name: str, command: str, at: datetime | None, offset: int) -> None:
        """A job's command line: the job starts (as a task named after its step)."""
        step = self._step_of(name)
        if step is not None and step.end_offset is None:  # a finished step stays as it was
            step.has_jobs = True
        job = _Job(name, step.name if step else name, offset, at, command)
        self.jobs[name] = job
        self._pending = None if _command_complete(command) else job

    def _step_line(
        self, name: str, what: str, level: str, at: datetime | None, offset: int, end: int
    ) -> None:
        step = self.steps.setdefault(name, _Step(name, offset, at))
        if what == "will be skipped":
            step.status = "skipped"
        elif what.startswith("completed "):
            status = what.removeprefix("completed ").strip()
            if step.status in (None, "success", "skipped"):
                step.status = status
            step.end_time, step.end_offset = at, end
        elif what.startswith("Cannot make job"):
            step.status = "permanentFail"
            step.end_time, step.end_offset = at, end
        self._log(step.system_logs, level, what)

    def _log(self, entries: list[str], level: str, what: str) -> None:
        """Keep a task's warnings and errors (but not ``completed permanentFail``: the state
        says it); an error's details follow on lines of their own (``Job error:`` then the
        reason), and are kept with it."""
        if level in ("WARNING", "ERROR", "CRITICAL") and not what.startswith("completed "):
            entries.append(f"{level} {what}")
            if level != "WARNING":
                self._error = _LogEntry(entries, len(entries) - 1)

    def _step_of(self, name: str) -> _Step | None:
        """The step a job or sub-workflow belongs to: the one it is named after, or, for a
        scatter job ``name_2``, the step ``name``."""
        if name in self.steps:
            return self.steps[name]
        stem = _SCATTER_SUFFIX.match(name)
        return self.steps.get(stem["stem"]) if stem else None

    def tasks(self, log_path: str) -> list[Task]:
        """Every task so far, in the order it appeared in the log."""
        found = [(job.offset, _job_task(job, log_path)) for job in self.jobs.values()]
        found += [
            (step.offset, _step_task(step, log_path))
            for step in self.steps.values()
            if step.status not in (None, "skipped")
            and not step.has_jobs
            and not step.is_workflow
            and step.name not in self.jobs
        ]
        return [task for _, task in sorted(found, key=lambda pair: pair[0])]


def _job_task(job: _Job, log_path: str) -> Task:
    span = LogSpan(log_path, job.offset, job.end_offset)
    return Task(
        id=job.id,
        name=job.name,
        state=_state(job.status),
        cmd=split_command(job.command),
        start_time=job.start_time,
        end_time=job.end_time,
        exit_code=job.exit_code,
        stdout=span,
        stderr=span,
        system_logs=list(job.system_logs),
    )


def _step_task(step: _Step, log_path: str) -> Task:
    span = LogSpan(log_path, step.offset, step.end_offset)
    return Task(
        id=step.name,
        name=step.name,
        state=_state(step.status),
        start_time=step.start_time,
        end_time=step.end_time,
        stdout=span,
        stderr=span,
        system_logs=list(step.system_logs),
    )


def _state(status: str | None) -> State:
    if status is None:
        return State.RUNNING
    return State.COMPLETE if status == "success" else State.EXECUTOR_ERROR


def _command_complete(text: str) -> bool:
    """Whether a logged command has all its lines: it does not end with cwltool's argument
    break and its quotes are balanced (a quoted argument may hold newlines)."""
    if text.endswith(" \\"):
        return False
    try:
        shlex.split(text.replace(_ARG_BREAK, " "))
    except ValueError:
        return False
    return True


def split_command(text: str) -> list[str]:
    """The argv cwltool logged for a job, shell-unquoted, redirections (``<``, ``>``,
    ``2>``) kept as words. An incomplete command is split on whitespace."""
    joined = text.replace(_ARG_BREAK, " ").removesuffix(" \\")
    try:
        return shlex.split(joined)
    except ValueError:
        return joined.split()


def _parse_time(text: str | None) -> datetime | None:
    """A record's time: cwltool prints local time, which is UTC because the launch sets TZ."""
    if text is None:
        return None
    return datetime.strptime(text, "%Y-%m-%d %H:%M:%S").replace(tzinfo=UTC)


def _signal_exit_code(name: str) -> int | None:
    """A signal's negated number, as Python reports a process a signal ended."""
    try:
        return -int(signal.Signals[name])
    except KeyError:
        return None
