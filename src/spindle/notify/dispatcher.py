"""The dispatcher: in each worker process, it claims due deliveries (``claim.claim_due``),
sends each through its channel, and records the attempt; a failed one is retried with
exponential backoff and jitter until ``notify_max_age_seconds`` after it was created (or
redelivered), then given up (``failed``). Nothing here is on a run's path: the outbox is
written with the state change and this loop reads it later, so a slow or dead receiver
never delays a run.

A transaction of this process that writes a delivery wakes the dispatcher once it has
committed (engine ``commit`` and pool ``checkin`` events), so a run driven here is
announced at once; changes made by
other processes are found at the next poll (``notify_poll_interval``).

``clock`` and ``rng`` are injectable, so tests and benchmarks move time instead of
sleeping through backoffs."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
import socket
import uuid
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, event, select
from sqlalchemy.ext.asyncio import AsyncEngine

from spindle.config import Settings
from spindle.db.tables import notify_subscriptions
from spindle.db.types import utcnow
from spindle.metrics import NOTIFICATION_DELIVERIES
from spindle.notify import claim, details
from spindle.notify.channels import Channels, Message, Outcome
from spindle.notify.claim import Delivery
from spindle.notify.events import GROUP_DRAINED, TEST
from spindle.notify.outbox import WROTE_DELIVERY

#: set on a connection whose transaction committed a delivery, until it is back in the pool
COMMITTED_DELIVERY = "spindle_notify_committed"

log = logging.getLogger(__name__)


def new_dispatcher_id() -> str:
    return f"notify:{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def backoff(settings: Settings, attempts: int, rng: Callable[[], float] = random.random) -> float:
    """Seconds before retry number ``attempts`` (1 = after the first failure): the base
    doubled each time, capped, with "equal jitter" (half fixed, half random), so receivers
    coming back up are not hit by every sender at once."""
    delay = min(
        settings.notify_retry_base_seconds * 2 ** max(0, attempts - 1),
        settings.notify_retry_max_seconds,
    )
    return float(delay / 2 + rng() * delay / 2)


class Dispatcher:
    def __init__(
        self,
        settings: Settings,
        db: AsyncEngine,
        *,
        dispatcher_id: str | None = None,
        channels: Channels | None = None,
        clock: Callable[[], datetime] = utcnow,
        rng: Callable[[], float] = random.random,
    ) -> None:
        self.settings = settings
        self.db = db
        self.id = dispatcher_id or new_dispatcher_id()
        self.channels = channels or Channels(settings)
        self.clock = clock
        self.rng = rng
        self.wake = asyncio.Event()
        self._sending: set[asyncio.Task[str]] = set()
        self._room = asyncio.Event()

    # --- the loop ------------------------------------------------------------------------

    @staticmethod
    def _committing(conn: Connection) -> None:
        """A transaction that wrote a delivery commits (the event comes before the COMMIT
        itself is done, so the wake-up waits for the connection's return to the pool)."""
        if conn.info.pop(WROTE_DELIVERY, None):
            conn.info[COMMITTED_DELIVERY] = True

    @staticmethod
    def _rolled_back(conn: Connection) -> None:
        """A transaction rolled back: its deliveries were not written. On a connection the
        database dropped (invalidated), ``info`` cannot even be read: raising here would
        turn a lost connection into a failed run, and that connection's DBAPI half (with its
        ``info``) is gone anyway."""
        if conn.invalidated:
            return
        conn.info.pop(WROTE_DELIVERY, None)

    def _returned(self, _dbapi_conn: Any, record: Any) -> None:
        """A connection back in the pool, its transaction over: if it committed a
        delivery, look now."""
        if record.info.pop(COMMITTED_DELIVERY, None):
            self.wake.set()

    async def run(self, stop: asyncio.Event) -> None:
        log.info("notification dispatcher %s started", self.id)
        engine = self.db.sync_engine
        event.listen(engine, "commit", self._committing)
        event.listen(engine, "rollback", self._rolled_back)
        event.listen(engine, "checkin", self._returned)
        try:
            while not stop.is_set():
                self.wake.clear()
                await self.fill()
                waits: list[asyncio.Task[Any]] = [
                    asyncio.create_task(stop.wait()),
                    asyncio.create_task(self.wake.wait()),
                ]
                if len(self._sending) >= self.settings.notify_concurrency:
                    self._room.clear()
                    waits.append(asyncio.create_task(self._room.wait()))
                _, pending = await asyncio.wait(
                    waits,
                    timeout=self.settings.notify_poll_interval,
                    return_when=asyncio.FIRST_COMPLETED,
                )
                for task in pending:
                    task.cancel()
        finally:
            # a delivery cut off here stays "sending" until its lease runs out, then any
            # dispatcher sends it again, with the same webhook-id
            event.remove(engine, "commit", self._committing)
            event.remove(engine, "rollback", self._rolled_back)
            event.remove(engine, "checkin", self._returned)
            for task in list(self._sending):
                task.cancel()
            await asyncio.gather(*self._sending, return_exceptions=True)
            await self.channels.aclose()

    async def fill(self) -> int:
        """Claim and start sending due deliveries while there is room; answers how many."""
        started = 0
        while (room := self.settings.notify_concurrency - len(self._sending)) > 0:
            claimed = await self._claim(room)
            for delivery in claimed:
                task = asyncio.create_task(self.deliver(delivery), name=f"notify-{delivery.id}")
                self._sending.add(task)
                task.add_done_callback(self._sent)
            started += len(claimed)
            if len(claimed) < room:
                break
        return started

    def _sent(self, task: asyncio.Task[str]) -> None:
        self._sending.discard(task)
        self._room.set()
        self.wake.set()  # a retry may be due at once (zero backoff)
        if not task.cancelled() and task.exception() is not None:
            log.error("delivering a notification failed", exc_info=task.exception())

    async def drain(self) -> int:
        """Send every delivery due now, one after another, until none is (tests, bench)."""
        sent = 0
        while claimed := await self._claim(1):
            await self.deliver(claimed[0])
            sent += 1
        return sent

    async def _claim(self, limit: int) -> list[Delivery]:
        now = self.clock()
        lease = timedelta(seconds=self.settings.notify_lease_seconds)
        try:
            async with self.db.begin() as conn:
                return await claim.claim_due(
                    conn, worker_id=self.id, now=now, lease_until=now + lease, limit=limit
                )
        except Exception:
            log.exception("claiming notification deliveries failed; will retry")
            return []

    def lease(self) -> tuple[str, datetime]:
        """This dispatcher's claim from now: (its id, when the lease ends)."""
        return self.id, self.clock() + timedelta(seconds=self.settings.notify_lease_seconds)

    # --- one delivery --------------------------------------------------------------------

    async def deliver(self, delivery: Delivery) -> str:
        """One attempt at a claimed delivery, recorded; answers its new state."""
        payload = delivery.payload
        detailed: dict[str, Any] | None = None
        secret: str | None = None
        async with self.db.connect() as conn:  # reads only: written with the outcome
            if not payload.get("detailed"):
                if delivery.event in (TEST, GROUP_DRAINED):
                    data = dict(payload.get("data", {}))
                    data.update(details.links(self.settings, data))
                    detailed = {**payload, "data": data, "detailed": True}
                else:
                    detailed = await details.complete(conn, self.settings, payload)
                payload = detailed
            if delivery.subscription_id is not None:
                secret = (
                    await conn.execute(
                        select(notify_subscriptions.c.secret).where(
                            notify_subscriptions.c.id == delivery.subscription_id
                        )
                    )
                ).scalar_one_or_none()
        sent = {k: v for k, v in payload.items() if k != "detailed"}
        message = Message(delivery.id, delivery.channel, delivery.target, sent, secret)
        if delivery.channel == "webhook" and not secret:
            outcome = Outcome(False, None, "the subscription has no signing secret", 0)
        else:
            outcome = await self.channels.send(message, now=self.clock())
        now = self.clock()
        retry_at: datetime | None = None
        if not outcome.ok:
            window = timedelta(seconds=self.settings.notify_max_age_seconds)
            at = now + timedelta(seconds=backoff(self.settings, delivery.attempts + 1, self.rng))
            if at < delivery.window_start + window:
                retry_at = at
        async with self.db.begin() as conn:
            state = await claim.finish(
                conn,
                delivery,
                worker_id=self.id,
                outcome=outcome,
                now=now,
                retry_at=retry_at,
                failing_after=self.settings.notify_failing_after,
                payload=detailed,
            )
        NOTIFICATION_DELIVERIES.labels(delivery.channel, state).inc()
        if not outcome.ok:
            log.info(
                "notification %s to %s failed (%s): %s",
                delivery.id,
                delivery.channel,
                state,
                outcome.error,
            )
        return state


async def run_dispatcher(settings: Settings, db: AsyncEngine, stop: asyncio.Event) -> None:
    """The dispatcher of a worker process, until ``stop``."""
    dispatcher = Dispatcher(settings, db)
    with contextlib.suppress(asyncio.CancelledError):
        await dispatcher.run(stop)
