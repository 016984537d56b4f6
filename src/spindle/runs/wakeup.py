"""How the service tells workers that something happened, without them polling.

In one process (``spindle serve`` with its embedded worker) an asyncio event does it. Across
processes on PostgreSQL the service also sends ``pg_notify`` inside the submitting
transaction (delivered on commit) and ``spindle.scheduler.listen`` turns it into the same
event. Everywhere else polling is the fallback.
"""

from __future__ import annotations

import asyncio
import uuid

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

CHANNEL = "spindle_wakeup"


class Wakeup:
    def __init__(self) -> None:
        #: Names this process in its notifications, so it can ignore its own echo (it was
        #: woken in-process already).
        self.sender = uuid.uuid4().hex
        self.queued = asyncio.Event()
        self._cancels: dict[str, asyncio.Event] = {}

    def run_queued(self) -> None:
        self.queued.set()

    def cancel_event(self, run_id: str) -> asyncio.Event:
        return self._cancels.setdefault(run_id, asyncio.Event())

    def cancel_requested(self, run_id: str) -> None:
        event = self._cancels.get(run_id)
        if event is not None:
            event.set()

    def forget(self, run_id: str) -> None:
        self._cancels.pop(run_id, None)

    async def notify(self, conn: AsyncConnection, message: str) -> None:
        """Tell workers in other processes (``queued`` or ``cancel:<run id>``): on
        PostgreSQL a ``pg_notify``, delivered when ``conn`` commits."""
        if conn.dialect.name == "postgresql":
            payload = f"{self.sender} {message}"
            await conn.execute(text("SELECT pg_notify(:c, :p)"), {"c": CHANNEL, "p": payload})

    def deliver(self, payload: str) -> None:
        """A notification as it arrives: ``<sender> <message>``. Our own are ignored."""
        sender, _, message = payload.partition(" ")
        if sender == self.sender:
            return
        if message == "queued":
            self.run_queued()
        elif message.startswith("cancel:"):
            self.cancel_requested(message.removeprefix("cancel:"))
