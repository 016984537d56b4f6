"""Following events as they are written: one run's events and progress until it ends, or
every visible run's events.

Every stream of a process is served by one shared poll (:class:`Feed`): a single task reads
the events written since its last look (and the state and progress of the runs being
followed) once per interval, and hands each stream what concerns it. A thousand streams cost
one query per interval, not a thousand. The task starts with the first stream and stops
after the last. A stream that starts behind the poll (``after_id``, ``Last-Event-ID``), or
falls behind because its client reads slowly, catches up by reading the table itself, then
joins the poll again.

Streams are capped per user and in all (:class:`Streams`): one more is refused with 429.
A stream may be given a ``check``: it is awaited before each batch of events is given and
at least every ``check_every`` seconds while idle, and the stream ends when it says False
(the credentials it was opened with were revoked).

The service checks the caller before a follow starts (``RunService.follow``); these
generators only read.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import weakref
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import TypeVar

from sqlalchemy.ext.asyncio import AsyncEngine

from spindle.domain import Event, Progress, State
from spindle.errors import TooManyRequests
from spindle.runs import store

log = logging.getLogger(__name__)

#: seconds between looks at the database while following runs' events
INTERVAL = 0.5
#: events read per look while following
BATCH = 500
#: looks a stream may have waiting for it before it is dropped from the poll (it then
#: catches up from the table by itself)
MAX_PENDING = 64

T = TypeVar("T")
Check = Callable[[], Awaitable[bool]]
Snapshot = tuple[State, Progress | None] | None


@dataclass
class _Look:
    """What one look of the poll found for one stream."""

    events: list[Event]
    #: the followed run's state and progress, read before the events (None: it is gone)
    run: Snapshot = None
    #: every event written up to the look was read (not a full batch)
    complete: bool = True
    #: the feed was closed: the stream ends
    closed: bool = False


@dataclass(eq=False)
class _Subscriber:
    owner_id: int | None  # all-runs streams: whose runs (None: every run)
    run_id: str | None  # one-run streams: the run
    interval: float
    #: the poll's position when the stream joined: later events come through ``looks``
    start: int = 0
    looks: asyncio.Queue[_Look] = field(default_factory=asyncio.Queue)
    dropped: bool = False

    def offer(self, events: list[tuple[Event, int]], runs: dict[str, Snapshot], done: bool) -> None:
        if self.dropped:
            return
        if self.run_id is not None:
            mine = [e for e, _owner in events if e.run_id == self.run_id]
            look = _Look(mine, runs.get(self.run_id), done)
        else:
            mine = [e for e, owner in events if self.owner_id in (None, owner)]
            if not mine:
                return
            look = _Look(mine)
        if self.looks.qsize() >= MAX_PENDING:
            self.dropped = True  # the stream reads the table itself, then joins again
        self.looks.put_nowait(look)


class Feed:
    """The shared poll of one process's streams."""

    def __init__(self, db: AsyncEngine) -> None:
        self.db = db
        self._subscribers: set[_Subscriber] = set()
        self._task: asyncio.Task[None] | None = None
        self._position = 0
        self._lock = asyncio.Lock()

    async def aclose(self) -> None:
        """Stop the poll and end every stream (the server is stopping)."""
        task, self._task = self._task, None
        for sub in list(self._subscribers):
            sub.looks.put_nowait(_Look([], closed=True))
        self._subscribers.clear()
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _join(self, sub: _Subscriber) -> None:
        async with self._lock:
            if self._task is None or self._task.done():
                async with self.db.connect() as conn:
                    self._position = await store.last_event_id(conn)
                self._task = asyncio.create_task(self._poll(), name="event-feed")
            sub.start = self._position
            sub.dropped = False
            sub.looks = asyncio.Queue()
            self._subscribers.add(sub)

    def _leave(self, sub: _Subscriber) -> None:
        self._subscribers.discard(sub)

    async def _poll(self) -> None:
        while True:
            if not self._subscribers:
                self._task = None  # decided and said in one step: a new stream starts anew
                return
            interval = min(s.interval for s in self._subscribers)
            run_ids = {s.run_id for s in self._subscribers if s.run_id is not None}
            try:
                async with self.db.connect() as conn:
                    # states first: a run's final event is committed with its final state,
                    # so once a state reads terminal, the events read next include that event
                    found = await store.get_progress_of(conn, run_ids)
                    newest = await store.last_event_id(conn)
                    batch = await store.list_new_events(
                        conn, after_id=self._position, upto_id=newest, limit=BATCH
                    )
            except Exception:  # the database is away: the streams wait for it
                log.warning("the event feed could not read the events", exc_info=True)
                await asyncio.sleep(interval)
                continue
            full = len(batch) == BATCH
            runs: dict[str, Snapshot] = {r: found.get(r) for r in run_ids}
            for sub in list(self._subscribers):
                sub.offer(batch, runs, not full)
            self._position = batch[-1][0].id if full else max(self._position, newest)
            if not full:
                await asyncio.sleep(interval)

    async def follow_run(
        self,
        run_id: str,
        *,
        after_id: int,
        interval: float = INTERVAL,
        check: Check | None = None,
        check_every: float = 60.0,
    ) -> AsyncGenerator[Event | Progress, None]:
        """A run's events after ``after_id`` as they are written, and its progress whenever
        it changes; ends once the run has ended and its last event was given (or it is
        gone), or ``check`` says False."""
        sub = _Subscriber(owner_id=None, run_id=run_id, interval=interval)
        checker = _Checker(check, check_every)
        last: Progress | None = None
        try:
            while True:
                await self._join(sub)
                # catching up from the table: everything after after_id, up to now
                while True:
                    async with self.db.connect() as conn:
                        current = await store.get_progress(conn, run_id)
                        if current is None:
                            return
                        batch = await store.list_events(
                            conn, run_id, after_id=after_id, limit=BATCH
                        )
                    if batch and not await checker.check():
                        return
                    for event in batch:
                        after_id = event.id
                        yield event
                    state, progress = current
                    if progress is not None and progress != last:
                        last = progress
                        yield progress
                    if len(batch) < BATCH:
                        if state.terminal:
                            return
                        break
                # then what the poll hands over
                while not sub.dropped:
                    look = await checker.wait(sub.looks)
                    if look is None or look.closed:
                        return
                    fresh = [e for e in look.events if e.id > after_id]
                    if fresh and not await checker.check():
                        return
                    for event in fresh:
                        after_id = event.id
                        yield event
                    if look.run is None:
                        return
                    state, progress = look.run
                    if progress is not None and progress != last:
                        last = progress
                        yield progress
                    if state.terminal and look.complete:
                        return
                self._leave(sub)
        finally:
            self._leave(sub)

    async def watch_run(
        self, run_id: str, *, interval: float = INTERVAL
    ) -> AsyncGenerator[tuple[State, Progress | None] | None, None]:
        """The run's state and progress at each look of the shared poll (None once the run
        is gone); a slow reader gets the newest look, not every one. Read with the other
        followed runs' in the poll's one query: a follower of a log costs no query of its
        own."""
        sub = _Subscriber(owner_id=None, run_id=run_id, interval=interval)
        try:
            await self._join(sub)
            while True:
                look = await sub.looks.get()
                while not sub.looks.empty():  # only the newest look matters
                    look = sub.looks.get_nowait()
                sub.dropped = False
                if look.closed:
                    return
                yield look.run
                if look.run is None:
                    return
        finally:
            self._leave(sub)

    async def follow_all(
        self,
        *,
        owner_id: int | None,
        position: int,
        interval: float = INTERVAL,
        check: Check | None = None,
        check_every: float = 60.0,
    ) -> AsyncGenerator[Event, None]:
        """The events after ``position`` of every run of ``owner_id`` (None: every run) as
        they are written. Ends only when ``check`` says False."""
        sub = _Subscriber(owner_id=owner_id, run_id=None, interval=interval)
        checker = _Checker(check, check_every)
        try:
            while True:
                await self._join(sub)
                while position < sub.start:  # catching up from the table
                    async with self.db.connect() as conn:
                        batch = await store.list_all_events(
                            conn,
                            after_id=position,
                            upto_id=sub.start,
                            limit=BATCH,
                            owner_id=owner_id,
                        )
                    if batch and not await checker.check():
                        return
                    for event in batch:
                        yield event
                    position = batch[-1].id if len(batch) == BATCH else sub.start
                while not sub.dropped:
                    look = await checker.wait(sub.looks)
                    if look is None or look.closed:
                        return
                    fresh = [e for e in look.events if e.id > position]
                    if fresh and not await checker.check():
                        return
                    for event in fresh:
                        position = event.id
                        yield event
                self._leave(sub)
        finally:
            self._leave(sub)


