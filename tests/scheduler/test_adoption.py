"""The order in which a worker takes runs: a run whose owner died (its lease ran out) goes
before any queued run, every time a slot frees, however long the queue; and it needs no free
slot at all (it already runs: adopting it only re-attaches), so a busy worker adopts it at
its next look. The worker's loop is the real one; only the driving of a run is replaced by a
recorder, so the test can say when each run ends."""

from __future__ import annotations

import asyncio
from collections import defaultdict
from datetime import timedelta

from sqlalchemy.ext.asyncio import AsyncEngine

from spindle.config import Settings
from spindle.db.types import utcnow
from spindle.domain import Run, State
from spindle.engines.registry import Catalog
from spindle.runs.wakeup import Wakeup
from spindle.scheduler.worker import Worker
from tests.runs.test_claim import add_run, get


class Recorder(Worker):
    """A worker whose runs end only when the test says so."""

    def __init__(self, settings: Settings, db: AsyncEngine) -> None:
        super().__init__(settings=settings, db=db, catalog=Catalog(), backends={}, wakeup=Wakeup())
        self.started: asyncio.Queue[tuple[str, bool]] = asyncio.Queue()
        self.finish: defaultdict[str, asyncio.Event] = defaultdict(asyncio.Event)

    async def _drive(self, run: Run, *, adopted: bool) -> None:
        await self.started.put((run.id, adopted))
        ended = asyncio.create_task(self.finish[run.id].wait())
        stopping = asyncio.create_task(self.driver.stopping.wait())  # as a driver stops
        await asyncio.wait([ended, stopping], return_when=asyncio.FIRST_COMPLETED)
        ended.cancel()
        stopping.cancel()


async def test_a_freed_slot_adopts_an_expired_run_before_claiming_queued_ones(
    settings: Settings, db_engine: AsyncEngine
) -> None:
    # one slot; the fallback poll timer never fires during the test
    settings = settings.model_copy(update={"max_concurrent_runs": 1, "poll_interval": 3600})
    queued = [await add_run(db_engine) for _ in range(5)]
    worker = Recorder(settings, db_engine)
    stop = asyncio.Event()
    loop = asyncio.create_task(worker.run(stop))
    try:
        async with asyncio.timeout(30):
            first, adopted = await worker.started.get()
            assert (first, adopted) == (queued[0].id, False)

            # another worker dies holding a run: its lease runs out
            orphan = await add_run(
                db_engine,
                State.RUNNING,
                worker_id="dead",
                lease_expires_at=utcnow() - timedelta(seconds=1),
            )
            worker.finish[first].set()  # the slot frees

            second, adopted = await worker.started.get()
            assert (second, adopted) == (orphan.id, True)
            assert (await get(db_engine, orphan.id)).worker_id == worker.id

            worker.finish[second].set()
            third, adopted = await worker.started.get()
            assert (third, adopted) == (queued[1].id, False)
    finally:
        stop.set()
        await loop


async def test_a_busy_worker_adopts_a_dead_workers_runs_without_a_free_slot(
    settings: Settings, db_engine: AsyncEngine
) -> None:
    """Every slot busy, a long queue, nothing waking the worker (its poll an hour away): the
    runs of a worker that died are adopted all the same, at the worker's next look (within
    a third of a lease), and queued runs still wait for a free slot."""
    settings = settings.model_copy(
        update={"max_concurrent_runs": 1, "poll_interval": 3600, "lease_seconds": 1.5}
    )
    queued = [await add_run(db_engine) for _ in range(5)]
    worker = Recorder(settings, db_engine)
    stop = asyncio.Event()
    loop = asyncio.create_task(worker.run(stop))
    try:
        async with asyncio.timeout(30):
            assert await worker.started.get() == (queued[0].id, False)  # its one slot, busy

            # another worker dies holding two runs; their leases run out later
            expires = utcnow() + timedelta(seconds=0.5)
            orphans = [
                await add_run(db_engine, State.RUNNING, worker_id="dead", lease_expires_at=expires)
                for _ in range(2)
            ]
            adopted = {await worker.started.get() for _ in orphans}
            assert adopted == {(o.id, True) for o in orphans}
            for orphan in orphans:
                assert (await get(db_engine, orphan.id)).worker_id == worker.id
            # the busy slot still holds the queue back
            assert (await get(db_engine, queued[1].id)).state is State.QUEUED
            assert worker.started.empty()

            # three runs going, one slot: a queued run starts only once all but none remain
            worker.finish[queued[0].id].set()
            worker.finish[orphans[0].id].set()
            await asyncio.sleep(0.1)
            assert (await get(db_engine, queued[1].id)).state is State.QUEUED
            worker.finish[orphans[1].id].set()
            assert await worker.started.get() == (queued[1].id, False)
    finally:
        stop.set()
        await loop
