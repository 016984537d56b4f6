"""Run groups in the database: repository functions like those in ``store`` (they take the
caller's connection, never commit, and return domain records). The claim reads the limits
itself (``claim.claim_next``)."""

from __future__ import annotations

import enum
from collections.abc import Collection, Mapping
from typing import Any

from sqlalchemy import ColumnElement, Select, delete, func, insert, or_, select, tuple_, update
from sqlalchemy.engine import RowMapping
from sqlalchemy.ext.asyncio import AsyncConnection

from spindle.db.tables import run_groups, runs
from spindle.domain import ACTIVE_STATES, RunGroup


class GroupSort(enum.StrEnum):
    """What a list of run groups can be sorted by; ties are broken by creation order."""

    CREATED = "created"
    NAME = "name"


def group_from_row(
    row: RowMapping,
    counts: Mapping[str, int] | None = None,
    running: int = 0,
    cpus_in_use: int = 0,
) -> RunGroup:
    seconds = row["max_duration_seconds"]
    return RunGroup(
        id=row["id"],
        seq=row["seq"],
        name=row["name"],
        description=row["description"],
        owner_id=row["owner_id"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        max_runs=row["max_runs"],
        max_cpus=row["max_cpus"],
        max_duration=None if seconds is None else seconds / 60,
        compute_env=row["compute_env"],
        counts=dict(counts or {}),
        running=running,
        cpus_in_use=cpus_in_use,
    )


def _owned(stmt: Select[Any], owner_id: int | None) -> Select[Any]:
    return stmt if owner_id is None else stmt.where(run_groups.c.owner_id == owner_id)


async def insert_group(conn: AsyncConnection, values: Mapping[str, Any]) -> None:
    await conn.execute(insert(run_groups).values(dict(values)))


async def get_group_row(
    conn: AsyncConnection, group_id: str, *, owner_id: int | None = None, lock: bool = False
) -> RowMapping | None:
    stmt = _owned(select(run_groups).where(run_groups.c.id == group_id), owner_id)
    if lock:
        stmt = stmt.with_for_update()
    row: RowMapping | None = (await conn.execute(stmt)).mappings().first()
    return row


async def with_usage(conn: AsyncConnection, rows: Collection[RowMapping]) -> list[RunGroup]:
    """The groups of ``rows`` with their runs counted by state and their usage now: one
    query for all of them (``ix_runs_group_id_state_priority_seq``)."""
    ids = [r["id"] for r in rows]
    counts: dict[str, dict[str, int]] = {i: {} for i in ids}
    cpus: dict[str, int] = dict.fromkeys(ids, 0)
    if ids:
        stmt = (
            select(runs.c.group_id, runs.c.state, func.count(), func.sum(runs.c.cpus))
            .where(runs.c.group_id.in_(ids))
            .group_by(runs.c.group_id, runs.c.state)
        )
        active = {s.value for s in ACTIVE_STATES}
        for group_id, state, n, total in (await conn.execute(stmt)).all():
            counts[group_id][state] = int(n)
            if state in active:
                cpus[group_id] += int(total or 0)
    out = []
    for row in rows:
        c = counts[row["id"]]
        running = sum(n for state, n in c.items() if state in {s.value for s in ACTIVE_STATES})
        out.append(group_from_row(row, c, running, cpus[row["id"]]))
    return out


def sort_key_of(group: RunGroup, sort: GroupSort) -> list[Any]:
    return [group.seq] if sort is GroupSort.CREATED else [group.name, group.seq]


async def list_groups(
    conn: AsyncConnection,
    *,
    text: str,
    sort: GroupSort,
    descending: bool,
    after: list[Any] | None,
    back: bool,
    limit: int,
    owner_id: int | None,
) -> list[RowMapping]:
    """Keyset-paged rows in ``sort`` order (reversed when paging ``back``)."""
    stmt = _owned(select(run_groups), owner_id)
    if text:
        pattern = text.lower()
        stmt = stmt.where(
            or_(
                func.lower(run_groups.c.name).contains(pattern, autoescape=True),
                func.lower(run_groups.c.description).contains(pattern, autoescape=True),
                run_groups.c.id.contains(pattern, autoescape=True),
            )
        )
    down = descending != back
    columns: list[Any] = (
        [run_groups.c.seq] if sort is GroupSort.CREATED else [run_groups.c.name, run_groups.c.seq]
    )
    if after is not None:
        left: Any = columns[0] if len(columns) == 1 else tuple_(*columns)
        right: Any = after[0] if len(columns) == 1 else tuple_(*after)
        where: ColumnElement[bool] = left < right if down else left > right
        stmt = stmt.where(where)
    stmt = stmt.order_by(*(c.desc() if down else c.asc() for c in columns)).limit(limit)
    return list((await conn.execute(stmt)).mappings().all())


async def update_group(conn: AsyncConnection, group_id: str, values: Mapping[str, Any]) -> None:
    await conn.execute(update(run_groups).where(run_groups.c.id == group_id).values(dict(values)))


async def count_runs(conn: AsyncConnection, group_id: str) -> int:
    stmt = select(func.count()).select_from(runs).where(runs.c.group_id == group_id)
    return int((await conn.execute(stmt)).scalar_one())


async def largest_queued_cpus(conn: AsyncConnection, group_id: str) -> int:
    """The most CPUs a QUEUED run of the group asked for (0 without queued runs)."""
    stmt = select(func.max(runs.c.cpus)).where(
        runs.c.group_id == group_id, runs.c.state == "QUEUED"
    )
    return int((await conn.execute(stmt)).scalar_one() or 0)


async def detach_runs(conn: AsyncConnection, group_id: str) -> int:
    result = await conn.execute(
        update(runs).where(runs.c.group_id == group_id).values(group_id=None)
    )
    return int(result.rowcount)


async def delete_group(conn: AsyncConnection, group_id: str) -> None:
    await conn.execute(delete(run_groups).where(run_groups.c.id == group_id))
