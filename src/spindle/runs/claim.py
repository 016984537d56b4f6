"""Claiming, leasing and adopting runs: the only code that writes ``worker_id`` and
``lease_expires_at``.

A claim is one atomic step, so a run is never claimed twice however many workers race:

* PostgreSQL: ``UPDATE runs ... WHERE seq = (SELECT seq ... FOR UPDATE SKIP LOCKED) AND
  state = 'QUEUED' RETURNING *``.
* SQLite: the same statement; SQLAlchemy drops ``FOR UPDATE`` there, and SQLite serialises
  writers, so the ``state = 'QUEUED'`` re-check is what guards the claim.
* MariaDB/MySQL: no ``UPDATE ... RETURNING`` and no subquery on the updated table, so the
  candidate is locked with ``SELECT ... FOR UPDATE SKIP LOCKED`` and updated by key in the
  same transaction (the row lock makes the pair atomic).
"""

from __future__ import annotations

from collections.abc import Collection
from datetime import datetime

from sqlalchemy import Select, select, update
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.sql.elements import ColumnElement

from spindle.db.tables import runs
from spindle.domain import ACTIVE_STATES, Run, State
from spindle.runs.store import add_event, run_from_row


def _is_mysql(conn: AsyncConnection) -> bool:
    return conn.dialect.name in ("mysql", "mariadb")


async def _claim_one(
    conn: AsyncConnection,
    candidate: Select[tuple[int]],
    guard_states: Collection[State],
    guard_lease_before: datetime | None,
    values: dict[str, object],
) -> Run | None:
    guards: list[ColumnElement[bool]] = [runs.c.state.in_([s.value for s in guard_states])]
    if guard_lease_before is not None:
        guards.append(runs.c.lease_expires_at < guard_lease_before)
    if _is_mysql(conn):
        seq = (await conn.execute(candidate)).scalar_one_or_none()
        if seq is None:
            return None
        result = await conn.execute(update(runs).where(runs.c.seq == seq, *guards).values(values))
        if result.rowcount != 1:
            return None
        claimed = (await conn.execute(select(runs).where(runs.c.seq == seq))).mappings().one()
        return run_from_row(claimed)
    stmt = (
        update(runs)
        .where(runs.c.seq == candidate.scalar_subquery(), *guards)
        .values(values)
        .returning(*runs.c)
    )
    row = (await conn.execute(stmt)).mappings().first()
    return run_from_row(row) if row else None


async def claim_next(
    conn: AsyncConnection, *, worker_id: str, now: datetime, lease_until: datetime
) -> Run | None:
    """Take the oldest QUEUED run: QUEUED → INITIALIZING, owned by ``worker_id``."""
    candidate = (
        select(runs.c.seq)
        .where(runs.c.state == State.QUEUED.value)
        .order_by(runs.c.seq)
        .limit(1)
        .with_for_update(skip_locked=True)
    )
    run = await _claim_one(
        conn,
        candidate,
        [State.QUEUED],
        None,
        {
            "state": State.INITIALIZING.value,
            "worker_id": worker_id,
            "lease_expires_at": lease_until,
            "updated_at": now,
        },
    )
    if run is not None:
        await add_event(
            conn, run.id, "state", {"to": State.INITIALIZING.value, "worker": worker_id}, at=now
        )
    return run


async def adopt_expired(
    conn: AsyncConnection, *, worker_id: str, now: datetime, lease_until: datetime
) -> Run | None:
    """Take over one active run whose owner stopped renewing its lease (it died)."""
    active = [s.value for s in ACTIVE_STATES]
    candidate = (
        select(runs.c.seq)
        .where(runs.c.state.in_(active), runs.c.lease_expires_at < now)
        .order_by(runs.c.seq)
        .limit(1)
        .with_for_update(skip_locked=True)
    )
    run = await _claim_one(
        conn,
        candidate,
        ACTIVE_STATES,
        now,
        {"worker_id": worker_id, "lease_expires_at": lease_until, "updated_at": now},
    )
    if run is not None:
        await add_event(conn, run.id, "adopted", {"worker": worker_id}, at=now)
    return run


async def renew_leases(
    conn: AsyncConnection, *, worker_id: str, run_ids: Collection[str], lease_until: datetime
) -> set[str]:
    """Extend this worker's leases; returns the ids it still owns (a run another worker
    adopted after a long stall is no longer ours, and must be let go)."""
    if not run_ids:
        return set()
    await conn.execute(
        update(runs)
        .where(runs.c.id.in_(list(run_ids)), runs.c.worker_id == worker_id)
        .values(lease_expires_at=lease_until)
    )
    owned = await conn.execute(
        select(runs.c.id).where(runs.c.id.in_(list(run_ids)), runs.c.worker_id == worker_id)
    )
    return set(owned.scalars())


async def release(conn: AsyncConnection, *, run_id: str, worker_id: str) -> None:
    """Drop the lease (the run ended, or this worker is shutting down cleanly)."""
    await conn.execute(
        update(runs)
        .where(runs.c.id == run_id, runs.c.worker_id == worker_id)
        .values(worker_id=None, lease_expires_at=None)
    )
