"""The order in which a worker takes runs: a run whose owner died (its lease ran out) goes
before any queued run, every time a slot frees, however long the queue. The worker's loop
is the real one; only the driving of a run is replaced by a recorder, so the test can say
when each run ends."""

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
        await self.finish[run.id].wait()


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
