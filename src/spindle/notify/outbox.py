"""The outbox: what a state change owes its subscribers, written in the transaction of the
change itself (``runs/lifecycle.py`` calls :func:`record` after each compare-and-set), so a
notification exists exactly when its change was committed, and nothing is lost when a process
dies between the change and the sending. Sending is the dispatcher's (``dispatcher.py``):
nothing here talks to the network, so a state change never waits on a receiver.

Who is told: the run's owner, through the channels of their preferences (in-app, email) for
the events they chose, and through their subscriptions to all their runs, to this run, or to
its run group (webhook, Slack, email, in-app). Only the owner's: someone else's
subscription never matches (subscribing to another user's run or group is refused too).
In-app notifications are written here directly; the others become deliveries.

A run of a group that ended its group's last active or queued run also drains the group
(``group.drained``, with its runs counted by state). The group's row is locked first on
PostgreSQL and MariaDB (both READ COMMITTED), so of two runs ending together exactly one
sees the group drained.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from sqlalchemy import and_, func, insert, or_, select
from sqlalchemy.engine import RowMapping
from sqlalchemy.ext.asyncio import AsyncConnection

from spindle.db.tables import (
    notifications,
    notify_deliveries,
    notify_subscriptions,
    run_groups,
    runs,
    users,
)
from spindle.db.types import utcnow
from spindle.domain import ACTIVE_STATES, State
from spindle.notify import render
from spindle.notify.events import GROUP_DRAINED, event_of, preferences_of

_OPEN = [State.QUEUED.value, *(s.value for s in ACTIVE_STATES)]


#: set in a connection's ``info`` when the transaction wrote a delivery: a dispatcher on the
#: same engine is woken when it commits (``Dispatcher.run``), instead of at its next poll
WROTE_DELIVERY = "spindle_notify_delivery"


def new_message_id() -> str:
    """A delivery's id, its ``webhook-id`` (the same on every attempt)."""
    return f"msg_{uuid.uuid4().hex}"


async def record(
    conn: AsyncConnection,
    run_id: str,
    state: State,
    reason: str | None = None,
) -> int:
    """Write what the run's move to ``state`` owes its subscribers (in-app notifications
    and deliveries); answers how many. Cheap when nobody listens: no event (QUEUED,
    INITIALIZING, CANCELING) reads nothing."""
    event = event_of(state)
    if event is None:
        return 0
    row = (
        (
            await conn.execute(
                select(
                    runs.c.id,
                    runs.c.owner_id,
                    runs.c.group_id,
                    runs.c.tags,
                    runs.c.workflow_type,
                    runs.c.workflow_url,
                    runs.c.submitted_at,
                    runs.c.start_time,
                    runs.c.end_time,
                ).where(runs.c.id == run_id)
            )
        )
        .mappings()
        .first()
    )
    if row is None:
        return 0
    now = utcnow()
    payload = run_payload(row, state, reason, event, now)
    written = await fan_out(
        conn,
        event,
        payload,
        owner_id=row["owner_id"],
        run_id=run_id,
        group_id=row["group_id"],
        now=now,
    )
    if state.terminal and row["group_id"] is not None:
        written += await _drained(conn, row["group_id"], now)
    return written


def run_payload(
    row: RowMapping | Mapping[str, Any], state: State, reason: str | None, event: str, now: datetime
) -> dict[str, Any]:
    """The body every channel renders a run event from (webhooks send it as it is)."""
    tags = row["tags"] or {}
    start, end = row["start_time"], row["end_time"]
    data: dict[str, Any] = {
        "run_id": row["id"],
        "run_name": str(tags.get("name") or tags.get("run_name") or row["id"]),
        "state": state.value,
        "reason": reason,
        "workflow_type": row["workflow_type"],
        "workflow_url": row["workflow_url"],
        "group_id": row["group_id"],
        "submitted_at": _iso(row["submitted_at"]),
        "start_time": _iso(start),
        "end_time": _iso(end),
        "duration_seconds": (end - start).total_seconds() if start and end else None,
    }
    return {"type": event, "timestamp": _iso(now), "data": data}


def _iso(value: datetime | None) -> str | None:
    return value.isoformat().replace("+00:00", "Z") if value else None


