"""Reading and writing runs, tasks and events. Repository functions: they take a connection
inside a transaction the caller (a service) owns, and never commit.

They return plain domain records (``spindle.domain``), never rows. Every state change goes
through :func:`transition`: one compare-and-set write guarded by the expected old state,
plus its event, in the caller's transaction.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from datetime import datetime
from typing import Any, TypeVar

from sqlalchemy import Select, func, insert, select, update
from sqlalchemy.engine import RowMapping
from sqlalchemy.ext.asyncio import AsyncConnection

from spindle.db.tables import events, run_groups, run_texts, runs, tasks
from spindle.db.types import utcnow
from spindle.domain import ACTIVE_STATES, Event, LogSpan, Progress, Run, RunRequest, State, Task

T = TypeVar("T", bound=tuple[Any, ...])


def run_from_row(row: RowMapping) -> Run:
    return Run(
        id=row["id"],
        seq=row["seq"],
        state=State(row["state"]),
        request=RunRequest(
            workflow_type=row["workflow_type"],
            workflow_type_version=row["workflow_type_version"],
            workflow_url=row["workflow_url"],
            workflow_params=row["workflow_params"],
            tags=row["tags"],
            workflow_engine=row["workflow_engine"],
            workflow_engine_version=row["workflow_engine_version"],
            workflow_engine_parameters=row["workflow_engine_parameters"],
        ),
        engine=row["engine"],
        compute_env=row["compute_env"],
        submitted_at=row["submitted_at"],
        start_time=row["start_time"],
        end_time=row["end_time"],
        exit_code=row["exit_code"],
        cmd=row["cmd"],
        system_logs=row["system_logs"],
        outputs=row["outputs"],
        progress=Progress(**row["progress"]) if row["progress"] else None,
        handle=row["handle"],
        worker_id=row["worker_id"],
        lease_expires_at=row["lease_expires_at"],
        owner_id=row["owner_id"],
        group_id=row["group_id"],
        priority=row["priority"],
        cpus=row["cpus"],
        deleted_at=row.get("deleted_at"),
        work_removed_at=row.get("work_removed_at"),
        files_removed_at=row.get("files_removed_at"),
    )


def _span(raw: Mapping[str, Any] | None) -> LogSpan | None:
    if raw is None:
        return None
    return LogSpan(path=raw["path"], start=raw.get("start"), end=raw.get("end"))


def _span_json(span: LogSpan | None) -> dict[str, Any] | None:
    if span is None:
        return None
    return {"path": span.path, "start": span.start, "end": span.end}


def task_from_row(row: RowMapping) -> Task:
    return Task(
        id=row["id"],
        name=row["name"],
        state=State(row["state"]),
        cmd=row["cmd"],
        start_time=row["start_time"],
        end_time=row["end_time"],
        exit_code=row["exit_code"],
        stdout=_span(row["stdout"]),
        stderr=_span(row["stderr"]),
        system_logs=row["system_logs"],
    )


def event_from_row(row: RowMapping) -> Event:
    return Event(
        id=row["id"], run_id=row["run_id"], at=row["at"], kind=row["kind"], data=row["data"]
    )


def _owned(stmt: Select[T], owner_id: int | None) -> Select[T]:
    """Only the runs of ``owner_id`` (None: every run). Every read that a caller's scope
    limits goes through here."""
    return stmt if owner_id is None else stmt.where(runs.c.owner_id == owner_id)


async def insert_run(
    conn: AsyncConnection,
    *,
    run_id: str,
    request: RunRequest,
    engine: str,
    compute_env: str,
    owner_id: int,
    group_id: str | None = None,
    priority: int = 0,
    cpus: int = 1,
) -> Run:
    now = utcnow()
    values: dict[str, Any] = {
        "id": run_id,
        "owner_id": owner_id,
        "group_id": group_id,
        "priority": priority,
        "cpus": cpus,
        "state": State.QUEUED.value,
        "workflow_type": request.workflow_type,
        "workflow_type_version": request.workflow_type_version,
        "workflow_url": request.workflow_url,
        "workflow_engine": request.workflow_engine,
        "workflow_engine_version": request.workflow_engine_version,
        "workflow_params": request.workflow_params,
        "workflow_engine_parameters": request.workflow_engine_parameters,
        "tags": request.tags,
        "engine": engine,
        "compute_env": compute_env,
        "submitted_at": now,
        "updated_at": now,
        "cmd": [],
        "system_logs": [],
        "outputs": {},
    }
    await conn.execute(insert(runs).values(values))
    await add_event(conn, run_id, "state", {"from": None, "to": State.QUEUED.value}, at=now)
    row = (await conn.execute(select(runs).where(runs.c.id == run_id))).mappings().one()
    await conn.execute(insert(run_texts).values(seq=row["seq"], text=search_text(run_id, request)))
    return run_from_row(row)


#: characters of a run's searchable text that are kept (a TEXT column on MariaDB holds
#: 65,535 bytes, at most 4 a character)
MAX_SEARCH_TEXT = 16_000


def search_text(run_id: str, request: RunRequest) -> str:
    """What a free-text search finds a run by: its id, workflow URL and ``key=value`` tags,
    one a line, lowercased."""
    lines = [run_id, request.workflow_url, *(f"{k}={v}" for k, v in request.tags.items())]
    return "\n".join(lines).lower()[:MAX_SEARCH_TEXT]


async def get_run(conn: AsyncConnection, run_id: str, *, owner_id: int | None = None) -> Run | None:
    """The run, if it exists and (with ``owner_id``) belongs to that user."""
    stmt = _owned(select(runs).where(runs.c.id == run_id), owner_id)
    row = (await conn.execute(stmt)).mappings().first()
    return run_from_row(row) if row else None


async def get_state(
    conn: AsyncConnection, run_id: str, *, owner_id: int | None = None
) -> State | None:
    """The run's state, if it exists and (with ``owner_id``) belongs to that user."""
    stmt = _owned(select(runs.c.state).where(runs.c.id == run_id), owner_id)
    value = (await conn.execute(stmt)).scalar_one_or_none()
    return State(value) if value is not None else None


