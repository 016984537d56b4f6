"""A worker stopped in-process (an app's lifespan ending, as `spindle serve` does on Ctrl-C or
SIGTERM) while one of its runs is in the middle of a database write: the run's task finishes
the write and stops at its next wait, and the stop then expires every lease, so another
worker or the next start adopts the runs at once.

A run's task cancelled mid-write (what a stop did before) left SQLite's write lock with its
connection until that was garbage-collected; the stop's lease expiry then waited out the
30 s busy timeout and failed, and the runs were adopted only a lease later."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import event, select
from sqlalchemy.engine import Engine
from sqlalchemy.ext.asyncio import AsyncEngine

from spindle.config import Settings
from spindle.db.engine import create_engine
from spindle.db.tables import runs
from spindle.db.types import utcnow
from spindle.domain import Run
from spindle.engines.registry import Catalog
from spindle.runs.wakeup import Wakeup
from spindle.scheduler.worker import Worker
from tests.api.conftest import make_app
from tests.runs.test_claim import add_run, get
from tests.scheduler.test_fakes import fake_catalog, fake_settings, fakes, submit, wait_for

__all__ = ["fakes"]


SLOW = (
    "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 1000000) "
    "SELECT count(*) FROM c"
)


class WriteStall:
    """Once armed, the next write of a run's tasks is followed, in its transaction, by a
    slow statement (as a slow disk or a busy machine makes a write last): the transaction
    holds SQLite's write lock until that is done."""

    def __init__(self) -> None:
        self.armed = False
        self.hit = threading.Event()

    def __call__(self, _conn: Any, cursor: Any, statement: str, *_: Any) -> None:
        if self.armed and statement.lstrip().upper().startswith(
            ("INSERT INTO TASKS", "UPDATE TASKS")
        ):
            self.armed = False
            self.hit.set()
            cursor.execute(SLOW)


@pytest.fixture
def stall() -> Iterator[WriteStall]:
    hook = WriteStall()
    event.listen(Engine, "after_cursor_execute", hook)
    try:
        yield hook
    finally:
        event.remove(Engine, "after_cursor_execute", hook)


async def test_a_stop_mid_write_leaves_every_run_adoptable_at_once(
    fakes: None, tmp_path: Path, stall: WriteStall
) -> None:
    # a lease that would not run out during the test: only the stop can expire it
    settings = fake_settings(tmp_path).model_copy(update={"lease_seconds": 3600})
    app = make_app(settings, await fake_catalog())
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://spindle.test") as client:
            # many tasks over a long time: each run writes its tasks at every look
            ids = [await submit(client, {"sleep": 300, "tasks": 1000}, "managed") for _ in range(3)]
            for run_id in ids:
                await wait_for(client, run_id, {"RUNNING"})
            stall.armed = True
            assert await asyncio.to_thread(stall.hit.wait, 20)
        # leaving the lifespan stops the worker now, with a write half-way
    stopped = utcnow()  # the stop is over
    db = create_engine(settings.effective_database_url)
    try:
        async with db.connect() as conn:
            rows = (
                await conn.execute(
                    select(runs.c.id, runs.c.state, runs.c.worker_id, runs.c.lease_expires_at)
                )
            ).all()
    finally:
        await db.dispose()
    assert sorted(r.id for r in rows) == sorted(ids)
    for row in rows:
        assert row.state == "RUNNING"  # its engine was left going
        assert row.worker_id is not None  # owned by the stopped worker until adopted
        # and its lease expired by the stop, rather than an hour later
        assert row.lease_expires_at is not None
        assert row.lease_expires_at <= stopped, row


class Stubborn(Worker):
    """A worker whose runs' tasks never stop by themselves (a step that hangs)."""

    def __init__(self, settings: Settings, db: AsyncEngine) -> None:
        super().__init__(settings=settings, db=db, catalog=Catalog(), backends={}, wakeup=Wakeup())
        self.started: asyncio.Queue[str] = asyncio.Queue()
        self.cancelled: list[str] = []

    async def _drive(self, run: Run, *, adopted: bool) -> None:
        await self.started.put(run.id)
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            self.cancelled.append(run.id)
            raise


async def test_a_task_that_does_not_stop_is_cancelled_after_the_grace_its_lease_expired(
    settings: Settings, db_engine: AsyncEngine
) -> None:
    settings = settings.model_copy(update={"lease_seconds": 3600, "poll_interval": 3600})
    run = await add_run(db_engine)
    worker = Stubborn(settings, db_engine)
    worker.stop_grace = 0.2
    stop = asyncio.Event()
    loop = asyncio.create_task(worker.run(stop))
    async with asyncio.timeout(30):
        assert await worker.started.get() == run.id
        stop.set()
        await loop
    assert worker.cancelled == [run.id]
    after = await get(db_engine, run.id)
    assert after.worker_id == worker.id
    assert after.lease_expires_at is not None
    assert after.lease_expires_at <= utcnow()
