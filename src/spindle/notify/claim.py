"""Claiming deliveries and recording their attempts: the only code that writes a
delivery's ``state``, ``worker_id`` and ``lease_expires_at`` (the outbox inserts them
pending, or already claimed for a test-send; a redeliver claims one through
:func:`reopen`).

A claim is one atomic step, as a run's is (``runs/claim.py``), so two dispatchers never
send one delivery at once: SQLite runs ``UPDATE ... WHERE seq = (SELECT ...) AND <due>
RETURNING``, alone among writers; PostgreSQL and MariaDB lock the candidate with ``SELECT
... FOR UPDATE SKIP LOCKED`` and update it by key in the same transaction. A claimed
delivery is ``sending`` under a lease; one whose dispatcher died (the lease ran out) is due
again, with the same id, so its receiver can tell a repeat.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import and_, insert, or_, select, update
from sqlalchemy.engine import RowMapping
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.sql.elements import ColumnElement

from spindle.db.tables import notify_attempts, notify_deliveries, notify_subscriptions
from spindle.notify.channels import Outcome
from spindle.notify.events import SUBSCRIPTION_FAILING
from spindle.notify.outbox import add_notification

d = notify_deliveries


@dataclass(frozen=True)
class Delivery:
    seq: int
    id: str
    subscription_id: str | None
    owner_id: int
    channel: str
    target: str
    event: str
    run_id: str | None
    group_id: str | None
    payload: dict[str, Any]
    state: str
    attempts: int
    created_at: datetime
    next_attempt_at: datetime
    window_start: datetime
    delivered_at: datetime | None
    last_error: str | None
    worker_id: str | None

    @classmethod
    def from_row(cls, row: RowMapping) -> Delivery:
        return cls(**{name: row[name] for name in cls.__dataclass_fields__})


def _due(now: datetime) -> ColumnElement[bool]:
    return or_(
        and_(d.c.state == "pending", d.c.next_attempt_at <= now),
        and_(d.c.state == "sending", d.c.lease_expires_at < now),
    )


async def claim_due(
    conn: AsyncConnection,
    *,
    worker_id: str,
    now: datetime,
    lease_until: datetime,
    limit: int = 1,
) -> list[Delivery]:
    """Take up to ``limit`` deliveries due first: ``sending``, owned by ``worker_id`` until
    ``lease_until``."""
    values = {"state": "sending", "worker_id": worker_id, "lease_expires_at": lease_until}
    due = _due(now)
    candidates = select(d.c.seq).where(due).order_by(d.c.next_attempt_at, d.c.seq).limit(limit)
    if conn.dialect.name == "sqlite":
        # SQLite runs one writer at a time: the due re-check in the one statement suffices
        stmt = update(d).where(d.c.seq.in_(candidates), due).values(values).returning(*d.c)
        rows = (await conn.execute(stmt)).mappings().all()
        return sorted((Delivery.from_row(r) for r in rows), key=lambda x: x.seq)
    locked = list((await conn.execute(candidates.with_for_update(skip_locked=True))).scalars())
    if not locked:
        return []
    guard = [d.c.seq.in_(locked), due]  # locked by us: still due, nobody else can take them
    if conn.dialect.name in ("mysql", "mariadb"):
        await conn.execute(update(d).where(*guard).values(values))
        mine = select(d).where(d.c.seq.in_(locked), d.c.worker_id == worker_id)
        rows = (await conn.execute(mine.order_by(d.c.seq))).mappings().all()
        return [Delivery.from_row(r) for r in rows]
    returned = (
        (await conn.execute(update(d).where(*guard).values(values).returning(*d.c)))
        .mappings()
        .all()
    )
    return sorted((Delivery.from_row(r) for r in returned), key=lambda x: x.seq)


async def finish(
    conn: AsyncConnection,
    delivery: Delivery,
    *,
    worker_id: str,
    outcome: Outcome,
    now: datetime,
    retry_at: datetime | None,
    failing_after: int,
    payload: dict[str, Any] | None = None,
) -> str:
    """Record the attempt, and move the delivery: ``delivered``; ``pending`` again at
    ``retry_at``; or ``failed`` (``retry_at`` None: it ran out of time). Its subscription
    counts failures in a row and turns ``failing`` (its owner told in-app, once) after
    ``failing_after``; a success makes it ``active`` again. Answers the new state."""
    await conn.execute(
        insert(notify_attempts).values(
            delivery_seq=delivery.seq,
            at=now,
            status_code=outcome.status_code,
            error=outcome.error,
            duration_ms=outcome.duration_ms,
        )
    )
    state = "delivered" if outcome.ok else ("pending" if retry_at is not None else "failed")
    values: dict[str, Any] = {
        "state": state,
        "attempts": d.c.attempts + 1,
        "worker_id": None,
        "lease_expires_at": None,
        "last_error": outcome.error,
    }
    if payload is not None:  # with its details, kept for every later attempt
        values["payload"] = payload
    if outcome.ok:
        values["delivered_at"] = now
    elif retry_at is not None:
        values["next_attempt_at"] = retry_at
    # still ours: a dispatcher whose lease ran out while it sent leaves the delivery to
    # the one that took it over (its attempt is recorded all the same)
    await conn.execute(
        update(d)
        .where(d.c.seq == delivery.seq, d.c.worker_id == worker_id, d.c.state == "sending")
        .values(values)
    )
    if delivery.subscription_id is not None:
        await _count(conn, delivery, outcome, now, failing_after)
    return state


async def _count(
    conn: AsyncConnection, delivery: Delivery, outcome: Outcome, now: datetime, after: int
) -> None:
    s = notify_subscriptions
    mine = s.c.id == delivery.subscription_id
    if outcome.ok:
        # only when it had failed: deliveries of one subscription finishing together
        # would otherwise queue on its row lock for a write that changes nothing
        await conn.execute(
            update(s)
            .where(mine, or_(s.c.failures != 0, s.c.status != "active"))
            .values(failures=0, status="active", last_error=None)
        )
        return
    await conn.execute(
        update(s).where(mine).values(failures=s.c.failures + 1, last_error=outcome.error)
    )
    turned = await conn.execute(
        update(s)
        .where(mine, s.c.status == "active", s.c.failures >= after)
        .values(status="failing")
    )
    if turned.rowcount == 1:
        row = (
            (await conn.execute(select(s.c.channel, s.c.url, s.c.failures).where(mine)))
            .mappings()
            .one()
        )
        await add_notification(
            conn,
            delivery.owner_id,
            {
                "type": SUBSCRIPTION_FAILING,
                "data": {
                    "subscription_id": delivery.subscription_id,
                    "channel": row["channel"],
                    "target": row["url"] or delivery.target,
                    "failures": row["failures"],
                    "error": outcome.error,
                    "run_id": None,
                },
            },
            now=now,
        )


async def reopen(
    conn: AsyncConnection,
    delivery_seq: int,
    *,
    worker_id: str,
    now: datetime,
    lease_until: datetime,
) -> Delivery | None:
    """Redeliver: a delivery not being sent is claimed by ``worker_id`` to be sent now,
    with a new retry window; None while another dispatcher sends it."""
    result = await conn.execute(
        update(d)
        .where(d.c.seq == delivery_seq, d.c.state != "sending")
        .values(
            state="sending",
            worker_id=worker_id,
            lease_expires_at=lease_until,
            next_attempt_at=now,
            window_start=now,
        )
    )
    if result.rowcount != 1:
        return None
    row = (await conn.execute(select(d).where(d.c.seq == delivery_seq))).mappings().one()
    return Delivery.from_row(row)
