"""Spindle's Snakemake logger plugin: one JSON object per line for each job event.

This runs inside Snakemake's own environment (Snakemake >= 9), never in Spindle's: Spindle
puts the folder holding this package on ``PYTHONPATH`` and starts Snakemake with
``--logger spindle --logger-spindle-events-file PATH``. It must import nothing from Spindle.

Snakemake finds logger plugins by scanning importable *packages* named
``snakemake_logger_plugin_<name>`` (``pkgutil.iter_modules`` with ``ispkg``), which is why this
is a package and not a single module.

Two details of Snakemake 9 shape the code:

* Plugin handlers run on a ``QueueListener`` thread, some time after the record was made. The
  byte offsets of the run's stdout/stderr files must be read when the event happens, not when
  it is written out, or a fast job's output would land on the wrong side of an offset. So a
  filter on Snakemake's logger stamps each record in the thread that logs it.
* A failed job's exit code is not among the ``job_error`` fields. The job's ``error`` record,
  logged just before ``job_error`` in the same thread, carries it in its message
  (``... returned non-zero exit status 3.``); the stamping filter passes it on.

The handler does not write to a stream, so Snakemake keeps its usual log on stderr.
"""

import json
import logging
import os
import re
import stat
import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime
from logging import LogRecord
from typing import Any, Optional

from snakemake_interface_logger_plugins.base import LogHandlerBase
from snakemake_interface_logger_plugins.settings import LogHandlerSettingsBase

#: Attribute the stamping filter adds to every record it sees.
STAMP = "spindle_stamp"

#: How much of an ``error`` event's message is kept (tracebacks can be long).
MAX_MESSAGE = 4000

_EXIT_STATUS = re.compile(r"non-zero exit status (\d+)")
_SIGNAL = re.compile(r"died with <Signals\.\w+: (\d+)>")


@dataclass
class LogHandlerSettings(LogHandlerSettingsBase):
    # Snakemake turns these field types into argparse types at run time: it understands
    # ``typing.Optional`` but not ``str | None`` (which argparse would try to call), and
    # nothing in this module may use ``from __future__ import annotations``.
    events_file: Optional[str] = field(  # noqa: UP045
        default=None,
        metadata={
            "help": "File the JSON-lines job events are appended to (one object per line).",
            "required": True,
        },
    )


def _size(fd: int) -> int | None:
    """Bytes in the file behind ``fd``, or None when it is not a regular file (a terminal or
    a pipe has no offsets worth recording)."""
    try:
        st = os.fstat(fd)
    except OSError:
        return None
    return st.st_size if stat.S_ISREG(st.st_mode) else None


def exit_code_from_message(message: str) -> int | None:
    """The exit code in a failed shell command's error text; 128 + N for a signal, as shells
    report it; None when the text names none (a ``run:`` block's exception, missing output)."""
    found = _EXIT_STATUS.search(message)
    if found:
        return int(found.group(1))
    found = _SIGNAL.search(message)
    if found:
        return 128 + int(found.group(1))
    return None


def _event_name(record: LogRecord) -> str | None:
    event = getattr(record, "event", None)
    if event is None:
        return None
    return str(getattr(event, "value", event))


class _Stamp(logging.Filter):
    """Stamps each record, in the thread that logs it, with the sizes of stdout and stderr
    and (for ``job_error``) the exit code seen in that thread's preceding ``error`` record."""

    def __init__(self) -> None:
        super().__init__()
        self._local = threading.local()

    def filter(self, record: LogRecord) -> bool:
        event = _event_name(record)
        stamp: dict[str, Any] = {"stdout": _size(1), "stderr": _size(2)}
        if event == "error":
            self._local.exit_code = exit_code_from_message(record.getMessage())
        elif event == "job_error":
            stamp["exit_code"] = getattr(self._local, "exit_code", None)
            self._local.exit_code = None
        setattr(record, STAMP, stamp)
        return True


def _files(value: Any) -> list[str]:
    return [str(v) for v in value] if isinstance(value, (list, tuple)) else []


