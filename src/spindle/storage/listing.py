"""A run's files, listed for people: every regular file inside its folder (and those whose
only copy is now in S3), grouped and in a stable order to page through.

Groups, by where a file is: ``inputs`` (``attachments/``: the workflow, its files, the
staged ``s3://`` inputs), ``outputs`` (``outputs/``, and any file the run's outputs name),
``logs`` (``logs/``), ``work`` (``work/``: the engine's working folder) and ``other``
(Spindle's own files: ``params.json``, ``support/``, the S3 manifest). Links are not
followed out of the folder: a link whose target is outside it is not listed.
"""

from __future__ import annotations

import os
import stat as stat_
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from spindle.storage.rundir import RUN_FILE_SCHEME

Group = Literal["inputs", "outputs", "logs", "work", "other"]
GROUPS: tuple[Group, ...] = ("inputs", "outputs", "logs", "work", "other")
_FOLDERS: dict[str, Group] = {
    "attachments": "inputs",
    "outputs": "outputs",
    "logs": "logs",
    "work": "work",
}


@dataclass(frozen=True)
class ListedFile:
    path: str
    group: Group
    size: int
    modified: datetime
    #: where the file is: ``local`` (the run folder) or ``s3`` (its only copy is in S3)
    stored: Literal["local", "s3"] = "local"


def output_paths(outputs: Any) -> set[str]:
    """The run folder paths the run's outputs name (``location: run:<path>``, any depth)."""
    found: set[str] = set()

    def walk(value: Any) -> None:
        if isinstance(value, dict):
            loc = value.get("location")
            if isinstance(loc, str) and loc.startswith(RUN_FILE_SCHEME):
                found.add(loc.removeprefix(RUN_FILE_SCHEME))
            for item in value.values():
                walk(item)
        elif isinstance(value, list):
            for item in value:
                walk(item)

    walk(outputs)
    return found


def group_of(path: str, outputs: Iterable[str] = ()) -> Group:
    if path in set(outputs):
        return "outputs"
    return _FOLDERS.get(path.split("/", 1)[0], "other")


def _inside(root: Path, path: Path) -> os.stat_result | None:
    """The stat of ``path`` when it is a regular file inside ``root`` (links followed)."""
    try:
        st = path.lstat()
        if stat_.S_ISLNK(st.st_mode):
            if not Path(os.path.realpath(path)).is_relative_to(root):
                return None
            st = path.stat()
    except OSError:
        return None
    return st if stat_.S_ISREG(st.st_mode) else None


def walk(root: Path) -> dict[str, os.stat_result]:
    """Every regular file inside ``root`` by its relative path (blocking). Folders that are
    links are not entered (their files are listed where they really are, if inside)."""
    real = root.resolve()
    found: dict[str, os.stat_result] = {}
    for folder, dirs, files in os.walk(real, followlinks=False):
        here = Path(folder)
        dirs.sort()
        for name in files + [d for d in dirs if (here / d).is_symlink()]:
            st = _inside(real, here / name)
            if st is not None:
                found[(here / name).relative_to(real).as_posix()] = st
    return found


def list_files(
    root: Path,
    *,
    outputs: Iterable[str] = (),
    remote: Mapping[str, Mapping[str, Any]] | None = None,
    group: Group | None = None,
    after: str | None = None,
    limit: int,
) -> tuple[list[ListedFile], str | None]:
    """One page of the files in the run folder ``root`` (blocking): at most ``limit``, in
    path order, after the path ``after``, only ``group`` if given; and the path to give as
    ``after`` for the next page (None on the last). ``remote``: files whose copy is in S3
    (path → ``{"size", "modified"}``), listed when their local copy is gone."""
    named = set(outputs)
    local = walk(root) if root.is_dir() else {}
    entries: dict[str, ListedFile] = {}
    for path, st in local.items():
        entries[path] = ListedFile(
            path, group_of(path, named), st.st_size, datetime.fromtimestamp(st.st_mtime, UTC)
        )
    for path, info in (remote or {}).items():
        if path not in entries:
            entries[path] = ListedFile(
                path,
                group_of(path, named),
                int(info["size"]),
                datetime.fromisoformat(str(info["modified"])),
                stored="s3",
            )
    paths = sorted(p for p, e in entries.items() if group is None or e.group == group)
    if after is not None:
        paths = [p for p in paths if p > after]
    page = [entries[p] for p in paths[:limit]]
    more = len(paths) > limit
    return page, (page[-1].path if more and page else None)
