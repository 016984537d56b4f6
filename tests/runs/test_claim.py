"""Claiming, leases and adoption, on every database; and the claim race between processes."""

from __future__ import annotations

import asyncio
import json
import os
import sys
import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, insert, select
from sqlalchemy.ext.asyncio import AsyncEngine

from spindle.db.tables import events, runs
from spindle.domain import Run, RunRequest, State
from spindle.runs import claim, store
from tests.runs import local_user_id

NOW = datetime(2026, 11, 22, 12, 0, 0, 250000, tzinfo=UTC)
LEASE = timedelta(seconds=30)


async def add_run(engine: AsyncEngine, state: State = State.QUEUED, **values: Any) -> Run:
    """A run in ``state``, with any other column values written straight to its row."""
    async with engine.begin() as conn:
        run = await store.insert_run(
            conn,
            run_id=str(uuid.uuid4()),
            request=RunRequest(
                workflow_type="CWL", workflow_type_version="v1.2", workflow_url="wf.cwl"
            ),
            engine="cwltool",
            compute_env="local",
            owner_id=await local_user_id(conn),
        )
        await conn.execute(
            runs.update().where(runs.c.id == run.id).values(state=state.value, **values)
        )
        got = await store.get_run(conn, run.id)
    assert got is not None
    return got


async def get(engine: AsyncEngine, run_id: str) -> Run:
    async with engine.connect() as conn:
        run = await store.get_run(conn, run_id)
    assert run is not None
    return run


async def claim_one(engine: AsyncEngine, worker_id: str, now: datetime = NOW) -> Run | None:
    async with engine.begin() as conn:
        return await claim.claim_next(conn, worker_id=worker_id, now=now, lease_until=now + LEASE)


async def adopt_one(engine: AsyncEngine, worker_id: str, now: datetime = NOW) -> Run | None:
    async with engine.begin() as conn:
        return await claim.adopt_expired(
            conn, worker_id=worker_id, now=now, lease_until=now + LEASE
        )


# --- claim_next --------------------------------------------------------------------------


async def test_claim_takes_the_oldest_queued_run(db_engine: AsyncEngine) -> None:
    done = await add_run(db_engine, State.COMPLETE)
    first = await add_run(db_engine)
    second = await add_run(db_engine)

    got = await claim_one(db_engine, "w1")
    assert got is not None
    assert got.id == first.id
    assert got.state is State.INITIALIZING
    assert got.worker_id == "w1"
    assert got.lease_expires_at == NOW + LEASE
    assert await get(db_engine, first.id) == got

    again = await claim_one(db_engine, "w2")
    assert again is not None
    assert (again.id, again.worker_id) == (second.id, "w2")

    assert await claim_one(db_engine, "w1") is None
    assert (await get(db_engine, done.id)).state is State.COMPLETE


async def test_claim_writes_its_event(db_engine: AsyncEngine) -> None:
    run = await add_run(db_engine)
    assert await claim_one(db_engine, "w1") is not None
    async with db_engine.connect() as conn:
        history = await store.list_events(conn, run.id)
    assert [(e.kind, e.data) for e in history] == [
        ("state", {"from": None, "to": "QUEUED"}),
        ("state", {"to": "INITIALIZING", "worker": "w1"}),
    ]
    assert history[-1].at == NOW


async def test_claim_with_nothing_queued(db_engine: AsyncEngine) -> None:
    assert await claim_one(db_engine, "w1") is None
    for state in (State.RUNNING, State.CANCELED, State.INITIALIZING, State.SYSTEM_ERROR):
        await add_run(db_engine, state)
    assert await claim_one(db_engine, "w1") is None
    async with db_engine.connect() as conn:
        claims = await conn.execute(
            select(func.count())
            .select_from(events)
            .where(events.c.data["to"].as_string() == "INITIALIZING")
        )
        assert claims.scalar_one() == 0


async def test_a_rolled_back_claim_leaves_the_run_queued(db_engine: AsyncEngine) -> None:
    run = await add_run(db_engine)
    async with db_engine.connect() as conn, conn.begin() as tx:
        assert await claim.claim_next(conn, worker_id="w1", now=NOW, lease_until=NOW + LEASE)
        await tx.rollback()
    assert (await get(db_engine, run.id)).state is State.QUEUED
    got = await claim_one(db_engine, "w2")
    assert got is not None
    assert (got.id, got.worker_id) == (run.id, "w2")


# --- adopt_expired -----------------------------------------------------------------------


