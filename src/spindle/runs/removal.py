"""Removing runs' files: ``DELETE /runs/{id}`` (the row stays as a tombstone) and the
retention janitor each worker runs (work folders after ``retention_work_days``, whole runs'
files after ``retention_files_days``).

Files go through the storage seam (:meth:`spindle.storage.access.RunStorage.remove`), so a
storage that keeps copies elsewhere (S3) removes those as well. What was removed is written
to the run's ``system_logs`` and logged, one line per run.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import ColumnElement, select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from spindle import audit
from spindle.db.tables import runs
from spindle.db.types import utcnow
from spindle.domain import TERMINAL_STATES, Caller, Run
from spindle.errors import Conflict
from spindle.runs import lifecycle, store
from spindle.storage.access import Removed, RunStorage

if TYPE_CHECKING:
    from spindle.config import Settings
    from spindle.runs.service import RunService

log = logging.getLogger(__name__)

_ENDED = sorted(s.value for s in TERMINAL_STATES)


def _size(removed: Removed) -> str:
    return f"{removed.files} files, {removed.bytes} bytes"


async def delete(service: RunService, run_id: str, *, caller: Caller) -> Run:
    """Remove a finished run's files and keep its row as a tombstone (``deleted_at``).
    Conflict while the run has not ended; deleting a deleted run again removes whatever
    may be left and changes nothing else."""
    run = await service.get(run_id, caller=caller)
    if not run.state.terminal:
        raise Conflict(f"run {run_id!r} is {run.state.value}: cancel it, or wait for its end")
    if run.deleted_at is None:
        now = utcnow()
        async with service.db.begin() as conn:
            done = await conn.execute(
                update(runs)
                .where(runs.c.id == run_id, runs.c.deleted_at.is_(None), runs.c.state.in_(_ENDED))
                .values(deleted_at=now, files_removed_at=now, updated_at=now)
            )
            if done.rowcount:
                await lifecycle.note(conn, run_id, f"deleted by {caller.name}: files removed")
                await audit.record(conn, "run.delete", target=("run", run_id), caller=caller)
    removed = await service.storage.remove(run)
    log.info("run %s deleted by %s: removed %s", run_id, caller.name, _size(removed))
    return await service.get(run_id, caller=caller)


class Janitor:
    """Retention: each :meth:`sweep` removes the work folders of runs that ended more than
    ``retention_work_days`` ago, then all files of runs that ended more than
    ``retention_files_days`` ago, at most ``retention_batch`` runs of each, oldest first.
    Several workers may sweep at once: the files are removed (idempotent) before the run is
    marked with a compare-and-set, so each run's removal is recorded once."""

    def __init__(
        self,
        db: AsyncEngine,
        storage: RunStorage,
        settings: Settings,
        *,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.db = db
        self.storage = storage
        self.settings = settings
        self.clock = clock

    @property
    def enabled(self) -> bool:
        s = self.settings
        return s.retention_work_days is not None or s.retention_files_days is not None

    async def sweep(self) -> list[tuple[str, str]]:
        """One bounded pass: (run id, what was removed: "work" or "files") for each run."""
        done: list[tuple[str, str]] = []
        now = self.clock()
        if self.settings.retention_files_days is not None:
            cutoff = now - timedelta(days=self.settings.retention_files_days)
            for run in await self._due(cutoff, runs.c.files_removed_at):
                if await self._remove(run, now, work_only=False):
                    done.append((run.id, "files"))
        if self.settings.retention_work_days is not None:
            cutoff = now - timedelta(days=self.settings.retention_work_days)
            for run in await self._due(cutoff, runs.c.work_removed_at):
                if await self._remove(run, now, work_only=True):
                    done.append((run.id, "work"))
        return done

    async def _due(self, cutoff: datetime, marker: ColumnElement[Any]) -> list[Run]:
        stmt = (
            select(runs)
            .where(
                runs.c.state.in_(_ENDED),
                runs.c.end_time < cutoff,
                marker.is_(None),
                runs.c.files_removed_at.is_(None),
            )
            .order_by(runs.c.end_time)
            .limit(self.settings.retention_batch)
        )
        async with self.db.connect() as conn:
            rows = (await conn.execute(stmt)).mappings().all()
        return [store.run_from_row(r) for r in rows]

    async def _remove(self, run: Run, now: datetime, *, work_only: bool) -> bool:
        removed = await self.storage.remove(run, work_only=work_only)
        values = {"work_removed_at": now} if work_only else {"files_removed_at": now}
        column = runs.c.work_removed_at if work_only else runs.c.files_removed_at
        async with self.db.begin() as conn:
            marked = await conn.execute(
                update(runs).where(runs.c.id == run.id, column.is_(None)).values(**values)
            )
            if not marked.rowcount:
                return False  # another worker recorded it
            if removed.files or not work_only:  # (a folder handed to a recovery: none left)
                what = "its work folder" if work_only else "its files"
                await lifecycle.note(conn, run.id, f"retention removed {what} ({_size(removed)})")
        log.info(
            "retention: run %s ended %s: removed %s (%s)",
            run.id,
            run.end_time.isoformat() if run.end_time else "?",
            "work folder" if work_only else "all files",
            _size(removed),
        )
        return True

    async def run_forever(self, stop: asyncio.Event | None = None) -> None:
        """Sweep every ``retention_interval`` seconds until ``stop`` is set (checked between
        sweeps, so a stop never lands in the middle of a removal's write) or cancelled; a
        failing sweep is logged and tried again at the next."""
        stop = stop or asyncio.Event()
        while not stop.is_set():
            try:
                await self.sweep()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("retention sweep failed")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self.settings.retention_interval)
