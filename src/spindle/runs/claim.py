"""Claiming, leasing and adopting runs: the only code that writes ``worker_id`` and
``lease_expires_at``.

A claim is one atomic step, so a run is never claimed twice however many workers race:

* SQLite: ``UPDATE runs ... WHERE seq = (SELECT seq ...) AND state = 'QUEUED' RETURNING
  *``; SQLite serialises writers, so the ``state = 'QUEUED'`` re-check guards the claim.
* PostgreSQL and MariaDB/MySQL (``claim_next``): the candidate is locked with ``SELECT ...
  FOR UPDATE SKIP LOCKED`` and updated by key in the same transaction (the row lock makes
  the pair atomic; MariaDB has no ``UPDATE ... RETURNING`` and reads the row back).
  ``adopt_expired`` uses the single ``UPDATE ... WHERE seq = (SELECT ... FOR UPDATE SKIP
  LOCKED)`` on PostgreSQL.

Run groups: a queued run of a group is a candidate only while its group has room
(``max_runs`` runs holding a slot, ``max_cpus`` among them) and no queued run of the same
group outranks it (higher ``priority``, then older). A full group never holds back other
runs: its runs are simply not candidates. Two workers could both see room for one last
run, so on PostgreSQL and MariaDB a grouped candidate is claimed only after locking its
group's row (``SELECT ... FOR UPDATE``) and counting again; the second worker waits for the
first to commit, finds the group full and looks further. SQLite does it all in the single
``UPDATE`` statement, which SQLite runs alone.
"""

from __future__ import annotations

from collections.abc import Collection
from datetime import datetime

from sqlalchemy import Select, and_, func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.sql.elements import ColumnElement

from spindle.db.tables import run_groups, runs
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
        guards.append(_unowned(guard_lease_before))
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


_ACTIVE = sorted(s.value for s in ACTIVE_STATES)


def _unowned(now: datetime) -> ColumnElement[bool]:
    """No worker holds the run: its lease ran out, or it has none (a run left without one
    by an older Spindle, whose clean stop dropped leases instead of expiring them)."""
    return or_(runs.c.lease_expires_at.is_(None), runs.c.lease_expires_at < now)


#: aliases of ``runs`` for the correlated subqueries: made once, as an alias copies every
#: column of the table (making them on each claim doubled its cost).
_HELD = runs.alias("held")
_AHEAD = runs.alias("ahead")


def _has_room() -> ColumnElement[bool]:
    """The candidate's group (``runs`` row of the outer query) has room for it: correlated
    subqueries over the group's limits and the runs holding its slots."""
    held = _HELD
    holding = [held.c.group_id == runs.c.group_id, held.c.state.in_(_ACTIVE)]
    max_runs = select(run_groups.c.max_runs).where(run_groups.c.id == runs.c.group_id)
    max_cpus = select(run_groups.c.max_cpus).where(run_groups.c.id == runs.c.group_id)
    running = select(func.count()).select_from(held).where(*holding)
    cpus = select(func.coalesce(func.sum(held.c.cpus), 0)).where(*holding)
    max_runs_v = max_runs.scalar_subquery()
    max_cpus_v = max_cpus.scalar_subquery()
    return and_(
        or_(max_runs_v.is_(None), running.scalar_subquery() < max_runs_v),
        or_(max_cpus_v.is_(None), cpus.scalar_subquery() + runs.c.cpus <= max_cpus_v),
    )


def _not_outranked() -> ColumnElement[bool]:
    """No queued run of the same group comes first (higher priority, then older)."""
    other = _AHEAD
    ahead = select(other.c.seq).where(
        other.c.group_id == runs.c.group_id,
        other.c.state == State.QUEUED.value,
        or_(
            other.c.priority > runs.c.priority,
            and_(other.c.priority == runs.c.priority, other.c.seq < runs.c.seq),
        ),
    )
    return ~ahead.exists()


#: a QUEUED run may start: it is in no group, or its group has room and it is next there
_MAY_START = or_(runs.c.group_id.is_(None), and_(_has_room(), _not_outranked()))