async def test_adopt_takes_only_active_runs_whose_lease_ran_out(db_engine: AsyncEngine) -> None:
    past, future = NOW - timedelta(seconds=1), NOW + timedelta(seconds=1)
    expired_init = await add_run(
        db_engine, State.INITIALIZING, worker_id="dead", lease_expires_at=past
    )
    await add_run(db_engine, State.RUNNING, worker_id="alive", lease_expires_at=future)
    await add_run(db_engine, State.RUNNING, worker_id="edge", lease_expires_at=NOW)
    await add_run(db_engine, State.QUEUED)
    await add_run(db_engine, State.COMPLETE, worker_id="dead", lease_expires_at=past)
    await add_run(db_engine, State.EXECUTOR_ERROR, worker_id="dead", lease_expires_at=past)
    expired_running = await add_run(
        db_engine, State.RUNNING, worker_id="dead", lease_expires_at=past
    )
    expired_canceling = await add_run(
        db_engine, State.CANCELING, worker_id="dead", lease_expires_at=past
    )

    adopted = [await adopt_one(db_engine, "w2") for _ in range(4)]
    assert [r.id if r else None for r in adopted] == [
        expired_init.id,
        expired_running.id,
        expired_canceling.id,
        None,
    ]
    for run, was in zip(
        adopted[:3], [State.INITIALIZING, State.RUNNING, State.CANCELING], strict=True
    ):
        assert run is not None
        assert run.state is was  # adoption takes over ownership; the state stays
        assert run.worker_id == "w2"
        assert run.lease_expires_at == NOW + LEASE
        assert await get(db_engine, run.id) == run

    async with db_engine.connect() as conn:
        history = await store.list_events(conn, expired_running.id)
    assert (history[-1].kind, history[-1].data, history[-1].at) == (
        "adopted",
        {"worker": "w2"},
        NOW,
    )
    # A freshly adopted run is not adoptable again until its new lease runs out.
    assert await adopt_one(db_engine, "w3") is None
    later = await adopt_one(db_engine, "w3", now=NOW + LEASE + timedelta(microseconds=1))
    assert later is not None
    assert later.worker_id == "w3"


async def test_adopt_with_nothing_expired(db_engine: AsyncEngine) -> None:
    assert await adopt_one(db_engine, "w1") is None
    await add_run(db_engine)
    assert await claim_one(db_engine, "w1") is not None
    assert await adopt_one(db_engine, "w2") is None


async def test_adopt_takes_active_runs_left_without_a_lease(db_engine: AsyncEngine) -> None:
    # what an older Spindle's clean stop left: active runs with no owner and no lease
    stranded = [
        await add_run(db_engine, state, worker_id=None, lease_expires_at=None)
        for state in (State.RUNNING, State.CANCELING)
    ]
    await add_run(db_engine, State.QUEUED)
    await add_run(db_engine, State.COMPLETE, worker_id=None, lease_expires_at=None)

    adopted = [await adopt_one(db_engine, "w2") for _ in range(3)]
    assert [r.id if r else None for r in adopted] == [r.id for r in stranded] + [None]
    for run in adopted[:2]:
        assert run is not None
        assert (run.worker_id, run.lease_expires_at) == ("w2", NOW + LEASE)


async def test_expired_leases_are_adopted_at_once(db_engine: AsyncEngine) -> None:
    """A worker that stops expires its leases: another worker adopts the runs at once,
    long before the leases would have run out."""
    mine, other = await add_run(db_engine), await add_run(db_engine)
    assert await claim_one(db_engine, "w1") is not None
    assert await claim_one(db_engine, "w3") is not None
    assert await adopt_one(db_engine, "w2") is None

    async with db_engine.begin() as conn:
        await claim.expire_leases(conn, worker_id="w1", run_ids=[mine.id, other.id], now=NOW)
    stopped = await get(db_engine, mine.id)
    assert (stopped.worker_id, stopped.lease_expires_at) == ("w1", NOW)
    # only the stopping worker's own lease ended
    assert (await get(db_engine, other.id)).lease_expires_at == NOW + LEASE

    later = NOW + timedelta(microseconds=1)
    adopted = await adopt_one(db_engine, "w2", now=later)
    assert adopted is not None
    assert (adopted.id, adopted.worker_id) == (mine.id, "w2")
    assert await adopt_one(db_engine, "w2", now=later) is None


# --- renew_leases and release ------------------------------------------------------------


async def test_renew_returns_only_runs_still_owned(db_engine: AsyncEngine) -> None:
    mine = await add_run(db_engine)
    lost = await add_run(db_engine)
    other = await add_run(db_engine)
    for _ in range(3):
        await claim_one(db_engine, "w1")
    # w1 stalls; w2 adopts one of its runs after the lease ran out.
    late = NOW + LEASE + timedelta(seconds=1)
    async with db_engine.begin() as conn:
        await conn.execute(
            runs.update()
            .where(runs.c.id.in_([mine.id, other.id]))
            .values(lease_expires_at=late + LEASE)
        )
    adopted = await adopt_one(db_engine, "w2", now=late)
    assert adopted is not None
    assert adopted.id == lost.id

    until = late + timedelta(minutes=5)
    async with db_engine.begin() as conn:
        owned = await claim.renew_leases(
            conn, worker_id="w1", run_ids=[mine.id, lost.id], lease_until=until
        )
    assert owned == {mine.id}
    assert (await get(db_engine, mine.id)).lease_expires_at == until
    assert (await get(db_engine, lost.id)).lease_expires_at == late + LEASE
    assert (await get(db_engine, lost.id)).worker_id == "w2"
    # Not asked about: untouched.
    assert (await get(db_engine, other.id)).lease_expires_at == late + LEASE

    async with db_engine.begin() as conn:
        assert (
            await claim.renew_leases(conn, worker_id="w1", run_ids=[], lease_until=until) == set()
        )
        assert (
            await claim.renew_leases(conn, worker_id="w1", run_ids=["nope"], lease_until=until)
            == set()
        )


