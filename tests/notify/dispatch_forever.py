"""A dispatcher alone in its own process, for the kill -9 test: settings from the
environment (SPINDLE_*), it sends until it is killed."""

from __future__ import annotations

import asyncio

from spindle.config import Settings
from spindle.db.engine import create_engine
from spindle.notify.dispatcher import Dispatcher


async def main() -> None:
    settings = Settings()
    db = create_engine(settings.effective_database_url)
    await Dispatcher(settings, db, dispatcher_id="doomed").run(asyncio.Event())


if __name__ == "__main__":
    asyncio.run(main())
