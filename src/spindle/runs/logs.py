"""Reading a run's log files: a range from an offset (to follow a live log), or the end of
one (what a page shows first). Blocking file reads: call them through ``asyncio.to_thread``.

A log is the workflow's to tamper with: one replaced by a link that leads out of the run
folder (``root``), or by anything but a regular file, reads as empty, exactly as
``/files/`` never serves a file outside the run folder."""

from __future__ import annotations

import os
from pathlib import Path

from spindle.domain import LogChunk
from spindle.storage.files import open_inside

#: most bytes one read returns; readers follow with the next offset
MAX_CHUNK = 4 << 20


def read_range(
    path: Path,
    *,
    base: int,
    end: int | None,
    offset: int,
    limit: int,
    root: Path | None = None,
) -> LogChunk:
    """The bytes of ``path`` from ``base + offset``, up to ``end`` (exclusive, None: the
    end of the file) and at most ``limit``. Offsets in the answer are relative to ``base``.
    A file that does not exist yet, or leads out of ``root`` (default: its own folder),
    reads as empty."""
    start = base + offset
    limit = min(limit, MAX_CHUNK)
    if end is not None:
        limit = max(0, min(end - start, limit))
    data = b""
    fh = open_inside(path.parent if root is None else root, path)
    if fh is not None:
        with fh:
            fh.seek(min(start, os.fstat(fh.fileno()).st_size))  # (past the end: read b"")
            data = fh.read(limit)
    return LogChunk(data=data, start=offset, next_offset=offset + len(data))


def read_tail(
    path: Path, *, base: int, end: int | None, max_bytes: int, root: Path | None = None
) -> LogChunk:
    """The last ``max_bytes`` of ``path`` (or of its span ``base``..``end``)."""
    fh = open_inside(path.parent if root is None else root, path)
    if fh is None:
        return LogChunk(data=b"", start=0, next_offset=0)
    with fh:
        size = os.fstat(fh.fileno()).st_size
    stop = size if end is None else min(end, size)
    length = max(0, stop - base)
    offset = max(0, length - max_bytes)
    return read_range(path, base=base, end=stop, offset=offset, limit=max_bytes, root=root)
