"""The run/task/event repository, on every database."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.exc import StatementError
from sqlalchemy.ext.asyncio import AsyncEngine

from spindle.db.tables import events, runs, tasks
from spindle.domain import LogSpan, Progress, Run, RunRequest, State, Task
from spindle.runs import store
from tests.runs import local_user_id


def run_request(**overrides: Any) -> RunRequest:
    values: dict[str, Any] = {
        "workflow_type": "SMK",
        "workflow_type_version": "9",
        "workflow_url": "Snakefile",
        "workflow_params": {"samples": ["a", "b"], "depth": {"min": 3, "max": None}},
        "tags": {"project": "p1", "ünïcode": "✓"},
        "workflow_engine": "snakemake",
        "workflow_engine_version": "9.1",
        "workflow_engine_parameters": {"--cores": "2"},
    }
    values.update(overrides)
    return RunRequest(**values)


async def add_run(engine: AsyncEngine, **overrides: Any) -> Run:
    async with engine.begin() as conn:
        return await store.insert_run(
            conn,
            run_id=str(uuid.uuid4()),
            request=run_request(**overrides),
            engine="snakemake",
            compute_env="local",
            owner_id=await local_user_id(conn),
        )


async def move(engine: AsyncEngine, run: Run, *path: State) -> None:
    """Walk a run through states, each step a successful compare-and-set."""
    current = run.state
    for state in path:
        async with engine.begin() as conn:
            assert await store.transition(conn, run.id, expected=[current], new=state)
        current = state


def task(n: int, state: State = State.RUNNING, **overrides: Any) -> Task:
    values: dict[str, Any] = {
        "id": f"job-{n}",
        "name": f"rule_{n}",
        "state": state,
        "cmd": ["bash", "-c", f"echo {n}"],
        "start_time": datetime(2026, 11, 22, 1, 2, 3, 456789 + n, tzinfo=UTC),
        "stdout": LogSpan(path=f"logs/job-{n}.out"),
        "stderr": LogSpan(path="logs/engine.err", start=10 * n, end=10 * n + 9),
        "system_logs": [],
    }
    values.update(overrides)
    return Task(**values)


async def test_insert_and_get(db_engine: AsyncEngine) -> None:
    before = datetime.now(UTC)
    run = await add_run(db_engine)
    assert run.state is State.QUEUED
    assert run.request == run_request()
    assert (run.engine, run.compute_env) == ("snakemake", "local")
    assert (run.cmd, run.system_logs, run.outputs) == ([], [], {})
    assert run.worker_id is None
    assert run.lease_expires_at is None
    assert run.progress is None
    assert run.submitted_at.tzinfo is UTC
    assert before <= run.submitted_at <= datetime.now(UTC)

    async with db_engine.connect() as conn:
        assert await store.get_run(conn, run.id) == run
        assert await store.get_state(conn, run.id) is State.QUEUED
        assert await store.get_run(conn, "no-such-run") is None
        assert await store.get_state(conn, "no-such-run") is None


async def test_optional_request_fields_round_trip(db_engine: AsyncEngine) -> None:
    request = run_request(
        workflow_engine=None,
        workflow_engine_version=None,
        workflow_params={},
        tags={},
        workflow_engine_parameters={},
    )
    run = await add_run(db_engine, **request.__dict__)
    async with db_engine.connect() as conn:
        got = await store.get_run(conn, run.id)
    assert got is not None
    assert got.request == request


async def test_insert_writes_the_queued_event(db_engine: AsyncEngine) -> None:
    run = await add_run(db_engine)
    async with db_engine.connect() as conn:
        (event,) = await store.list_events(conn, run.id)
    assert event.run_id == run.id
    assert event.kind == "state"
    assert event.data == {"from": None, "to": "QUEUED"}
    assert event.at == run.submitted_at


async def test_list_runs_is_newest_first_in_keyset_pages(db_engine: AsyncEngine) -> None:
    made = [await add_run(db_engine, workflow_url=f"wf-{i}") for i in range(7)]
    newest_first = [r.id for r in reversed(made)]

    async with db_engine.connect() as conn:
        pages: list[list[str]] = []
        before: int | None = None
        while True:
            page = await store.list_runs(conn, before_seq=before, limit=3)
            if not page:
                break
            pages.append([r.id for r in page])
            before = page[-1].seq
    assert pages == [newest_first[0:3], newest_first[3:6], newest_first[6:7]]

    # A page boundary stays put while new runs arrive.
    async with db_engine.connect() as conn:
        first = await store.list_runs(conn, before_seq=None, limit=3)
    await add_run(db_engine)
    async with db_engine.connect() as conn:
        second = await store.list_runs(conn, before_seq=first[-1].seq, limit=3)
        assert [r.id for r in second] == newest_first[3:6]
        everything = await store.list_runs(conn, before_seq=None, limit=100)
    assert len(everything) == 8
    seqs = [r.seq for r in everything]
    assert seqs == sorted(seqs, reverse=True)


async def test_list_runs_on_empty_database(db_engine: AsyncEngine) -> None:
    async with db_engine.connect() as conn:
        assert await store.list_runs(conn, before_seq=None, limit=10) == []
        assert await store.count_by_state(conn) == {}


async def test_count_by_state(db_engine: AsyncEngine) -> None:
    made = [await add_run(db_engine) for _ in range(6)]
    await move(db_engine, made[0], State.INITIALIZING, State.RUNNING)
    await move(db_engine, made[1], State.INITIALIZING, State.RUNNING)
    await move(db_engine, made[2], State.INITIALIZING, State.RUNNING, State.COMPLETE)
    await move(db_engine, made[3], State.CANCELED)
    async with db_engine.connect() as conn:
        assert await store.count_by_state(conn) == {
            "QUEUED": 2,
            "RUNNING": 2,
            "COMPLETE": 1,
            "CANCELED": 1,
        }


async def test_transition_from_the_expected_state(db_engine: AsyncEngine) -> None:
    run = await add_run(db_engine)
    started = datetime(2026, 11, 22, 3, 4, 5, 123456, tzinfo=UTC)
    async with db_engine.begin() as conn:
        assert await store.transition(
            conn,
            run.id,
            expected=[State.QUEUED, State.INITIALIZING],
            new=State.RUNNING,
            reason="engine started",
            start_time=started,
            cmd=["snakemake", "--cores", "2"],
        )
    async with db_engine.connect() as conn:
        got = await store.get_run(conn, run.id)
        history = await store.list_events(conn, run.id)
    assert got is not None
    assert got.state is State.RUNNING
    assert got.start_time == started
    assert got.cmd == ["snakemake", "--cores", "2"]
    assert [e.data for e in history] == [
        {"from": None, "to": "QUEUED"},
        {"to": "RUNNING", "reason": "engine started"},
    ]
    assert history[1].at > history[0].at


async def test_transition_from_another_state_writes_nothing(db_engine: AsyncEngine) -> None:
    run = await add_run(db_engine)
    await move(db_engine, run, State.CANCELED)
    async with db_engine.connect() as conn:
        before = (await conn.execute(select(runs).where(runs.c.id == run.id))).mappings().one()
        events_before = await store.list_events(conn, run.id)

    async with db_engine.begin() as conn:
        assert not await store.transition(
            conn,
            run.id,
            expected=[State.QUEUED, State.RUNNING],
            new=State.INITIALIZING,
            reason="too late",
            worker_id="w1",
            start_time=datetime.now(UTC),
        )

    async with db_engine.connect() as conn:
        after = (await conn.execute(select(runs).where(runs.c.id == run.id))).mappings().one()
        assert dict(after) == dict(before)
        assert await store.list_events(conn, run.id) == events_before


async def test_transition_of_an_unknown_run(db_engine: AsyncEngine) -> None:
    async with db_engine.begin() as conn:
        assert not await store.transition(
            conn, "no-such-run", expected=[State.QUEUED], new=State.CANCELED
        )
    async with db_engine.connect() as conn:
        assert (await conn.execute(select(events))).all() == []


async def test_transition_inside_a_rolled_back_transaction_leaves_no_trace(
    db_engine: AsyncEngine,
) -> None:
    run = await add_run(db_engine)
    async with db_engine.connect() as conn:
        async with conn.begin() as tx:
            assert await store.transition(conn, run.id, expected=[State.QUEUED], new=State.CANCELED)
            await tx.rollback()
        assert await store.get_state(conn, run.id) is State.QUEUED
        assert len(await store.list_events(conn, run.id)) == 1


async def test_update_run_writes_other_fields(db_engine: AsyncEngine) -> None:
    run = await add_run(db_engine)
    async with db_engine.begin() as conn:
        await store.update_run(
            conn,
            run.id,
            handle={"backend": "local", "pid": 1234, "pgid": 1234},
            outputs={"result": {"class": "File", "path": "outputs/result.txt"}},
            system_logs=["started on host-1"],
            progress={"done": 2, "total": None, "current": ["align"]},
            exit_code=0,
        )
    async with db_engine.connect() as conn:
        got = await store.get_run(conn, run.id)
    assert got is not None
    assert got.state is State.QUEUED
    assert got.handle == {"backend": "local", "pid": 1234, "pgid": 1234}
    assert got.outputs == {"result": {"class": "File", "path": "outputs/result.txt"}}
    assert got.system_logs == ["started on host-1"]
    assert got.progress == Progress(done=2, total=None, current=["align"])
    assert got.exit_code == 0


async def test_events_page_by_id(db_engine: AsyncEngine) -> None:
    run = await add_run(db_engine)
    other = await add_run(db_engine)
    await move(db_engine, run, State.INITIALIZING, State.RUNNING, State.COMPLETE)
    await move(db_engine, other, State.CANCELED)
    async with db_engine.begin() as conn:
        await store.add_event(conn, run.id, "log", {"line": "hello"})

    async with db_engine.connect() as conn:
        every = await store.list_events(conn, run.id)
        assert [(e.kind, e.data.get("to")) for e in every] == [
            ("state", "QUEUED"),
            ("state", "INITIALIZING"),
            ("state", "RUNNING"),
            ("state", "COMPLETE"),
            ("log", None),
        ]
        ids = [e.id for e in every]
        assert ids == sorted(ids)
        assert {e.run_id for e in every} == {run.id}
        page = await store.list_events(conn, run.id, after_id=ids[1], limit=2)
        assert [e.id for e in page] == ids[2:4]
        assert await store.list_events(conn, run.id, after_id=ids[-1]) == []


async def test_save_tasks_inserts_updates_and_keeps_order(db_engine: AsyncEngine) -> None:
    run = await add_run(db_engine)
    first = [task(1), task(2), task(3)]
    async with db_engine.begin() as conn:
        assert await store.save_tasks(conn, run.id, first) == 3
    async with db_engine.begin() as conn:
        assert await store.save_tasks(conn, run.id, first) == 0

    done = task(
        2,
        State.COMPLETE,
        end_time=datetime(2026, 11, 22, 1, 5, 0, 1, tzinfo=UTC),
        exit_code=0,
    )
    # Reported in another order, one changed, one new: the first-seen order stays.
    async with db_engine.begin() as conn:
        assert await store.save_tasks(conn, run.id, [task(4), done, task(1), task(3)]) == 2
    async with db_engine.begin() as conn:
        assert await store.save_tasks(conn, run.id, [task(4), done, task(1), task(3)]) == 0

    async with db_engine.connect() as conn:
        listed = await store.list_tasks(conn, run.id, after_ordinal=None, limit=100)
        assert [t for _, t in listed] == [task(1), done, task(3), task(4)]
        ordinals = [o for o, _ in listed]
        assert ordinals == sorted(ordinals)
        page = await store.list_tasks(conn, run.id, after_ordinal=ordinals[1], limit=1)
        assert [t.id for _, t in page] == ["job-3"]
        assert await store.get_task(conn, run.id, "job-2") == done
        assert await store.get_task(conn, run.id, "job-9") is None


async def test_save_tasks_is_idempotent_for_times_in_other_zones(db_engine: AsyncEngine) -> None:
    run = await add_run(db_engine)
    ist = timezone(timedelta(hours=5, minutes=30))
    reported = [task(1, start_time=datetime(2026, 11, 22, 9, 0, 0, 999999, tzinfo=ist))]
    async with db_engine.begin() as conn:
        assert await store.save_tasks(conn, run.id, reported) == 1
    async with db_engine.begin() as conn:
        assert await store.save_tasks(conn, run.id, reported) == 0


async def test_tasks_belong_to_their_run(db_engine: AsyncEngine) -> None:
    one = await add_run(db_engine)
    two = await add_run(db_engine)
    async with db_engine.begin() as conn:
        assert await store.save_tasks(conn, one.id, [task(1), task(2)]) == 2
        # Same task ids in another run are other tasks.
        assert await store.save_tasks(conn, two.id, [task(2, State.COMPLETE)]) == 1
    async with db_engine.connect() as conn:
        assert [
            t.id for _, t in await store.list_tasks(conn, one.id, after_ordinal=None, limit=9)
        ] == [
            "job-1",
            "job-2",
        ]
        got = await store.get_task(conn, two.id, "job-2")
        assert got is not None
        assert got.state is State.COMPLETE


async def test_task_ids_differing_only_in_case_are_different_tasks(
    db_engine: AsyncEngine,
) -> None:
    """CWL job names are case-sensitive; MariaDB's default collation is not (the tables are
    created with a binary collation)."""
    run = await add_run(db_engine)
    async with db_engine.begin() as conn:
        written = await store.save_tasks(conn, run.id, [task(1, id="Align"), task(2, id="align")])
    assert written == 2
    async with db_engine.connect() as conn:
        got = await store.get_task(conn, run.id, "align")
    assert got is not None
    assert got.name == "rule_2"


async def test_unfinished_tasks_are_closed(db_engine: AsyncEngine) -> None:
    run = await add_run(db_engine)
    async with db_engine.begin() as conn:
        await store.save_tasks(
            conn,
            run.id,
            [
                task(1, State.COMPLETE, end_time=datetime(2026, 1, 1, tzinfo=UTC)),
                task(2, State.RUNNING),
                task(3, State.QUEUED),
                task(4, State.EXECUTOR_ERROR),
            ],
        )
    async with db_engine.begin() as conn:
        await store.unfinished_tasks_to(conn, run.id, State.CANCELED)
    async with db_engine.connect() as conn:
        listed = [t for _, t in await store.list_tasks(conn, run.id, after_ordinal=None, limit=9)]
    assert [t.state for t in listed] == [
        State.COMPLETE,
        State.CANCELED,
        State.CANCELED,
        State.EXECUTOR_ERROR,
    ]
    assert listed[0].end_time == datetime(2026, 1, 1, tzinfo=UTC)
    assert listed[1].end_time is not None
    assert listed[1].end_time.tzinfo is UTC


async def test_deleting_a_run_deletes_its_tasks_and_events(db_engine: AsyncEngine) -> None:
    run = await add_run(db_engine)
    keep = await add_run(db_engine)
    async with db_engine.begin() as conn:
        await store.save_tasks(conn, run.id, [task(1)])
        await store.save_tasks(conn, keep.id, [task(1)])
        await conn.execute(runs.delete().where(runs.c.id == run.id))
    async with db_engine.connect() as conn:
        assert (await conn.execute(select(tasks.c.run_id))).scalars().all() == [keep.id]
        assert set((await conn.execute(select(events.c.run_id))).scalars()) == {keep.id}


# --- datetimes --------------------------------------------------------------------------


EDGE_TIMES = [
    datetime(2026, 11, 22, 23, 59, 59, 999999, tzinfo=UTC),
    datetime(2026, 3, 29, 1, 30, 0, 1, tzinfo=timezone(timedelta(hours=-7, minutes=-30))),
    datetime(1999, 12, 31, 23, 0, 0, 500000, tzinfo=timezone(timedelta(hours=14))),
]


@pytest.mark.parametrize("when", EDGE_TIMES, ids=["utc", "behind", "ahead"])
async def test_datetimes_round_trip_as_aware_utc_with_microseconds(
    db_engine: AsyncEngine, when: datetime
) -> None:
    run = await add_run(db_engine)
    async with db_engine.begin() as conn:
        await store.update_run(conn, run.id, start_time=when, end_time=when, lease_expires_at=when)
        await store.save_tasks(conn, run.id, [task(1, start_time=when, end_time=when)])
        await store.add_event(conn, run.id, "probe", {}, at=when)

    async with db_engine.connect() as conn:
        got = await store.get_run(conn, run.id)
        got_task = await store.get_task(conn, run.id, "job-1")
        probe = [e for e in await store.list_events(conn, run.id) if e.kind == "probe"]
    assert got is not None
    assert got_task is not None
    read = [
        got.start_time,
        got.end_time,
        got.lease_expires_at,
        got_task.start_time,
        got_task.end_time,
        probe[0].at,
    ]
    for value in read:
        assert value == when
        assert value is not None
        assert value.tzinfo is UTC
        assert value.microsecond == when.astimezone(UTC).microsecond


async def test_datetimes_are_stored_in_utc_so_they_compare_across_zones(
    db_engine: AsyncEngine,
) -> None:
    early = await add_run(db_engine)
    late = await add_run(db_engine)
    base = datetime(2026, 11, 22, 12, 0, 0, tzinfo=UTC)
    plus_two = timezone(timedelta(hours=2))
    async with db_engine.begin() as conn:
        # 13:00+02:00 is 11:00 UTC: earlier than 11:30 UTC although its wall time is later.
        await store.update_run(
            conn, early.id, start_time=base.astimezone(plus_two) - timedelta(hours=1)
        )
        await store.update_run(conn, late.id, start_time=base - timedelta(minutes=30))
    async with db_engine.connect() as conn:
        ordered = (
            (
                await conn.execute(
                    select(runs.c.id).where(runs.c.start_time < base).order_by(runs.c.start_time)
                )
            )
            .scalars()
            .all()
        )
    assert ordered == [early.id, late.id]


async def test_naive_datetimes_are_refused(db_engine: AsyncEngine) -> None:
    run = await add_run(db_engine)
    async with db_engine.begin() as conn:
        with pytest.raises(StatementError, match="naive datetime"):
            await store.update_run(conn, run.id, start_time=datetime(2026, 1, 1, 12, 0))
