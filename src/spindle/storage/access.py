"""The storage seam: reading one file of a run, for a download, a page or a link in a
message, goes through :class:`RunStorage`, which answers either a file on this host
(:class:`LocalFile`) or a time-limited URL to send the reader to (:class:`SignedURL`).
Routes serve either answer and never assume a local path, so storage that serves files by
URL (S3, a cloud backend's outputs) plugs in here without touching them.

:class:`FolderStorage` is the run folder under ``data_dir``: a run that ran in a compute
environment elsewhere (a cluster) has the file fetched from there into the local folder
when asked for: on every request while the run is active, once when it has ended.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path, PurePosixPath
from typing import Any, Protocol, runtime_checkable

from spindle.domain import Run
from spindle.errors import NotFound, Unreachable
from spindle.storage.files import FileSource
from spindle.storage.rundir import RunDir


@dataclass(frozen=True)
class LocalFile:
    """The file is on this host: serve it."""

    path: Path

    @property
    def name(self) -> str:
        return self.path.name


@dataclass(frozen=True)
class SignedURL:
    """The file is elsewhere: send the reader to ``url``, valid until ``expires_at``."""

    url: str
    expires_at: datetime
    name: str


FileAnswer = LocalFile | SignedURL


@dataclass(frozen=True)
class Removed:
    """What :meth:`RunStorage.remove` removed."""

    files: int = 0
    bytes: int = 0

    def __add__(self, other: Removed) -> Removed:
        return Removed(self.files + other.files, self.bytes + other.bytes)


@runtime_checkable
class URLSource(Protocol):
    """A file source whose files can be linked to rather than fetched (a managed service's
    outputs in S3): :meth:`link` gives a presigned URL for ``rel``, or None when that file
    is not one of its own (then it is fetched or read as any other)."""

    async def link(self, handle: Mapping[str, Any], rel: PurePosixPath) -> SignedURL | None: ...


class RunStorage(ABC):
    @abstractmethod
    async def open(self, run: Run, path: str) -> FileAnswer:
        """The file at ``path`` in ``run``'s folder (InvalidPath if it leaves the folder,
        NotFound if there is none, Unreachable if it is out of reach now)."""

    async def remove(self, run: Run, *, work_only: bool = False) -> Removed:
        """Remove ``run``'s files (DELETE /runs/{id}, retention): all of them, or with
        ``work_only`` its work folder alone (outputs and logs kept). Removing what is gone
        already is no error. A storage that keeps copies elsewhere (S3) removes those too:
        extend this (call the folder storage's, then remove the objects)."""
        raise NotImplementedError(f"{type(self).__name__} cannot remove a run's files")


class FolderStorage(RunStorage):
    """Run folders under ``data_dir``; ``sources`` fetch files of runs whose folders are in
    a compute environment elsewhere, by environment name."""

    def __init__(self, data_dir: Path, sources: Mapping[str, FileSource] | None = None) -> None:
        self.data_dir = data_dir
        self.sources = dict(sources or {})

    async def open(self, run: Run, path: str) -> FileAnswer:
        rundir = RunDir.for_run(self.data_dir, run.id)
        target = rundir.resolve(path)
        source = self.sources.get(run.compute_env)
        fetched = run.state.terminal and await asyncio.to_thread(target.is_file)
        if source is not None and run.handle is not None and not fetched:
            rel = PurePosixPath(target.relative_to(rundir.root.resolve()).as_posix())
            if isinstance(source, URLSource):
                signed = await source.link(run.handle, rel)
                if signed is not None:
                    return signed
            try:
                await source.fetch(run.handle, rel, target)
            except Unreachable:
                if not await asyncio.to_thread(target.is_file):
                    raise  # 503: the file is on a compute environment out of reach now
            except NotFound:
                raise NotFound(f"run {run.id!r} has no file {path!r}") from None
        if not await asyncio.to_thread(target.is_file):
            raise NotFound(f"run {run.id!r} has no file {path!r}")
        return LocalFile(target)

    async def remove(self, run: Run, *, work_only: bool = False) -> Removed:
        rundir = RunDir.for_run(self.data_dir, run.id)
        return await asyncio.to_thread(remove_tree, rundir.work if work_only else rundir.root)


def remove_tree(root: Path) -> Removed:
    """Remove the folder ``root`` (links are removed, never followed), counting its files
    and their bytes."""
    counted = Removed()
    if root.is_symlink():  # a link the workflow made: removed, never followed
        root.unlink()
        return counted
    if not root.is_dir():
        return counted
    for top, _dirs, files in os.walk(root):
        for name in files:
            with contextlib.suppress(OSError):
                size = os.lstat(os.path.join(top, name)).st_size
                counted = counted + Removed(1, size)
    shutil.rmtree(root, ignore_errors=True)
    return counted
