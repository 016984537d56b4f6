"""The claim honours run group limits, on every database: a full group's runs wait in
QUEUED, other runs are not held back, the order inside a group is by priority; and
processes racing to claim never take a group past its limits."""

from __future__ import annotations

import uuid
from collections import Counter
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import insert, select
from sqlalchemy.ext.asyncio import AsyncEngine

from spindle.db.tables import run_groups, runs
from spindle.domain import Run, State
from tests.runs import local_user_id
from tests.runs.test_claim import add_run, bulk_queue, claim_one, race


async def add_group(engine: AsyncEngine, **limits: Any) -> str:
    group_id = str(uuid.uuid4())
    now = datetime.now(UTC)
    async with engine.begin() as conn:
        await conn.execute(
            insert(run_groups).values(
                id=group_id,
                name="batch",
                description="",
                owner_id=await local_user_id(conn),
                created_at=now,
                updated_at=now,
                **limits,
            )
        )
    return group_id


async def set_state(engine: AsyncEngine, run: Run, state: State) -> None:
    async with engine.begin() as conn:
        await conn.execute(runs.update().where(runs.c.id == run.id).values(state=state.value))


async def claimed_ids(engine: AsyncEngine, n: int) -> list[str | None]:
    out: list[str | None] = []
    for i in range(n):
        run = await claim_one(engine, f"w{i}")
        out.append(run.id if run else None)
    return out


async def test_a_full_group_waits_and_holds_nobody_else_back(db_engine: AsyncEngine) -> None:
    group = await add_group(db_engine, max_runs=1)
    first, second, third = [await add_run(db_engine, group_id=group) for _ in range(3)]
    outside = await add_run(db_engine)

    assert await claimed_ids(db_engine, 3) == [first.id, outside.id, None]

    await set_state(db_engine, first, State.COMPLETE)
    assert await claimed_ids(db_engine, 2) == [second.id, None]
    # a run being cancelled still holds its slot until it has stopped
    await set_state(db_engine, second, State.CANCELING)
    assert await claimed_ids(db_engine, 1) == [None]
    await set_state(db_engine, second, State.CANCELED)
    assert await claimed_ids(db_engine, 2) == [third.id, None]


async def test_max_cpus_counts_what_the_running_runs_asked_for(db_engine: AsyncEngine) -> None:
    group = await add_group(db_engine, max_cpus=4)
    big = await add_run(db_engine, group_id=group, cpus=3)
    two = await add_run(db_engine, group_id=group, cpus=2)
    one = await add_run(db_engine, group_id=group, cpus=1)

    # 3 + 2 > 4: the 2-CPU run waits, and the 1-CPU run behind it waits its turn too
    assert await claimed_ids(db_engine, 2) == [big.id, None]
    await set_state(db_engine, big, State.EXECUTOR_ERROR)
    assert await claimed_ids(db_engine, 3) == [two.id, one.id, None]


async def test_priority_orders_runs_inside_their_group(db_engine: AsyncEngine) -> None:
    group = await add_group(db_engine, max_runs=1)
    low = await add_run(db_engine, group_id=group, priority=1)
    high = await add_run(db_engine, group_id=group, priority=5)
    also_high = await add_run(db_engine, group_id=group, priority=5)

    order = []
    for _ in range(3):
        run = await claim_one(db_engine, "w")
        assert run is not None
        order.append(run.id)
        await set_state(db_engine, run, State.COMPLETE)
    assert order == [high.id, also_high.id, low.id]


async def test_a_group_without_limits_claims_in_submission_order(db_engine: AsyncEngine) -> None:
    group = await add_group(db_engine)
    made = [await add_run(db_engine, group_id=group if i % 2 else None) for i in range(4)]
    assert await claimed_ids(db_engine, 5) == [*(r.id for r in made), None]


async def test_limits_are_per_group(db_engine: AsyncEngine) -> None:
    a = await add_group(db_engine, max_runs=1)
    b = await add_group(db_engine, max_runs=2)
    a1, _a2 = [await add_run(db_engine, group_id=a) for _ in range(2)]
    b1, b2, _b3 = [await add_run(db_engine, group_id=b) for _ in range(3)]
    got = await claimed_ids(db_engine, 4)
    assert got == [a1.id, b1.id, b2.id, None]


# --- the race ----------------------------------------------------------------------------

RACE_GROUPS = 6
RUNS_PER_GROUP = 40
RACE_PROCESSES = 6


@pytest.mark.slow
async def test_processes_racing_never_take_a_group_past_its_limits(
    db_engine: AsyncEngine, database_url: str, db_kind: str
) -> None:
    """Six processes claim until nothing more may start (nothing ever finishes): every
    group ends exactly at its limit, and every run outside a group is claimed."""
    limits: dict[str, dict[str, int]] = {}
    for i in range(RACE_GROUPS):
        # alternately a max_runs group and a max_cpus group whose runs ask for 2 CPUs
        limit = {"max_runs": 1 + i} if i % 2 == 0 else {"max_cpus": 2 * i}
        limits[await add_group(db_engine, **limit)] = limit
    ungrouped = await bulk_queue(db_engine, 100)
    for group_id, limit in limits.items():
        ids = await bulk_queue(db_engine, RUNS_PER_GROUP)
        async with db_engine.begin() as conn:
            await conn.execute(
                runs.update()
                .where(runs.c.id.in_(ids))
                .values(group_id=group_id, cpus=2 if "max_cpus" in limit else 1)
            )
    await db_engine.dispose()

    reports = await race(database_url, RACE_PROCESSES)
    claims = Counter(run_id for r in reports for run_id in r["claimed"])
    assert [run_id for run_id, n in claims.items() if n > 1] == []

    async with db_engine.connect() as conn:
        rows = (
            await conn.execute(
                select(runs.c.id, runs.c.state, runs.c.group_id, runs.c.cpus).where(
                    runs.c.state == State.INITIALIZING.value
                )
            )
        ).all()
    assert set(claims) == {r.id for r in rows}
    assert set(ungrouped) <= set(claims)
    held = Counter(r.group_id for r in rows if r.group_id)
    cpus = Counter[str]()
    for r in rows:
        if r.group_id:
            cpus[r.group_id] += r.cpus
    for group_id, limit in limits.items():
        if "max_runs" in limit:
            assert held[group_id] == limit["max_runs"], (group_id, limit)
        else:
            assert cpus[group_id] == limit["max_cpus"], (group_id, limit)
    failures = [f for r in reports for f in r["failures"]]
    print(
        f"\n{db_kind}: {len(claims)} claims by {RACE_PROCESSES} processes into "
        f"{RACE_GROUPS} limited groups, aborted claims {len(failures)}"
    )
