"""What the templates show, computed from domain records: durations, times, output files,
pretty-printed requests. No I/O here."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import quote

from spindle.domain import State
from spindle.limits import clip_depth
from spindle.storage.rundir import RUN_FILE_SCHEME

API = "/ga4gh/wes/v1"

#: the states a filter offers, in the order a run goes through them
FILTER_STATES = (
    State.QUEUED,
    State.INITIALIZING,
    State.RUNNING,
    State.CANCELING,
    State.COMPLETE,
    State.EXECUTOR_ERROR,
    State.SYSTEM_ERROR,
    State.CANCELED,
)


def api_url(run_id: str, *parts: str) -> str:
    tail = "/".join(quote(p, safe="") for p in parts)
    return f"{API}/runs/{quote(run_id, safe='')}" + (f"/{tail}" if tail else "")


def run_url(run_id: str, *parts: str) -> str:
    tail = "/".join(quote(p, safe="") for p in parts)
    return f"/runs/{quote(run_id, safe='')}" + (f"/{tail}" if tail else "")


def file_url(run_id: str, path: str) -> str:
    return api_url(run_id, "files") + "/" + quote(path)


def seconds_text(total: float) -> str:
    """``4 s``, ``2 m 05 s``, ``3 h 02 m``, ``2 d 04 h``."""
    s = max(0, int(total))
    if s < 60:
        return f"{s} s"
    m, s = divmod(s, 60)
    if m < 60:
        return f"{m} m {s:02d} s"
    h, m = divmod(m, 60)
    if h < 24:
        return f"{h} h {m:02d} m"
    d, h = divmod(h, 24)
    return f"{d} d {h:02d} h"


def duration(start: datetime | None, end: datetime | None, now: datetime) -> str:
    """How long a run or task ran (so far, while it runs); empty before it started."""
    if start is None:
        return ""
    return seconds_text(((end or now) - start).total_seconds())


def when(value: datetime | None) -> str:
    """A UTC time as people read it: ``2026-11-30 09:25:13``."""
    return value.strftime("%Y-%m-%d %H:%M:%S") if value else ""


def iso(value: datetime | None) -> str:
    return value.isoformat().replace("+00:00", "Z") if value else ""


def ago(value: datetime | None, now: datetime) -> str:
    if value is None:
        return ""
    return seconds_text((now - value).total_seconds()) + " ago"


def pretty_json(value: Any) -> str:
    return json.dumps(clip_depth(value), indent=2, sort_keys=False, ensure_ascii=False)


def size_text(size: object) -> str:
    if not isinstance(size, int):
        return ""
    units = ("B", "KiB", "MiB", "GiB", "TiB")
    amount = float(size)
    for unit in units:
        if amount < 1024 or unit == units[-1]:
            return f"{size} B" if unit == "B" else f"{amount:.1f} {unit}"
        amount /= 1024
    return f"{size} B"  # not reached


@dataclass(frozen=True)
class OutputFile:
    name: str
    path: str
    size: str
    url: str
    #: where in the output object it was found (``counts``, ``files[2]``)
    key: str


def output_files(run_id: str, outputs: Any) -> list[OutputFile]:
    """Every file of an output object that lives in the run folder, with its download URL."""
    return list(_walk(run_id, outputs, ""))


def _walk(run_id: str, value: Any, key: str) -> Iterator[OutputFile]:
    if isinstance(value, dict):
        loc = value.get("location")
        if (
            value.get("class") == "File"
            and isinstance(loc, str)
            and loc.startswith(RUN_FILE_SCHEME)
        ):
            path = loc.removeprefix(RUN_FILE_SCHEME)
            shown = value.get("path")
            if not isinstance(shown, str) or shown.startswith("/"):
                shown = path  # never show a server-side absolute path
            yield OutputFile(
                name=str(value.get("basename") or path.rsplit("/", 1)[-1]),
                path=shown,
                size=size_text(value.get("size")),
                url=file_url(run_id, path),
                key=key,
            )
        for k, v in value.items():
            if isinstance(v, dict | list):
                yield from _walk(run_id, v, f"{key}.{k}" if key else str(k))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from _walk(run_id, v, f"{key}[{i}]")


def workflow_name(url: str) -> str:
    """The part of a workflow URL worth showing in a table: its last path segment."""
    bare = url.split("#", 1)[0].rstrip("/")
    return bare.rsplit("/", 1)[-1] or url