async def list_runs(
    conn: AsyncConnection,
    *,
    before_seq: int | None,
    limit: int,
    owner_id: int | None = None,
    group_id: str | None = None,
) -> list[Run]:
    """Newest first, keyset-paged on ``seq`` (stable while runs are added); with
    ``owner_id``, that user's runs only; with ``group_id``, that run group's only."""
    stmt = _owned(select(runs).order_by(runs.c.seq.desc()).limit(limit), owner_id)
    stmt = stmt.where(runs.c.deleted_at.is_(None))  # (DELETE /runs/{id}: tombstones)
    if group_id is not None:
        stmt = stmt.where(runs.c.group_id == group_id)
    if before_seq is not None:
        stmt = stmt.where(runs.c.seq < before_seq)
    rows = (await conn.execute(stmt)).mappings().all()
    return [run_from_row(r) for r in rows]


async def count_by_state(conn: AsyncConnection, *, owner_id: int | None = None) -> dict[str, int]:
    stmt = _owned(select(runs.c.state, func.count()).group_by(runs.c.state), owner_id)
    return {state: int(n) for state, n in (await conn.execute(stmt)).all()}


async def get_watch(
    conn: AsyncConnection, run_id: str
) -> tuple[State, datetime | None, int | None] | None:
    """What the worker watches a running run by: its state, its start time and its group's
    ``max_duration`` in seconds (None: no group, or no limit)."""
    stmt = (
        select(runs.c.state, runs.c.start_time, run_groups.c.max_duration_seconds)
        .select_from(runs.outerjoin(run_groups, run_groups.c.id == runs.c.group_id))
        .where(runs.c.id == run_id)
    )
    row = (await conn.execute(stmt)).first()
    if row is None:
        return None
    return State(row[0]), row[1], row[2]