async def _group_has_room(conn: AsyncConnection, group_id: str, cpus: int) -> bool:
    """Count again, under the group's row lock (taken here): does the run fit now? The lock
    makes concurrent claims into one group take turns; READ COMMITTED (both servers, see
    ``db.engine``) lets each count see what the one before committed."""
    limits = (
        await conn.execute(
            select(run_groups.c.max_runs, run_groups.c.max_cpus)
            .where(run_groups.c.id == group_id)
            .with_for_update()
        )
    ).first()
    if limits is None:
        return True  # deleted meanwhile (its runs were detached)
    max_runs, max_cpus = limits
    if max_runs is None and max_cpus is None:
        return True
    held = _HELD
    running, used = (
        await conn.execute(
            select(func.count(), func.coalesce(func.sum(held.c.cpus), 0)).where(
                held.c.group_id == group_id, held.c.state.in_(_ACTIVE)
            )
        )
    ).one()
    if max_runs is not None and running >= max_runs:
        return False
    return max_cpus is None or int(used) + cpus <= max_cpus


async def claim_next(
    conn: AsyncConnection, *, worker_id: str, now: datetime, lease_until: datetime
) -> Run | None:
    """Take the oldest QUEUED run that may start (its group, if any, has room for it):
    QUEUED → INITIALIZING, owned by ``worker_id``."""
    values: dict[str, object] = {
        "state": State.INITIALIZING.value,
        "worker_id": worker_id,
        "lease_expires_at": lease_until,
        "updated_at": now,
    }
    may_start = _MAY_START
    run: Run | None = None
    if conn.dialect.name == "sqlite":
        candidate = (
            select(runs.c.seq)
            .where(runs.c.state == State.QUEUED.value, may_start)
            .order_by(runs.c.seq)
            .limit(1)
        )
        run = await _claim_one(conn, candidate, [State.QUEUED], None, values)
    else:
        full: set[str] = set()  # groups found full under their lock: look past them
        while True:
            stmt = (
                select(runs.c.seq, runs.c.group_id, runs.c.cpus)
                .where(runs.c.state == State.QUEUED.value, may_start)
                .order_by(runs.c.seq)
                .limit(1)
                .with_for_update(skip_locked=True)
            )
            if full:
                stmt = stmt.where(or_(runs.c.group_id.is_(None), runs.c.group_id.not_in(full)))
            row = (await conn.execute(stmt)).first()
            if row is None:
                return None
            seq, group_id, cpus = row
            if group_id is not None and not await _group_has_room(conn, group_id, cpus):
                full.add(group_id)
                continue
            run = await _claim_by_seq(conn, seq, values)  # locked and QUEUED: it is ours
            break
    if run is not None:
        await add_event(
            conn, run.id, "state", {"to": State.INITIALIZING.value, "worker": worker_id}, at=now
        )
    return run


async def _claim_by_seq(conn: AsyncConnection, seq: int, values: dict[str, object]) -> Run | None:
    """The locked candidate ``seq``, still QUEUED, updated with ``values``."""
    guard = [runs.c.seq == seq, runs.c.state == State.QUEUED.value]
    if _is_mysql(conn):
        result = await conn.execute(update(runs).where(*guard).values(values))
        if result.rowcount != 1:
            return None
        row = (await conn.execute(select(runs).where(runs.c.seq == seq))).mappings().one()
        return run_from_row(row)
    returned = (
        (await conn.execute(update(runs).where(*guard).values(values).returning(*runs.c)))
        .mappings()
        .first()
    )
    return run_from_row(returned) if returned else None


async def adopt_expired(
    conn: AsyncConnection, *, worker_id: str, now: datetime, lease_until: datetime
) -> Run | None:
    """Take over one active run that no worker holds: its owner stopped renewing the lease
    (it died), or let it expire when it stopped cleanly (``expire_leases``)."""
    active = [s.value for s in ACTIVE_STATES]
    candidate = (
        select(runs.c.seq)
        .where(runs.c.state.in_(active), _unowned(now))
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


async def expire_leases(
    conn: AsyncConnection, *, worker_id: str, run_ids: Collection[str], now: datetime
) -> None:
    """End this worker's leases on ``run_ids`` now (it is stopping and leaves their engines
    running): any worker, or the next start, adopts them at once."""
    if not run_ids:
        return
    await conn.execute(
        update(runs)
        .where(runs.c.id.in_(list(run_ids)), runs.c.worker_id == worker_id)
        .values(lease_expires_at=now)
    )


async def release(conn: AsyncConnection, *, run_id: str, worker_id: str) -> None:
    """Drop the lease of a run that ended. Never for a run still active: one without a
    lease is adopted, but ``expire_leases`` says why it was let go."""
    await conn.execute(
        update(runs)
        .where(runs.c.id == run_id, runs.c.worker_id == worker_id)
        .values(worker_id=None, lease_expires_at=None)
    )
