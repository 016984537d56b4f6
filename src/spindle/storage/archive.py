"""A run's logs as one zip, streamed as it is made (``GET /runs/{id}/logs/archive``).

Built with zipstream-ng: members are added as paths and generators and read only while the
response is sent, so neither the archive nor a member is ever held in memory (or written to
disk). It was chosen over stream-zip because it takes files by path and generators alike,
computes the archive's size up front when it can, and is a small, maintained, dependency-free
library; stream-zip needs every member's metadata and chunks fed by hand.

Members:

- ``run.json``: the run's state, times, exit code, command and system logs;
- ``logs/...``: every file in the run's ``logs/`` folder (the engine's stdout and stderr,
  its event files, Snakemake's own ``.snakemake/log`` copies if any);
- ``tasks/<task id>/<stream>.log``: each task's share of the engine output;
- ``reports/...``: engine reports the run made (Snakemake's ``--report`` output,
  cwltool's ``--provenance`` research object, engine parameter ``provenance``), where
  present.

Every file is opened through :func:`~spindle.storage.files.open_inside`, so a link a workflow
left in its folder cannot put a file from outside into the archive.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from zipstream import ZIP_DEFLATED, ZipStream

from spindle.domain import Run, Task
from spindle.storage.files import open_inside
from spindle.storage.listing import walk
from spindle.storage.rundir import RunDir

CHUNK = 1 << 16
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]|^\.+$")
#: Engine reports, by the run folder path they are found at -> their place in the archive.
REPORTS = {
    "work/report.html": "reports/snakemake-report.html",
    "work/report.zip": "reports/snakemake-report.zip",
}
#: Folders of reports, copied whole (cwltool's ``--provenance`` research object).
REPORT_FOLDERS = {"work/provenance/": "reports/cwltool-provenance/"}


def read_inside(root: Path, path: Path, start: int = 0, end: int | None = None) -> Iterator[bytes]:
    """The bytes of ``path`` from ``start`` to ``end``, if it is a file inside ``root``."""
    f = open_inside(root, path)
    if f is None:
        return
    with f:
        f.seek(start)
        left = None if end is None else max(0, end - start)
        while left is None or left > 0:
            chunk = f.read(CHUNK if left is None else min(CHUNK, left))
            if not chunk:
                return
            if left is not None:
                left -= len(chunk)
            yield chunk


def _summary(run: Run) -> bytes:
    def iso(when: datetime | None) -> str | None:
        return when.astimezone(UTC).isoformat() if when else None

    data: dict[str, Any] = {
        "run_id": run.id,
        "state": run.state.value,
        "workflow_type": run.request.workflow_type,
        "workflow_url": run.request.workflow_url,
        "engine": run.engine,
        "compute_env": run.compute_env,
        "submitted_at": iso(run.submitted_at),
        "start_time": iso(run.start_time),
        "end_time": iso(run.end_time),
        "exit_code": run.exit_code,
        "cmd": run.cmd,
        "system_logs": run.system_logs,
    }
    return (json.dumps(data, indent=2) + "\n").encode()


def members(run: Run, rundir: RunDir, tasks: Sequence[Task]) -> list[str]:
    """The archive's member names (blocking), in order."""
    return [name for name, _ in _plan(run, rundir, tasks)]


def _plan(run: Run, rundir: RunDir, tasks: Sequence[Task]) -> list[tuple[str, Any]]:
    root = rundir.root.resolve()
    present = walk(root) if root.is_dir() else {}
    plan: list[tuple[str, Any]] = [("run.json", lambda: iter([_summary(run)]))]
    for path in sorted(present):
        if path.startswith("logs/"):
            plan.append((path, lambda p=path: read_inside(root, root / p)))
        elif path in REPORTS:
            plan.append((REPORTS[path], lambda p=path: read_inside(root, root / p)))
        else:
            for folder, dest in REPORT_FOLDERS.items():
                if path.startswith(folder):
                    name = dest + path.removeprefix(folder)
                    plan.append((name, lambda p=path: read_inside(root, root / p)))
    for task in tasks:
        for stream, span in (("stdout", task.stdout), ("stderr", task.stderr)):
            if span is None or span.path not in present:
                continue
            name = f"tasks/{_UNSAFE.sub('_', task.id)}/{stream}.log"
            plan.append(
                (
                    name,
                    lambda s=span: read_inside(root, root / s.path, s.start or 0, s.end),
                )
            )
    return plan


def stream(run: Run, rundir: RunDir, tasks: Sequence[Task]) -> ZipStream:
    """The archive, made while it is read (iterate it for the bytes; blocking reads)."""
    zs = ZipStream(compress_type=ZIP_DEFLATED, sized=False)
    for name, data in _plan(run, rundir, tasks):
        zs.add(data(), arcname=name)
    return zs
