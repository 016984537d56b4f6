"""Incremental reading of an engine's log while the run goes: per log file, the parsed state
of a reader that is fed only the bytes added since the last look (cwltool's and miniwdl's
progress both come from their stderr this way)."""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path
from typing import Generic, Protocol, TypeVar

from spindle.storage.files import open_inside
from spindle.storage.rundir import RunDir

#: log files whose parsed state is kept (runs followed at once by one process, with room)
LOG_CACHE_SIZE = 256


class Reader(Protocol):
    """What the cache needs of a parser: the file it read (by inode), how far, and ``feed``
    to give it the next bytes."""

    @property
    def inode(self) -> int: ...

    @property
    def offset(self) -> int: ...

    def feed(self, data: bytes) -> None: ...


R = TypeVar("R", bound=Reader)
T = TypeVar("T")


class LogTails(Generic[R]):
    """Parsed state per log file, made by ``new(inode)``; :meth:`read` feeds it what was
    added and answers ``use(reader)``. A file replaced (another inode) or cut shorter is read
    again from the start. The worker calls this in threads: a reader is taken out of the
    cache while it is fed and used, so a second caller meanwhile parses from the start into
    its own rather than sharing it."""

    def __init__(self, new: Callable[[int], R], size: int = LOG_CACHE_SIZE) -> None:
        self._new = new
        self._size = size
        self._readers: OrderedDict[Path, R] = OrderedDict()
        self._lock = threading.Lock()

    def read(self, rundir: RunDir, path: Path, use: Callable[[R], T], empty: T) -> T:
        """``use`` of the reader of ``path`` (inside ``rundir``) fed to the file's end;
        ``empty`` when there is no such file, or it leads out of the run folder."""
        path = path.absolute()
        try:
            stat = path.stat()
        except FileNotFoundError:
            return empty
        with self._lock:
            reader = self._readers.pop(path, None)
        if reader is None or reader.inode != stat.st_ino or reader.offset > stat.st_size:
            reader = self._new(stat.st_ino)
        f = open_inside(rundir.root, path)  # the workflow may have swapped it for a link
        if f is None:
            return empty
        with f:
            f.seek(reader.offset)
            reader.feed(f.read())
        answer = use(reader)
        with self._lock:
            self._readers[path] = reader
            while len(self._readers) > self._size:
                self._readers.popitem(last=False)
        return answer
