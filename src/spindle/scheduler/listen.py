"""Cross-process wake-ups on PostgreSQL: LISTEN on the channel the service notifies, and
turn each message into the in-process Wakeup events. Other databases rely on polling."""

from __future__ import annotations

import asyncio
import contextlib
import logging

from sqlalchemy.engine import make_url

from spindle.config import Settings
from spindle.runs.wakeup import CHANNEL, Wakeup

log = logging.getLogger(__name__)


async def listen_for_wakeups(settings: Settings, wakeup: Wakeup, stop: asyncio.Event) -> None:
    url = make_url(settings.effective_database_url)
    if url.get_backend_name() != "postgresql":
        return
    import asyncpg

    dsn = url.set(drivername="postgresql").render_as_string(hide_password=False)
    while not stop.is_set():
        try:
            conn = await asyncpg.connect(dsn)
        except Exception as exc:  # the database may be restarting: retry, polling meanwhile
            log.warning("LISTEN connection failed (%s); retrying", exc)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 5)
            continue
        lost = asyncio.Event()
        try:
            await conn.add_listener(CHANNEL, lambda *args: wakeup.deliver(str(args[3])))
            conn.add_termination_listener(lambda _conn, ev=lost: ev.set())
            # anything sent while we were not listening: look at the queue once now
            wakeup.run_queued()
            waits = [asyncio.create_task(stop.wait()), asyncio.create_task(lost.wait())]
            _, pending = await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
            for task in pending:
                task.cancel()
            if lost.is_set() and not stop.is_set():
                log.warning("LISTEN connection lost; reconnecting")
        finally:
            with contextlib.suppress(Exception):
                await conn.close()
