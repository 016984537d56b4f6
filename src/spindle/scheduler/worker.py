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
from spindle.runs.removal import Janitor
from spindle.runs.wakeup import Wakeup
from spindle.scheduler import outage
from spindle.scheduler.driver import Driver, Stopped
from spindle.scheduler.outage import DatabaseDown
from spindle.storage.access import FolderStorage, RunStorage

log = logging.getLogger(__name__)

#: seconds between two prunes of the audit log
AUDIT_PRUNE_SECONDS = 3600.0


#: How long a stopping worker lets its runs' tasks finish the step they are in (a database
#: write, a submit to a compute environment) and stop at their next wait, before it cancels
#: what is left.
STOP_GRACE_SECONDS = 10.0


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
        storage: RunStorage | None = None,
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
        #: retention (runs/removal.py), swept in this worker when a setting asks for it
        self.janitor = Janitor(db, storage or FolderStorage(settings.data_dir), settings)
        self.stop_grace = STOP_GRACE_SECONDS
        self._unbeat = asyncio.Event()  # set: the heartbeat stops at its next wait
        self._left: set[str] = set()  # runs whose task stopped with the worker
        self._unsweep = asyncio.Event()  # set: the janitor and audit pruning stop

    # --- the loop ------------------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        log.info("worker %s started (capacity %d)", self.id, self.capacity)
        self._unbeat.clear()
        heartbeat = asyncio.create_task(self._heartbeat())
        self._unsweep.clear()
        sweeper = (
            asyncio.create_task(self.janitor.run_forever(self._unsweep))
            if self.janitor.enabled
            else None
        )
        pruning = asyncio.create_task(self._prune_audit(self._unsweep))
        try:
            while not stop.is_set():
                self.wakeup.queued.clear()
                await self._fill()
                await self._sleep(stop)
        finally:
            await self._stop_background(sweeper, pruning)
            await self._shutdown(heartbeat)

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
        """Until a run is queued, a slot frees (when all are busy), the stop, or the next
        look: each poll interval, and at least three times a lease, so that a dead worker's
        runs are adopted within about a lease even when nothing wakes this one (on
        PostgreSQL a NOTIFY wakes it for a new run, never for a lease running out)."""
        waits = [
            asyncio.create_task(self.wakeup.queued.wait()),
            asyncio.create_task(stop.wait()),
        ]
        if len(self._active) >= self.capacity:
            self._slot_free.clear()
            waits = [waits[1], asyncio.create_task(self._slot_free.wait())]
        timeout = min(self.settings.poll_interval, self.settings.lease_seconds / 3)
        _, pending = await asyncio.wait(waits, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        for task in pending:
            task.cancel()

    async def _fill(self) -> None:
        """Adopt orphans first, then claim queued runs while a slot is free. An orphan needs
        no free slot: it already runs (its engine was started by the worker that died or
        stopped), and adopting it only re-attaches to it; so a dead worker's runs are taken
        up at the next look, however busy this worker and however long the queue. Adopted
        runs count against the capacity, so this worker claims new ones only once its runs,
        adopted or not, number fewer than its slots."""
        while not self.driver.stopping.is_set():
            run = await self._take(claim.adopt_expired)
            if run is None:
                break
            if run.id in self._active:
                continue  # its lease ran out under this worker (a stall): the lease is ours again
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

    async def _heartbeat(self) -> None:
        """Renew the leases every third of a lease, until ``_unbeat`` is set (the runs'
        tasks have stopped): a renewal under way is never cut off."""
        interval = self.settings.lease_seconds / 3
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._unbeat.wait(), interval)
            if self._unbeat.is_set():
                return
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

    async def _stop_background(self, *tasks: asyncio.Task[None] | None) -> None:
        """The janitor and the audit pruning stop at their next wait, like the run tasks:
        cancelling one in the middle of a write could leave SQLite's write lock held; what
        is still busy after the grace is cancelled."""
        self._unsweep.set()
        going = {task for task in tasks if task is not None}
        if not going:
            return
        _, pending = await asyncio.wait(going, timeout=self.stop_grace)
        for task in pending:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _shutdown(self, heartbeat: asyncio.Task[None]) -> None:
        """Stop following runs but leave their engines running; expire the leases now so
        another worker, or this one's next start, adopts them at once. (Were the database
        unreachable now, the leases expire by themselves within ``lease_seconds``.)

        Each run's task is asked to stop (``Driver.stopping``) and does so at its next wait,
        having finished the step it was in: a task cancelled in the middle of a database
        write could leave its connection holding SQLite's write lock until it is
        garbage-collected, and the leases could then not be expired. A task still busy
        after ``stop_grace`` seconds is cancelled, but only once the leases are expired."""
        runs_of = {task: run_id for run_id, task in self._active.items()}
        self.driver.stopping.set()
        pending: set[asyncio.Task[None]] = set()
        if runs_of:
            _, pending = await asyncio.wait(runs_of, timeout=self.stop_grace)
        self._unbeat.set()
        _, beating = await asyncio.wait([heartbeat], timeout=self.stop_grace)
        # the runs left going: their tasks stopped, or are still busy
        followed = sorted(self._left | {runs_of[task] for task in pending})
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
        for task in pending | beating:  # the last resort, the leases already expired
            log.warning("%s did not stop within %g s; cancelled", task.get_name(), self.stop_grace)
            task.cancel()
        await asyncio.gather(*pending, *beating, return_exceptions=True)
        for poller in self.driver.pollers.values():
            await poller.close()
        for backend in self.backends.values():
            await backend.close()

    # --- one run -------------------------------------------------------------------------

    async def _drive(self, run: Run, *, adopted: bool) -> None:
        """Drive ``run`` to its end. The lease is dropped only once the run ended: a task
        that stops (the worker stops) or is cancelled (another worker took the run) keeps
        it, and one that lost the database waits for it and takes the run up again from its
        backend."""
        ended = False
        current: Run | None = run
        try:
            while current is not None:
                try:
                    await self.driver.drive(current, adopted=adopted)
                    ended = True
                    return
                except Stopped:
                    self._left.add(run.id)
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
            try:
                await self.driver.pause(outage.backoff_seconds(attempt))
            except Stopped:  # the worker stops: the lease expires, by the stop or by itself
                self._left.add(run_id)
                return None
            try:
                async with outage.connect(self.db) as conn:
                    current = await store.get_run(conn, run_id)
            except DatabaseDown:
                continue
            log.info("run %s: the database answers again", run_id)
            if current is None or not current.state.active or current.worker_id != self.id:
                return None
            return current