async def test_release_drops_only_the_callers_lease(db_engine: AsyncEngine) -> None:
    run = await add_run(db_engine)
    await claim_one(db_engine, "w1")

    async with db_engine.begin() as conn:
        await claim.release(conn, run_id=run.id, worker_id="w2")
    assert (await get(db_engine, run.id)).worker_id == "w1"

    async with db_engine.begin() as conn:
        await claim.release(conn, run_id=run.id, worker_id="w1")
    released = await get(db_engine, run.id)
    assert (released.worker_id, released.lease_expires_at) == (None, None)
    assert released.state is State.INITIALIZING
    async with db_engine.begin() as conn:
        assert (
            await claim.renew_leases(
                conn, worker_id="w1", run_ids=[run.id], lease_until=NOW + LEASE
            )
            == set()
        )


# --- the race ----------------------------------------------------------------------------

RACE_RUNS = 2000
RACE_PROCESSES = 8
WORKER = Path(__file__).with_name("claim_worker.py")


async def bulk_queue(engine: AsyncEngine, n: int) -> list[str]:
    ids = [str(uuid.uuid4()) for _ in range(n)]
    now = datetime.now(UTC)
    async with engine.connect() as conn:
        owner = await local_user_id(conn)
    rows = [
        {
            "id": run_id,
            "state": State.QUEUED.value,
            "workflow_type": "CWL",
            "workflow_type_version": "v1.2",
            "workflow_url": "wf.cwl",
            "workflow_params": {},
            "workflow_engine_parameters": {},
            "tags": {},
            "engine": "cwltool",
            "compute_env": "local",
            "submitted_at": now,
            "updated_at": now,
            "cmd": [],
            "system_logs": [],
            "outputs": {},
            "owner_id": owner,
        }
        for run_id in ids
    ]
    for start in range(0, n, 500):
        async with engine.begin() as conn:
            await conn.execute(insert(runs), rows[start : start + 500])
    return ids


async def race(database_url: str, processes: int) -> list[dict[str, Any]]:
    """Start ``processes`` claim_worker.py processes, let them claim at the same moment until
    nothing more may be claimed, and return their reports (``claimed``, ``failures``,
    ``seconds``, ``worker``)."""
    procs = [
        await asyncio.create_subprocess_exec(
            sys.executable,
            str(WORKER),
            database_url,
            f"w{i}-{uuid.uuid4().hex[:6]}",
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env={**os.environ, "PYTHONWARNINGS": "error"},
        )
        for i in range(processes)
    ]
    try:
        async with asyncio.timeout(240):
            for proc in procs:
                assert proc.stdout is not None
                line = await proc.stdout.readline()
                assert line == b"ready\n", line + (await proc.communicate())[1]
            for proc in procs:
                assert proc.stdin is not None
                proc.stdin.write(b"go\n")
            outputs = await asyncio.gather(*(p.communicate() for p in procs))
    finally:
        for proc in procs:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
    reports = []
    for proc, (out, err) in zip(procs, outputs, strict=True):
        assert proc.returncode == 0, err.decode()
        reports.append(json.loads(out))
    return reports


@pytest.mark.slow
async def test_processes_racing_claim_every_run_exactly_once(
    db_engine: AsyncEngine, database_url: str, db_kind: str
) -> None:
    queued = await bulk_queue(db_engine, RACE_RUNS)
    await db_engine.dispose()  # the workers get the database to themselves

    reports = await race(database_url, RACE_PROCESSES)

    reported = {run_id: r["worker"] for r in reports for run_id in r["claimed"]}
    counts = Counter(run_id for r in reports for run_id in r["claimed"])
    assert [run_id for run_id, n in counts.items() if n > 1] == []
    assert set(reported) == set(queued)

    async with db_engine.connect() as conn:
        rows = (await conn.execute(select(runs.c.id, runs.c.state, runs.c.worker_id))).all()
        claim_events = (
            await conn.execute(
                select(events.c.run_id, events.c.data).where(events.c.kind == "state")
            )
        ).all()
    assert {r.id: r.worker_id for r in rows} == reported
    assert {r.state for r in rows} == {State.INITIALIZING.value}
    per_run = Counter(run_id for run_id, data in claim_events if data["to"] == "INITIALIZING")
    assert per_run == Counter({run_id: 1 for run_id in queued})
    assert {data["worker"] for run_id, data in claim_events if data["to"] == "INITIALIZING"} <= {
        r["worker"] for r in reports
    }
    failures = [f for r in reports for f in r["failures"]]
    print(
        f"\n{db_kind}: {RACE_RUNS} runs, {RACE_PROCESSES} processes: "
        f"claims per process {sorted(len(r['claimed']) for r in reports)}, "
        f"aborted claims {len(failures)}, "
        f"slowest process {max(r['seconds'] for r in reports):.2f}s"
    )
    assert failures == []
