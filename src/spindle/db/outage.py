"""Telling a database outage from a bug, and logging an outage once rather than per request.

While the database cannot be reached every request that needs it fails the same way; the
API answers 503 ``DatabaseUnavailable`` (with ``Retry-After``) instead of a 500, and
:class:`OutageLog` writes one line when the outage starts and one when the database answers
again, instead of a traceback per request.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from typing import Any

from sqlalchemy import event
from sqlalchemy import exc as sa_exc
from sqlalchemy.ext.asyncio import AsyncEngine

from spindle.errors import DatabaseUnavailable

log = logging.getLogger(__name__)

#: the packages whose frames say an OSError came from talking to the database
_DRIVERS = ("sqlalchemy", "asyncpg", "asyncmy", "aiomysql", "pymysql", "aiosqlite", "sqlite3")


def _chain(exc: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__ or current.__context__


def _from_driver(exc: BaseException) -> bool:
    tb = exc.__traceback__
    while tb is not None:
        module = str(tb.tb_frame.f_globals.get("__name__", ""))
        if module.split(".", 1)[0] in _DRIVERS:
            return True
        tb = tb.tb_next
    return False


def _reason(exc: BaseException) -> str:
    """The driver's own words, first line only (SQLAlchemy's text would add the statement
    and its parameters)."""
    orig = getattr(exc, "orig", None) or exc
    text = str(orig).strip().splitlines()[0] if str(orig).strip() else type(orig).__name__
    return text[:200]


def unreachable(exc: BaseException) -> DatabaseUnavailable | None:
    """The DatabaseUnavailable ``exc`` means, or None when it is not a database outage: the
    connection could not be made or was lost, or the database did not answer in time."""
    for e in _chain(exc):
        # OperationalError: refused, terminated, locked too long; InterfaceError: the
        # connection is closed; InternalError: asyncpg's "another operation is in progress"
        # on a connection cut mid-query
        if isinstance(e, sa_exc.DBAPIError) and (
            e.connection_invalidated
            or isinstance(e, sa_exc.OperationalError | sa_exc.InterfaceError | sa_exc.InternalError)
        ):
            return DatabaseUnavailable(f"the database is unreachable ({_reason(e)})")
        if isinstance(e, sa_exc.DisconnectionError | sa_exc.TimeoutError):
            return DatabaseUnavailable(f"the database is unreachable ({_reason(e)})")
        if isinstance(e, OSError) and _from_driver(e):
            return DatabaseUnavailable(f"the database is unreachable ({_reason(e)})")
    return None


class OutageLog:
    """One log line when an outage starts and one when the database answers again."""

    def __init__(self) -> None:
        self.since: float | None = None
        self.failed = 0

    def watch(self, db: AsyncEngine) -> None:
        """End the outage at the first statement the database answers."""
        event.listen(db.sync_engine, "after_cursor_execute", self._answered)

    def _answered(self, *_: Any) -> None:
        if self.since is not None:
            log.warning(
                "the database answers again after %.1f s (%d requests answered 503)",
                time.monotonic() - self.since,
                self.failed,
            )
            self.since = None
            self.failed = 0

    def failure(self, error: DatabaseUnavailable) -> None:
        self.failed += 1
        if self.since is None:
            self.since = time.monotonic()
            log.error("%s; answering 503 until it is back", error.message)