async def unfinished_run_ids(
    conn: AsyncConnection, *, group_id: str, owner_id: int | None = None
) -> list[str]:
    """The ids of a run group's runs that have not ended, oldest first."""
    unfinished = [State.QUEUED.value, *(s.value for s in ACTIVE_STATES)]
    stmt = _owned(
        select(runs.c.id)
        .where(runs.c.group_id == group_id, runs.c.state.in_(unfinished))
        .order_by(runs.c.seq),
        owner_id,
    )
    return list((await conn.execute(stmt)).scalars())


async def move_queued_run(conn: AsyncConnection, run_id: str, group_id: str | None) -> bool:
    """Put a run that is still QUEUED into ``group_id`` (None: no group); False if it is
    not QUEUED (any more)."""
    result = await conn.execute(
        update(runs)
        .where(runs.c.id == run_id, runs.c.state == State.QUEUED.value)
        .values(group_id=group_id, updated_at=utcnow())
    )
    return bool(result.rowcount == 1)


async def transition(
    conn: AsyncConnection,
    run_id: str,
    *,
    expected: Collection[State],
    new: State,
    reason: str | None = None,
    **values: Any,
) -> bool:
    """Compare-and-set the run's state; write the event. False if the state was not one of
    ``expected`` (someone else moved it first), and then nothing is written."""
    now = utcnow()
    result = await conn.execute(
        update(runs)
        .where(runs.c.id == run_id, runs.c.state.in_([s.value for s in expected]))
        .values(state=new.value, updated_at=now, **values)
    )
    if result.rowcount != 1:
        return False
    data: dict[str, Any] = {"to": new.value}
    if reason:
        data["reason"] = reason
    await add_event(conn, run_id, "state", data, at=now)
    return True


async def update_run(conn: AsyncConnection, run_id: str, **values: Any) -> None:
    """Write fields that are not the state (handle, outputs, logs)."""
    await conn.execute(
        update(runs).where(runs.c.id == run_id).values(updated_at=utcnow(), **values)
    )


async def append_system_log(conn: AsyncConnection, run_id: str, line: str) -> None:
    """Add one line to a run's system_logs (read and written in the caller's transaction)."""
    row = (await conn.execute(select(runs.c.system_logs).where(runs.c.id == run_id))).one_or_none()
    if row is None:
        return
    await update_run(conn, run_id, system_logs=[*(row.system_logs or []), line])


async def add_event(
    conn: AsyncConnection,
    run_id: str,
    kind: str,
    data: dict[str, Any],
    *,
    at: datetime | None = None,
) -> None:
    await conn.execute(
        insert(events).values(run_id=run_id, at=at or utcnow(), kind=kind, data=data)
    )


async def list_events(
    conn: AsyncConnection, run_id: str, *, after_id: int = 0, limit: int = 1000
) -> list[Event]:
    rows = (
        await conn.execute(
            select(events)
            .where(events.c.run_id == run_id, events.c.id > after_id)
            .order_by(events.c.id)
            .limit(limit)
        )
    ).mappings()
    return [event_from_row(r) for r in rows]


async def list_all_events(
    conn: AsyncConnection,
    *,
    after_id: int,
    upto_id: int | None = None,
    limit: int,
    owner_id: int | None = None,
) -> list[Event]:
    """The events with ids after ``after_id`` (and up to ``upto_id``) of every run, or with
    ``owner_id`` of that user's runs only, oldest first."""
    stmt = select(events).where(events.c.id > after_id)
    if upto_id is not None:
        stmt = stmt.where(events.c.id <= upto_id)
    if owner_id is not None:
        stmt = stmt.join(runs, runs.c.id == events.c.run_id).where(runs.c.owner_id == owner_id)
    rows = (await conn.execute(stmt.order_by(events.c.id).limit(limit))).mappings()
    return [event_from_row(r) for r in rows]


