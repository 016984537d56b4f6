"""Following events as they are written: one run's events and progress until it ends, or
every visible run's events. Read from the database at short intervals (the events table is
the one source; no process needs to be told), each look in a connection of its own.

The service checks the caller before a follow starts (``RunService.follow``); these
generators only read.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from sqlalchemy.ext.asyncio import AsyncEngine

from spindle.domain import Event, Progress
from spindle.runs import store

#: seconds between looks at the database while following runs' events
INTERVAL = 0.5
#: events read per look while following
BATCH = 500


async def follow_run(
    db: AsyncEngine, run_id: str, *, after_id: int, interval: float
) -> AsyncIterator[Event | Progress]:
    """A run's events after ``after_id`` as they are written, and its progress whenever it
    changes; ends once the run has ended and its last event was given (or it is gone)."""
    last: Progress | None = None
    while True:
        async with db.connect() as conn:
            # the state first: a run's final event is committed with its final state,
            # so once the state reads terminal, the events read next include that event
            current = await store.get_progress(conn, run_id)
            if current is None:
                return
            state, progress = current
            batch = await store.list_events(conn, run_id, after_id=after_id, limit=BATCH)
        for event in batch:
            after_id = event.id
            yield event
        if progress is not None and progress != last:
            last = progress
            yield progress
        if state.terminal and len(batch) < BATCH:
            return
        if len(batch) < BATCH:
            await asyncio.sleep(interval)


async def follow_all(
    db: AsyncEngine, *, owner_id: int | None, position: int, interval: float
) -> AsyncIterator[Event]:
    """The events after ``position`` of every run of ``owner_id`` (None: every run) as they
    are written. Never ends by itself.

    Each look reads up to the newest event id at that moment and moves on to it even when
    none of those events was the owner's, so a quiet user's stream on a busy server reads
    only the events written since its last look."""
    while True:
        async with db.connect() as conn:
            newest = await store.last_event_id(conn)
            batch = await store.list_all_events(
                conn, after_id=position, upto_id=newest, limit=BATCH, owner_id=owner_id
            )
        for event in batch:
            yield event
        full = len(batch) == BATCH
        position = batch[-1].id if full else max(position, newest)
        if not full:
            await asyncio.sleep(interval)
