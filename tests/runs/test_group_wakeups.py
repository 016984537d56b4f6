"""Run group changes that may let queued runs start (a new limit, a deleted group's runs
detached, a run moved) wake workers in other processes too: on PostgreSQL the change sends
``NOTIFY`` in its transaction, as a submission does, and another process's ``LISTEN``
(``spindle.scheduler.listen``) turns it into its wake-up."""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path

import pytest
from sqlalchemy import select

from spindle.config import Settings
from spindle.db.engine import create_engine
from spindle.db.tables import LOCAL_USER, users
from spindle.domain import Caller, RunRequest
from spindle.engines.registry import Catalog
from spindle.runs import store
from spindle.runs.groups import GroupService
from spindle.runs.service import RunService
from spindle.runs.wakeup import Wakeup
from spindle.scheduler.listen import listen_for_wakeups

pytestmark = pytest.mark.db


async def woken(wakeup: Wakeup, seconds: float = 10) -> bool:
    try:
        await asyncio.wait_for(wakeup.queued.wait(), seconds)
    except TimeoutError:
        return False
    wakeup.queued.clear()
    return True


async def test_group_changes_wake_workers_in_other_processes(
    postgres_url: str, tmp_path: Path
) -> None:
    settings = Settings(data_dir=tmp_path / "data", database_url=postgres_url)
    db = create_engine(postgres_url)
    runs = RunService(db=db, settings=settings, catalog=Catalog(), wakeup=Wakeup())
    groups = GroupService(db=db, settings=settings, runs=runs)
    other = Wakeup()  # another process's: only NOTIFY reaches it
    stop = asyncio.Event()
    listening = asyncio.create_task(listen_for_wakeups(settings, other, stop))
    try:
        assert await woken(other), "the listener did not start"  # it looks once on connect
        async with db.connect() as conn:
            owner = (
                await conn.execute(select(users.c.id).where(users.c.name == LOCAL_USER))
            ).scalar_one()
        caller = Caller(user_id=owner, name=LOCAL_USER, admin=True)
        group = await groups.create({"name": "batch", "max_runs": 1}, caller=caller)
        async with db.begin() as conn:
            run = await store.insert_run(
                conn,
                run_id="run-1",
                request=RunRequest("SMK", "9", "Snakefile"),
                engine="snakemake",
                compute_env="local",
                owner_id=owner,
            )
        other.queued.clear()

        await groups.update(group.id, {"max_runs": 2}, caller=caller)
        assert await woken(other), "an update did not wake the other process"

        await groups.move_run(run.id, group.id, caller=caller)
        assert await woken(other), "a move did not wake the other process"

        await groups.delete(group.id, detach_runs=True, caller=caller)
        assert await woken(other), "a delete that detached runs did not wake the other process"
    finally:
        stop.set()
        with contextlib.suppress(Exception):
            await listening
        await db.dispose()