async def list_new_events(
    conn: AsyncConnection, *, after_id: int, upto_id: int, limit: int
) -> list[tuple[Event, int]]:
    """The events with ids after ``after_id`` and up to ``upto_id`` of every run, each with
    its run's owner, oldest first (the shared poll of ``spindle.runs.feed``)."""
    stmt = (
        select(events, runs.c.owner_id.label("run_owner_id"))
        .join(runs, runs.c.id == events.c.run_id)
        .where(events.c.id > after_id, events.c.id <= upto_id)
        .order_by(events.c.id)
        .limit(limit)
    )
    return [
        (event_from_row(r), int(r["run_owner_id"])) for r in (await conn.execute(stmt)).mappings()
    ]


async def get_progress_of(
    conn: AsyncConnection, run_ids: Collection[str]
) -> dict[str, tuple[State, Progress | None]]:
    """:func:`get_progress` of several runs at once (a run that is gone is left out)."""
    if not run_ids:
        return {}
    stmt = select(runs.c.id, runs.c.state, runs.c.progress).where(runs.c.id.in_(list(run_ids)))
    return {
        row.id: (State(row.state), Progress(**row.progress) if row.progress else None)
        for row in (await conn.execute(stmt)).all()
    }


async def last_event_id(conn: AsyncConnection) -> int:
    return int((await conn.execute(select(func.max(events.c.id)))).scalar_one() or 0)


async def get_progress(conn: AsyncConnection, run_id: str) -> tuple[State, Progress | None] | None:
    """A run's state and progress, without the rest of its row."""
    row = (
        await conn.execute(select(runs.c.state, runs.c.progress).where(runs.c.id == run_id))
    ).first()
    if row is None:
        return None
    return State(row.state), Progress(**row.progress) if row.progress else None


async def save_tasks(conn: AsyncConnection, run_id: str, reported: Iterable[Task]) -> int:
    """Insert new tasks and update changed ones, keeping first-seen order. Returns how many
    rows were written."""
    existing = {
        r["id"]: r
        for r in (await conn.execute(select(tasks).where(tasks.c.run_id == run_id))).mappings()
    }
    next_ordinal = max((r["ordinal"] for r in existing.values()), default=-1) + 1
    written = 0
    for task in reported:
        values: dict[str, Any] = {
            "name": task.name,
            "state": task.state.value,
            "cmd": task.cmd,
            "start_time": task.start_time,
            "end_time": task.end_time,
            "exit_code": task.exit_code,
            "stdout": _span_json(task.stdout),
            "stderr": _span_json(task.stderr),
            "system_logs": task.system_logs,
        }
        old = existing.get(task.id)
        if old is None:
            await conn.execute(
                insert(tasks).values(run_id=run_id, id=task.id, ordinal=next_ordinal, **values)
            )
            next_ordinal += 1
            written += 1
        elif any(old[k] != v for k, v in values.items()):
            await conn.execute(
                update(tasks).where(tasks.c.run_id == run_id, tasks.c.id == task.id).values(values)
            )
            written += 1
    return written


async def list_tasks(
    conn: AsyncConnection, run_id: str, *, after_ordinal: int | None, limit: int
) -> list[tuple[int, Task]]:
    stmt = select(tasks).where(tasks.c.run_id == run_id).order_by(tasks.c.ordinal).limit(limit)
    if after_ordinal is not None:
        stmt = stmt.where(tasks.c.ordinal > after_ordinal)
    return [(r["ordinal"], task_from_row(r)) for r in (await conn.execute(stmt)).mappings()]


async def get_task(conn: AsyncConnection, run_id: str, task_id: str) -> Task | None:
    row = (
        (await conn.execute(select(tasks).where(tasks.c.run_id == run_id, tasks.c.id == task_id)))
        .mappings()
        .first()
    )
    return task_from_row(row) if row else None


async def unfinished_tasks_to(conn: AsyncConnection, run_id: str, state: State) -> None:
    """Close tasks still marked running when their run ended (cancelled, lost)."""
    await conn.execute(
        update(tasks)
        .where(
            tasks.c.run_id == run_id,
            tasks.c.state.in_([State.RUNNING.value, State.QUEUED.value, State.INITIALIZING.value]),
        )
        .values(state=state.value, end_time=utcnow())
    )