def _job_fields(record: LogRecord) -> dict[str, Any]:
    wildcards = getattr(record, "wildcards", None) or {}
    return {
        "jobid": getattr(record, "jobid", None),
        "rule_name": getattr(record, "rule_name", None),
        "wildcards": {str(k): str(v) for k, v in dict(wildcards).items()},
        "input": _files(getattr(record, "input", None)),
        "output": _files(getattr(record, "output", None)),
        "log": _files(getattr(record, "log", None)),
        "shellcmd": getattr(record, "shellcmd", None),
    }


def event_fields(event: str, record: LogRecord) -> dict[str, Any] | None:
    """The fields kept for one event, or None for events Spindle does not use."""
    if event == "workflow_started":
        return {
            "snakemake_version": getattr(record, "snakemake_version", None),
            "workflow_id": str(getattr(record, "workflow_id", "")),
            "snakefile": str(getattr(record, "snakefile_main", "")),
            "cwd": getattr(record, "cwd", None),
        }
    if event == "run_info":
        stats = getattr(record, "stats", None) or {}
        counts = {str(k): int(v) for k, v in dict(stats).items()}
        return {"stats": counts, "total": counts.get("total")}
    if event == "job_started":
        return {"jobs": [int(j) for j in getattr(record, "jobs", None) or []]}
    if event == "job_info":
        return _job_fields(record)
    if event == "job_finished":
        return {"jobid": getattr(record, "job_id", None)}
    if event == "job_error":
        fields = _job_fields(record)
        fields["exit_code"] = getattr(record, STAMP, {}).get("exit_code")
        return fields
    if event == "progress":
        return {"done": getattr(record, "done", None), "total": getattr(record, "total", None)}
    if event == "error":
        return {
            "exception": getattr(record, "exception", None),
            "message": record.getMessage()[:MAX_MESSAGE],
        }
    return None


def event_line(record: LogRecord) -> str | None:
    """One JSON line for a record, or None when the record is not an event Spindle uses."""
    event = _event_name(record)
    if event is None:
        return None
    fields = event_fields(event, record)
    if fields is None:
        return None
    stamp = getattr(record, STAMP, None) or {}
    line: dict[str, Any] = {
        "time": datetime.fromtimestamp(record.created, tz=UTC).isoformat(),
        "event": event,
        "stdout": stamp.get("stdout"),
        "stderr": stamp.get("stderr"),
    }
    line.update(fields)
    return json.dumps(line, default=str)


class LogHandler(LogHandlerBase):
    """Appends job events to the events file, flushing after each line so that Spindle,
    reading the file while the run goes on, never waits for a buffer."""

    def __post_init__(self) -> None:
        settings = self.settings
        if not isinstance(settings, LogHandlerSettings) or not settings.events_file:
            raise ValueError("the spindle logger needs --logger-spindle-events-file")
        # Open for the handler's lifetime; close() closes it.
        self._events = open(settings.events_file, "a", encoding="utf-8")  # noqa: SIM115
        self._stamp = _Stamp()
        self._logger = logging.getLogger("snakemake.logging")
        self._logger.addFilter(self._stamp)

    def emit(self, record: LogRecord) -> None:
        try:
            line = event_line(record)
            if line is not None:
                self._events.write(line + "\n")
                self._events.flush()
        except Exception:
            self.handleError(record)

    def close(self) -> None:
        self._logger.removeFilter(self._stamp)
        if not self._events.closed:
            self._events.close()
        super().close()

    @property
    def writes_to_stream(self) -> bool:
        # False keeps Snakemake's default stderr handler in place.
        return False

    @property
    def writes_to_file(self) -> bool:
        # True would make Snakemake list this file among its "Complete log(s)" and require a
        # ``baseFilename``; the events file is Spindle's, not a log for people.
        return False

    @property
    def has_filter(self) -> bool:
        # Our own (none): Snakemake's default filter would drop events under --quiet.
        return True

    @property
    def has_formatter(self) -> bool:
        return True

    @property
    def needs_rulegraph(self) -> bool:
        return False