class _Checker:
    """Re-checks a stream's credentials before each batch and at least every ``every``
    seconds while it waits."""

    def __init__(self, check: Check | None, every: float) -> None:
        self._check = check
        self.every = every
        self._due = time.monotonic() + every

    async def check(self) -> bool:
        if self._check is None:
            return True
        self._due = time.monotonic() + self.every
        return await self._check()

    async def wait(self, looks: asyncio.Queue[_Look]) -> _Look | None:
        """The next look; None if the credentials stopped holding meanwhile."""
        while True:
            if self._check is None:
                return await looks.get()
            timeout = max(0.0, self._due - time.monotonic())
            with contextlib.suppress(TimeoutError):
                return await asyncio.wait_for(looks.get(), timeout)
            if not await self.check():
                return None


class Counted(AsyncIterator[T]):
    """A stream that holds one place under the caps until it ends: run out, failed,
    cancelled, closed, or dropped without ever being read."""

    def __init__(self, items: AsyncGenerator[T, None], close: Callable[[], None]) -> None:
        self._items = items
        self._close = close
        weakref.finalize(self, close)

    def __aiter__(self) -> Counted[T]:
        return self

    async def __anext__(self) -> T:
        try:
            return await anext(self._items)
        except BaseException:
            self._close()
            raise

    async def aclose(self) -> None:
        self._close()
        await self._items.aclose()


class Streams:
    """How many event streams are open, per user and in all; a stream over either cap is
    refused (429) before it starts."""

    def __init__(self, *, per_user: int, total: int) -> None:
        self.per_user = per_user
        self.total = total
        self._open: dict[int, int] = {}

    @property
    def count(self) -> int:
        return sum(self._open.values())

    def counted(self, user_id: int, items: AsyncGenerator[T, None]) -> Counted[T]:
        """``items`` as one more open stream of the user; TooManyRequests over a cap."""
        return Counted(items, self.open(user_id))

    def open(self, user_id: int) -> Callable[[], None]:
        """Count a new stream of the user; the function to call (once or more) when it ends."""
        if self.count >= self.total:
            raise TooManyRequests(
                f"the server has {self.total} event streams open, its most; try again later",
                retry_after=30,
            )
        if self._open.get(user_id, 0) >= self.per_user:
            raise TooManyRequests(
                f"you have {self.per_user} event streams open, the most one user may; close "
                "one (another tab or client) and try again",
                retry_after=30,
            )
        self._open[user_id] = self._open.get(user_id, 0) + 1
        closed = False

        def close() -> None:
            nonlocal closed
            if closed:
                return
            closed = True
            left = self._open.get(user_id, 1) - 1
            if left > 0:
                self._open[user_id] = left
            else:
                self._open.pop(user_id, None)

        return close
