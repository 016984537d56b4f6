"""The worker: claims and adopts runs, up to N at once, and hands each to its driver.

One asyncio task per owned run drives it (``scheduler.driver``: launch → monitor → finish);
one heartbeat task renews the leases of all of them in a single statement. A run whose
owner died (its lease ran out) or stopped (it expired its leases) is adopted, before any
queued run is claimed, and re-attached through the backend handle saved at submit time. A
run's task that loses the database waits for it to come back and then takes the run up
again from its backend, as an adopter would (see ``scheduler.outage``): it never fails or
lets go of a run it could not write about.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
import socket
import time
import uuid
from datetime import timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine

from spindle import audit, metrics
from spindle.backends.base import Backend
from spindle.config import Settings
from spindle.db.types import utcnow
from spindle.domain import Run
from spindle.engines.registry import Catalog
from spindle.runs import claim, store
from spindle.runs.wakeup import Wakeup
from spindle.scheduler import outage
from spindle.scheduler.driver import Driver
from spindle.scheduler.outage import DatabaseDown

log = logging.getLogger(__name__)

#: seconds between two prunes of the audit log
AUDIT_PRUNE_SECONDS = 3600.0


def new_worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


class Worker:
    def __init__(
        self,
        *,
        settings: Settings,
        db: AsyncEngine,
        catalog: Catalog,
        backends: dict[str, Backend],
        wakeup: Wakeup,
        worker_id: str | None = None,
    ) -> None:
        self.settings = settings
        self.db = db
        self.catalog = catalog
        self.backends = backends
        self.wakeup = wakeup
        self.id = worker_id or new_worker_id()
        self.capacity = settings.max_concurrent_runs
        self._active: dict[str, asyncio.Task[None]] = {}
        self.driver = Driver(
            settings=settings, db=db, catalog=catalog, backends=backends, wakeup=wakeup
        )
        self._slot_free = asyncio.Event()
        self._lease = timedelta(seconds=settings.lease_seconds)

    # --- the loop ------------------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        log.info("worker %s started (capacity %d)", self.id, self.capacity)
        heartbeat = asyncio.create_task(self._heartbeat(stop))
        pruning = asyncio.create_task(self._prune_audit(stop))
        try:
            while not stop.is_set():
                self.wakeup.queued.clear()
                await self._fill()
                await self._sleep(stop)
        finally:
            heartbeat.cancel()
            pruning.cancel()
            await self._shutdown()

    async def _prune_audit(self, stop: asyncio.Event) -> None:
        """Delete audit log entries past ``audit_retention_days``, at start and then every
        ``AUDIT_PRUNE_SECONDS`` (every worker does; deleting what another deleted is
        nothing)."""
        while not stop.is_set():
            try:
                gone = await audit.prune(self.db, retention_days=self.settings.audit_retention_days)
                if gone:
                    log.info("pruned %d audit log entries past their retention", gone)
            except Exception as exc:
                log.warning("pruning the audit log failed (%r); will retry", exc)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), AUDIT_PRUNE_SECONDS)

    async def _sleep(self, stop: asyncio.Event) -> None:
        waits = [
            asyncio.create_task(self.wakeup.queued.wait()),
            asyncio.create_task(stop.wait()),
        ]
        if len(self._active) >= self.capacity:
            self._slot_free.clear()
            waits = [waits[1], asyncio.create_task(self._slot_free.wait())]
        _, pending = await asyncio.wait(
            waits, timeout=self.settings.poll_interval, return_when=asyncio.FIRST_COMPLETED
        )
        for task in pending:
            task.cancel()

    async def _fill(self) -> None:
        """Adopt orphans first (they already run somewhere, and have waited a lease), then
        claim queued runs: every time a slot may have freed, so however long the queue, a
        dead worker's runs go before any queued run."""
        while len(self._active) < self.capacity:
            run = await self._take(claim.adopt_expired)
            if run is None:
                break
            self._start(run, adopted=True)
        while len(self._active) < self.capacity:
            run = await self._take(claim.claim_next)
            if run is None:
                break
            self._start(run, adopted=False)

    async def _take(self, how: Any) -> Run | None:
        now = utcnow()
        started = time.perf_counter()
        try:
            async with self.db.begin() as conn:
                run: Run | None = await how(
                    conn, worker_id=self.id, now=now, lease_until=now + self._lease
                )
            if how is claim.claim_next:
                metrics.claimed(run, time.perf_counter() - started)
            return run
        except Exception as exc:
            if how is claim.claim_next:
                metrics.claimed(None, time.perf_counter() - started, failed=True)
            if not outage.is_fault(exc):
                log.exception("claiming a run failed; will retry")
            else:
                log.warning("claiming a run failed, the database is unreachable (%r)", exc)
            return None

    def _start(self, run: Run, *, adopted: bool) -> None:
        task = asyncio.create_task(self._drive(run, adopted=adopted), name=f"run-{run.id}")
        self._active[run.id] = task
        task.add_done_callback(functools.partial(self._done, run.id))

    def _done(self, run_id: str, _task: asyncio.Task[None]) -> None:
        self._active.pop(run_id, None)
        self.wakeup.forget(run_id)
        self._slot_free.set()

    async def _heartbeat(self, stop: asyncio.Event) -> None:
        interval = self.settings.lease_seconds / 3
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), interval)
            ids = set(self._active)
            if not ids:
                continue
            try:
                async with self.db.begin() as conn:
                    owned = await claim.renew_leases(
                        conn, worker_id=self.id, run_ids=ids, lease_until=utcnow() + self._lease
                    )
            except Exception as exc:
                if not outage.is_fault(exc):
                    log.exception("renewing leases failed; will retry")
                else:
                    log.warning("renewing leases failed, the database is unreachable (%r)", exc)
                continue
            for lost in ids - owned:
                log.warning("run %s was adopted by another worker; letting go", lost)
                task = self._active.get(lost)
                if task is not None:
                    task.cancel()

    async def _shutdown(self) -> None:
        """Stop following runs but leave their engines running; expire the leases now so
        another worker, or this one's next start, adopts them at once. (A run's task keeps
        its lease when cancelled; were the database unreachable now, the leases expire
        by themselves within ``lease_seconds``.)"""
        followed = list(self._active)
        tasks = list(self._active.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if followed:
            try:
                async with self.db.begin() as conn:
                    await claim.expire_leases(
                        conn, worker_id=self.id, run_ids=followed, now=utcnow()
                    )
            except Exception as exc:
                log.warning("could not expire the leases of %d runs: %r", len(followed), exc)
            else:
                log.info("left %d runs to be adopted: %s", len(followed), ", ".join(followed))
        for poller in self.driver.pollers.values():
            await poller.close()
        for backend in self.backends.values():
            await backend.close()

    # --- one run -------------------------------------------------------------------------

    async def _drive(self, run: Run, *, adopted: bool) -> None:
        """Drive ``run`` to its end. The lease is dropped only once the run ended: a task
        cancelled (the worker stops, or another worker took the run) keeps it, and one that
        lost the database waits for it and takes the run up again from its backend."""
        ended = False
        current: Run | None = run
        try:
            while current is not None:
                try:
                    await self.driver.drive(current, adopted=adopted)
                    ended = True
                    return
                except DatabaseDown as exc:
                    log.warning("run %s: lost the database (%r); waiting for it", run.id, exc)
                    current = await self._after_outage(run.id)
                    adopted = True  # its backend says what became of it meanwhile
        finally:
            if ended:
                with contextlib.suppress(Exception):
                    async with self.db.begin() as conn:
                        await claim.release(conn, run_id=run.id, worker_id=self.id)

    async def _after_outage(self, run_id: str) -> Run | None:
        """Wait, with backoff, until the database answers; then the run if it is still
        active and still this worker's (None: it ended, or another worker adopted it)."""
        attempt = 0
        while True:
            attempt += 1
            await outage.backoff(attempt)
            try:
                async with outage.connect(self.db) as conn:
                    current = await store.get_run(conn, run_id)
            except DatabaseDown:
                continue
            log.info("run %s: the database answers again", run_id)
            if current is None or not current.state.active or current.worker_id != self.id:
                return None
            return current
