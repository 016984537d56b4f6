"""The database going away under a worker: which errors say so, and waiting for it back.

A worker that loses the database must not decide anything about its runs: their engines
go on, their leases stay as they are (they expire by themselves if the outage outlasts
them), and once the database answers again each run's fate is read from its backend. So
the worker's run tasks reach the database through :func:`begin` and :func:`connect`, which
turn a lost connection into :class:`DatabaseDown`, the one error a run's task waits out
rather than failing the run with.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from spindle.db.outage import unreachable

log = logging.getLogger(__name__)

#: Longest wait between two looks at a database that does not answer (the waits double
#: from half a second up to this).
MAX_BACKOFF_SECONDS = 15.0


class DatabaseDown(Exception):
    """The database could not be reached (or dropped the connection) mid-way."""

    def __init__(self, cause: BaseException) -> None:
        super().__init__(f"the database could not be reached: {cause!r}")
        self.cause = cause


def is_fault(exc: BaseException) -> bool:
    """Is ``exc`` the database (or the way to it) failing, rather than a bug or a refusal
    (a constraint, bad SQL), which waiting would not mend? The same test the API's 503
    answers by (:func:`spindle.db.outage.unreachable`), so an OSError of the run's own
    files is never mistaken for a lost database."""
    return isinstance(exc, DatabaseDown) or unreachable(exc) is not None


@asynccontextmanager
async def begin(db: AsyncEngine) -> AsyncIterator[AsyncConnection]:
    """``db.begin()``, with a lost connection raised as :class:`DatabaseDown`."""
    try:
        async with db.begin() as conn:
            yield conn
    except Exception as exc:
        if is_fault(exc) and not isinstance(exc, DatabaseDown):
            raise DatabaseDown(exc) from exc
        raise


@asynccontextmanager
async def connect(db: AsyncEngine) -> AsyncIterator[AsyncConnection]:
    """``db.connect()``, with a lost connection raised as :class:`DatabaseDown`."""
    try:
        async with db.connect() as conn:
            yield conn
    except Exception as exc:
        if is_fault(exc) and not isinstance(exc, DatabaseDown):
            raise DatabaseDown(exc) from exc
        raise


def backoff_seconds(attempt: int) -> float:
    """How long to wait before look number ``attempt`` (from 1) at a database that did not
    answer."""
    return float(min(MAX_BACKOFF_SECONDS, 0.5 * 2 ** (attempt - 1)))
