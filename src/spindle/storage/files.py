"""What an engine left in its run folder, wherever that folder is.

Engines read the files they report outputs from through :class:`RunFiles`: a run that ran on
this host is looked at directly (:class:`LocalFiles`); a run that ran on a cluster is looked
at through a listing its backend fetched once the run ended (:class:`ListedFiles`), so no
output is copied back just to be listed. Paths are relative to the run folder; nothing
outside it is ever reported.
"""

from __future__ import annotations

import contextlib
import os
import posixpath
import stat as stat_
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import IO, Any, Protocol

from spindle.storage.rundir import RunDir


@dataclass(frozen=True)
class FileStat:
    """A file or folder inside the run folder (``path`` relative to it, links resolved)."""

    path: PurePosixPath
    is_dir: bool
    size: int


def normal(rel: str | PurePosixPath) -> PurePosixPath | None:
    """``rel`` with ``.`` and ``..`` folded, or None if it is absolute, empty or leaves the
    folder it is relative to."""
    text = str(rel)
    if not text or text.startswith("/"):
        return None
    folded = posixpath.normpath(text)
    if folded == "." or folded == ".." or folded.startswith("../"):
        return None
    return PurePosixPath(folded)


def open_inside(root: Path, path: Path) -> IO[bytes] | None:
    """``path`` opened for reading if it is a regular file inside ``root`` once every link is
    followed, else None (also if it does not exist). The check is on the file actually
    opened (``/proc/self/fd``), so a link swapped in between a check and the open cannot
    lead out; a FIFO or device is never opened for reading (no blocking, no endless data)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        opened = Path(os.readlink(f"/proc/self/fd/{fd}"))
        real_root = root.resolve()
        if not opened.is_relative_to(real_root) or not stat_.S_ISREG(os.fstat(fd).st_mode):
            os.close(fd)
            return None
        os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")
    except OSError:
        with contextlib.suppress(OSError):
            os.close(fd)
        return None


class RunFiles(ABC):
    #: The run folder where the engine ran, as the engine saw it (its paths start with this).
    root: PurePosixPath

    @abstractmethod
    def stat(self, rel: str | PurePosixPath) -> FileStat | None:
        """The file or folder at ``rel``, or None if there is none or it leads outside the
        run folder (through ``..`` or a link)."""

    def leads_out(self, rel: PurePosixPath) -> bool:
        """Whether ``rel`` exists but is (or passes through) a link out of the run folder.
        A listing (:class:`ListedFiles`) has left those out already."""
        return False

    def ref_of(self, path: str) -> PurePosixPath | None:
        """An absolute path the engine printed, relative to the run folder (None if it is
        outside)."""
        pure = PurePosixPath(posixpath.normpath(path))
        if not pure.is_relative_to(self.root) or pure == self.root:
            return None
        return pure.relative_to(self.root)


class LocalFiles(RunFiles):
    """The run folder on this host."""

    def __init__(self, rundir: RunDir) -> None:
        self.rundir = rundir
        self.root = PurePosixPath(rundir.root.absolute())

    def stat(self, rel: str | PurePosixPath) -> FileStat | None:
        folded = normal(rel)
        if folded is None:
            return None
        real_root = self.rundir.root.resolve()
        path = (real_root / folded).resolve()
        if not path.is_relative_to(real_root) or path == real_root:
            return None
        try:
            st = path.stat()
        except OSError:
            return None
        is_dir = path.is_dir()
        return FileStat(
            PurePosixPath(path.relative_to(real_root).as_posix()),
            is_dir,
            0 if is_dir else st.st_size,
        )

    def leads_out(self, rel: PurePosixPath) -> bool:
        folded = normal(rel)
        if folded is None:
            return True
        path = self.rundir.root / folded
        if not os.path.lexists(path):
            return False
        return not Path(os.path.realpath(path)).is_relative_to(self.rundir.root.resolve())

    def ref_of(self, path: str) -> PurePosixPath | None:
        # local paths may reach the folder through links: compare resolved paths
        found = super().ref_of(path)
        if found is not None:
            return found
        real = PurePosixPath(self.rundir.root.resolve())
        pure = PurePosixPath(posixpath.normpath(path))
        if pure.is_relative_to(real) and pure != real:
            return pure.relative_to(real)
        return None


class ListedFiles(RunFiles):
    """A run folder elsewhere, known through a listing of it (links already resolved and
    anything leading outside left out by whoever listed it)."""

    def __init__(self, root: PurePosixPath, entries: Mapping[PurePosixPath, FileStat]) -> None:
        self.root = root
        #: listed path (as found, possibly a link) -> what it is (its resolved path)
        self.entries = dict(entries)

    def stat(self, rel: str | PurePosixPath) -> FileStat | None:
        folded = normal(rel)
        return None if folded is None else self.entries.get(folded)


class FileSource(Protocol):
    """Fetches files of run folders that are not on this host (a remote backend)."""

    async def fetch(self, handle: Mapping[str, Any], rel: PurePosixPath, dest: Path) -> None:
        """Copy the file ``rel`` of the run folder that ``handle`` (a saved handle) points at
        to ``dest``; raise NotFound if there is no such file."""