async def fan_out(
    conn: AsyncConnection,
    event: str,
    payload: dict[str, Any],
    *,
    owner_id: int,
    run_id: str | None,
    group_id: str | None,
    now: datetime,
) -> int:
    """One in-app notification or delivery per channel that wants ``event`` among the
    owner's preferences and subscriptions."""
    user = (
        (
            await conn.execute(
                select(users.c.email, users.c.preferences).where(users.c.id == owner_id)
            )
        )
        .mappings()
        .first()
    )
    if user is None:
        return 0
    targets: list[tuple[str, str | None, str | None]] = []  # channel, target, subscription
    prefs = preferences_of(user["preferences"])
    if event in prefs["events"]:
        targets.extend((channel, None, None) for channel in prefs["channels"])
    scopes = [
        and_(notify_subscriptions.c.run_id.is_(None), notify_subscriptions.c.group_id.is_(None))
    ]
    if run_id is not None:
        scopes.append(notify_subscriptions.c.run_id == run_id)
    if group_id is not None:
        scopes.append(notify_subscriptions.c.group_id == group_id)
    subs = await conn.execute(
        select(
            notify_subscriptions.c.id,
            notify_subscriptions.c.channel,
            notify_subscriptions.c.url,
            notify_subscriptions.c.events,
        )
        .where(notify_subscriptions.c.owner_id == owner_id, or_(*scopes))
        .order_by(notify_subscriptions.c.seq)
    )
    for sub in subs.mappings():
        if event in (sub["events"] or []):
            targets.append((sub["channel"], sub["url"], sub["id"]))
    written = 0
    told_in_app = False
    for channel, url, subscription in targets:
        if channel == "inapp":
            if not told_in_app:  # one bell entry however many ways the user asked for it
                await add_notification(conn, owner_id, payload, now=now)
                told_in_app = True
                written += 1
            continue
        target = user["email"] if channel == "email" else url
        if not target:
            continue  # email asked for, but the user has no address
        await add_delivery(
            conn,
            owner_id=owner_id,
            channel=channel,
            target=target,
            subscription_id=subscription,
            payload=payload,
            run_id=run_id,
            group_id=group_id,
            now=now,
        )
        written += 1
    return written


async def add_delivery(
    conn: AsyncConnection,
    *,
    owner_id: int,
    channel: str,
    target: str,
    subscription_id: str | None,
    payload: dict[str, Any],
    run_id: str | None,
    group_id: str | None,
    now: datetime,
    claimed: tuple[str, datetime] | None = None,
) -> str:
    """A pending delivery, due now (or, ``claimed`` by a dispatcher id until a time,
    already being sent by it); answers its id (the webhook-id)."""
    message_id = new_message_id()
    if claimed is None:
        conn.info[WROTE_DELIVERY] = True
    worker_id, lease = claimed if claimed else (None, None)
    await conn.execute(
        insert(notify_deliveries).values(
            id=message_id,
            subscription_id=subscription_id,
            owner_id=owner_id,
            channel=channel,
            target=target,
            event=payload["type"],
            run_id=run_id,
            group_id=group_id,
            payload=payload,
            state="sending" if claimed else "pending",
            worker_id=worker_id,
            lease_expires_at=lease,
            attempts=0,
            created_at=now,
            next_attempt_at=now,
            window_start=now,
        )
    )
    return message_id


async def add_notification(
    conn: AsyncConnection, user_id: int, payload: dict[str, Any], *, now: datetime
) -> None:
    """An in-app notification (the bell) of ``payload``."""
    data = payload.get("data", {})
    await conn.execute(
        insert(notifications).values(
            user_id=user_id,
            created_at=now,
            event=payload["type"],
            title=render.subject(payload),
            body=render.summary(payload),
            run_id=data.get("run_id"),
            group_id=data.get("group_id"),
            read_at=None,
        )
    )


async def _drained(conn: AsyncConnection, group_id: str, now: datetime) -> int:
    """``group.drained`` if no run of the group is queued or active any more."""
    lock = select(run_groups.c.owner_id, run_groups.c.name).where(run_groups.c.id == group_id)
    if conn.dialect.name != "sqlite":
        lock = lock.with_for_update()
    group = (await conn.execute(lock)).mappings().first()
    if group is None:
        return 0
    counts = {
        state: int(n)
        for state, n in await conn.execute(
            select(runs.c.state, func.count())
            .where(runs.c.group_id == group_id)
            .group_by(runs.c.state)
        )
    }
    if any(counts.get(state, 0) for state in _OPEN):
        return 0
    payload = {
        "type": GROUP_DRAINED,
        "timestamp": _iso(now),
        "data": {
            "group_id": group_id,
            "group_name": group["name"],
            "counts": counts,
            "total": sum(counts.values()),
        },
    }
    return await fan_out(
        conn,
        GROUP_DRAINED,
        payload,
        owner_id=group["owner_id"],
        run_id=None,
        group_id=group_id,
        now=now,
    )
