"""Following a log as it is written: what the SSE log streams send (``api/logstream.py``).

A follower reads the log file from a byte offset, whole lines at a time, whenever the
shared poll of the events feed (``Feed.watch_run``) has looked at the run again: the state
that tells it when the log is complete comes from that one poll, never from a query of its
own. Once a look says the log is complete (the run has ended, or a task's span has its end),
the rest is read, a partial last line included, and the follower ends with :class:`LogEnd`.

The state is read *before* the drain that follows it: a run seen ended has finished writing,
so what the drain reads then is all there is, never a race with the last lines.

Offsets are bytes of the log (or of the task's span of it). A piece never ends inside a
UTF-8 character, so each piece decodes on its own; bytes that are not UTF-8 at all come out
as U+FFFD (the plain log routes serve the bytes as they are).
"""

from __future__ import annotations

import time
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from dataclasses import dataclass

from spindle.domain import LogChunk, Progress, State

#: most bytes one piece carries
CHUNK = 64 * 1024
#: seconds between two reads of a followed task's row while the run's progress stands still
#: (a task's end shows in the progress as a rule; this catches an engine that says nothing)
TASK_RECHECK = 5.0

Reader = Callable[[int, int], Awaitable[LogChunk]]
Snapshot = tuple[State, Progress | None] | None
#: whether the log is complete, given the run's state and progress at a look
Complete = Callable[[State, Progress | None], Awaitable[bool]]
Check = Callable[[], Awaitable[bool]]
_CLOSED = object()
#: (mask, lead bits, length) of the lead byte of a multi-byte UTF-8 character
_LEADS = ((0xE0, 0xC0, 2), (0xF0, 0xE0, 3), (0xF8, 0xF0, 4))


@dataclass(frozen=True)
class LogPiece:
    """Bytes ``offset`` to ``next_offset`` of the log, as text."""

    text: str
    offset: int
    next_offset: int


@dataclass(frozen=True)
class LogEnd:
    """The log is complete: everything up to ``next_offset`` was sent. ``state`` is the
    run's at the end (None: the run is gone)."""

    state: State | None
    next_offset: int


def _utf8_cut(data: bytes) -> int:
    """Where ``data`` ends without an incomplete UTF-8 character at its end."""
    for back in range(1, min(4, len(data)) + 1):
        byte = data[-back]
        if byte & 0xC0 == 0x80:
            continue  # a continuation byte: look further back for its lead
        need = next((n for mask, lead, n in _LEADS if byte & mask == lead), 1)
        return len(data) - back if need > back else len(data)
    return len(data)


def cut(data: bytes, *, final: bool) -> bytes:
    """What of ``data`` (read from the log) to send now: up to its last newline, or, when
    ``final`` or when a whole chunk holds no newline, all of it short of an incomplete
    UTF-8 character (``final``: all of it)."""
    if final:
        return data
    newline = data.rfind(b"\n")
    if newline >= 0:
        return data[: newline + 1]
    if len(data) < CHUNK:
        return b""
    return data[: _utf8_cut(data)]


async def follow(
    read: Reader,
    looks: AsyncIterator[Snapshot],
    *,
    offset: int,
    complete: Complete,
    check: Check | None = None,
    check_every: float = 60.0,
) -> AsyncGenerator[LogPiece | LogEnd, None]:
    """The log from ``offset`` as it grows, piece by piece, then :class:`LogEnd` once a
    look says it is ``complete`` (or the run is gone). Ends without :class:`LogEnd` when
    ``check`` (awaited at most every ``check_every`` seconds) says False."""
    final = False
    state: State | None = None
    due = time.monotonic() + check_every
    while True:
        while True:
            chunk = await read(offset, CHUNK)
            piece = cut(chunk.data, final=final)
            if piece:
                yield LogPiece(piece.decode("utf-8", "replace"), offset, offset + len(piece))
                offset += len(piece)
            if len(chunk.data) < CHUNK or not piece:
                break
        if final:
            yield LogEnd(state, offset)
            return
        look = await anext(looks, _CLOSED)
        if look is _CLOSED:  # the feed closed (the server is stopping)
            return
        if check is not None and time.monotonic() >= due:
            due = time.monotonic() + check_every
            if not await check():
                return
        if look is None:  # the run is gone: what there is, then the end
            final = True
            continue
        assert isinstance(look, tuple)
        state, progress = look
        final = await complete(state, progress)
