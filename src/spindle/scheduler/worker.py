"""The worker: claim → stage → launch → monitor → finish, for up to N runs at once.

One asyncio task per owned run drives it through its states; one heartbeat task renews the
leases of all of them in a single statement. A run whose owner died (its lease ran out) or
stopped (it expired its leases) is adopted, before any queued run is claimed, and
re-attached through the backend handle saved at submit time. A run's task that loses the
database waits for it to come back and then takes the run up again from its backend, as an
adopter would (see ``scheduler.outage``): it never fails or lets go of a run it could not
write about.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
import socket
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, TypeVar

from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from spindle.backends.base import Backend, Handle, Status
from spindle.config import Settings
from spindle.db.types import utcnow
from spindle.domain import ACTIVE_STATES, Progress, Run, State, Task
from spindle.engines.base import Engine
from spindle.engines.registry import Catalog
from spindle.errors import SpindleError, Unreachable, describe
from spindle.execution import Job, Report
from spindle.runs import claim, store, users
from spindle.runs.wakeup import Wakeup
from spindle.scheduler import outage
from spindle.scheduler.outage import DatabaseDown
from spindle.scheduler.poller import Outcome, Poller, Trouble
from spindle.storage.rundir import RunDir

log = logging.getLogger(__name__)
T = TypeVar("T")

#: Longest wait between two tries to reach a compute environment that cannot be reached
#: (the waits double from one second up to this).
RETRY_MAX_SECONDS = 30.0
#: How long a run waits on a backend that can wait for its process (local) before looking
#: again; the poller's cycles look anyway, so this only bounds one wait.
PROCESS_WAIT_SECONDS = 3600.0


class _Overtime:
    """What ``_next`` answers when the run reached its group's max_duration."""


_OVERTIME = _Overtime()


@dataclass(frozen=True)
class Deadline:
    """When a running run of a group with ``max_duration`` must be stopped."""

    at: datetime
    seconds: int

    @classmethod
    def of(cls, watch: tuple[State, datetime | None, int | None] | None) -> Deadline | None:
        """From ``store.get_watch``: only a run that has started and whose group has a
        max_duration has one."""
        if watch is None:
            return None
        _, start, seconds = watch
        if start is None or seconds is None:
            return None
        return cls(start + timedelta(seconds=seconds), seconds)

    def remaining(self) -> float:
        return max(0.0, (self.at - utcnow()).total_seconds())

    def passed(self) -> bool:
        return self.remaining() <= 0

    def reason(self) -> str:
        return (
            f"stopped: it ran longer than its run group's max_duration of "
            f"{self.seconds / 60:g} minutes ({self.seconds} s)"
        )


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
        self._pollers: dict[str, Poller] = {}
        self._slot_free = asyncio.Event()
        self._lease = timedelta(seconds=settings.lease_seconds)

    # --- the loop ------------------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        log.info("worker %s started (capacity %d)", self.id, self.capacity)
        heartbeat = asyncio.create_task(self._heartbeat(stop))
        try:
            while not stop.is_set():
                self.wakeup.queued.clear()
                await self._fill()
                await self._sleep(stop)
        finally:
            heartbeat.cancel()
            await self._shutdown()

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
        try:
            async with self.db.begin() as conn:
                run: Run | None = await how(
                    conn, worker_id=self.id, now=now, lease_until=now + self._lease
                )
                return run
        except Exception as exc:
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
        for poller in self._pollers.values():
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
                    await self._drive_once(current, adopted=adopted)
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

    async def _drive_once(self, run: Run, *, adopted: bool) -> None:
        rundir = RunDir.for_run(self.settings.data_dir, run.id)
        try:
            backend = self._backend(run)
            # a backend that runs the workflow type itself was resolved as the run's engine
            engine = None if run.engine == backend.name else self.catalog.get(run.engine)
            if run.handle is not None:
                handle = Handle.from_json(run.handle)
            elif run.state is State.CANCELING:
                await self._finish(run, engine, backend, rundir, Status(State.CANCELED), None)
                return
            else:
                handle = await self._launch(run, engine, backend, rundir)
            await self._monitor(run, engine, backend, rundir, handle, adopted=adopted)
        except (asyncio.CancelledError, DatabaseDown):
            raise
        except Exception as exc:
            log.exception("run %s failed inside Spindle", run.id)
            reason = describe(exc)
            await self._fail(run, f"Spindle could not run it: {reason}")

    def _backend(self, run: Run) -> Backend:
        try:
            return self.backends[run.compute_env]
        except KeyError:
            raise SpindleError(
                f"compute environment {run.compute_env!r} is not configured"
            ) from None

    def _poller(self, run: Run, backend: Backend) -> Poller:
        poller = self._pollers.get(run.compute_env)
        if poller is None:
            interval = backend.poll_interval or self.settings.monitor_interval
            poller = Poller(run.compute_env, backend, interval, RETRY_MAX_SECONDS)
            self._pollers[run.compute_env] = poller
        return poller

    async def _owner_name(self, run: Run) -> str | None:
        """The name of the run's Spindle user (a backend may run it as their OS account)."""
        if run.owner_id is None:
            return None
        async with self.db.connect() as conn:
            owner = await users.get_user(conn, run.owner_id)
        return owner.name if owner is not None else None

    async def _launch(
        self, run: Run, engine: Engine | None, backend: Backend, rundir: RunDir
    ) -> Handle:
        launch = None
        if engine is not None:
            site = backend.site(run.id, rundir)
            launch = await asyncio.to_thread(engine.prepare, run, rundir, site)
        job = Job(
            run,
            rundir,
            launch,
            engine.mirror_skip if engine else (),
            owner=await self._owner_name(run),
        )
        handle = await self._retrying(
            run.id, f"submitting to {run.compute_env}", lambda: backend.submit(job)
        )
        saved: dict[str, Any] = {"handle": handle.to_json(), "cmd": launch.argv if launch else []}
        async with outage.begin(self.db) as conn:
            # the common case in one statement: the handle saved with the move to RUNNING
            started = not backend.capabilities.queues and await store.transition(
                conn,
                run.id,
                expected=[State.INITIALIZING],
                new=State.RUNNING,
                start_time=utcnow(),
                **saved,
            )
            if not started:
                # a queued job (RUNNING once it runs), or cancelled while we were starting
                # it: the handle is saved all the same, and the monitor takes it from here
                await store.update_run(conn, run.id, **saved)
        return handle

    async def _monitor(
        self,
        run: Run,
        engine: Engine | None,
        backend: Backend,
        rundir: RunDir,
        handle: Handle,
        *,
        adopted: bool,
    ) -> None:
        cancel = self.wakeup.cancel_event(run.id)
        poller = self._poller(run, backend)
        poller.follow(handle)
        trouble: Trouble | None = None
        deadline = await self._deadline(run.id)
        state: State | None = run.state
        try:
            outcome: Outcome | None = None
            if adopted:
                outcome = await self._retrying(
                    run.id, f"re-attaching in {run.compute_env}", lambda: backend.attach(handle)
                )
            while True:
                if outcome is None:
                    nxt = await self._next(poller, backend, handle, cancel, deadline)
                    if isinstance(nxt, _Overtime) and deadline is not None:
                        await self._stop_overtime(run, engine, backend, rundir, handle, deadline)
                        return
                    outcome = None if isinstance(nxt, _Overtime) else nxt
                if isinstance(outcome, Trouble):
                    if trouble is None:
                        await self._note(
                            run.id,
                            f"cannot follow the run in {run.compute_env}: {outcome.message}; "
                            f"retrying (next in {outcome.retry_in:g} s)",
                        )
                    trouble = outcome
                elif trouble is not None:
                    await self._note(run.id, f"reached {run.compute_env} again")
                    trouble = None
                status = outcome if isinstance(outcome, Status) else None
                outcome = None
                if status is not None and status.state.terminal:
                    if state is State.CANCELING:
                        # ended while being cancelled (an adopted run whose previous owner
                        # stopped it, say): cancelled is what was asked and what it is
                        status = Status(State.CANCELED, status.exit_code)
                    # _finish reads the engine's progress once, with the final state
                    await self._finish(run, engine, backend, rundir, status, handle)
                    return
                await self._sync_progress(run, engine, backend, rundir, handle)
                async with outage.connect(self.db) as conn:
                    watch = await store.get_watch(conn, run.id)
                state = watch[0] if watch else None
                deadline = Deadline.of(watch)
                if state is State.CANCELING:
                    await self._retrying(
                        run.id, f"cancelling in {run.compute_env}", lambda: backend.cancel(handle)
                    )
                    await self._finish(run, engine, backend, rundir, Status(State.CANCELED), handle)
                    return
                if state is None or not state.active:
                    return  # someone else finished it
                if state is State.INITIALIZING and status and status.state is State.RUNNING:
                    # the backend started it (a queued job runs now, or we adopted the run
                    # before the previous owner recorded the start)
                    async with outage.begin(self.db) as conn:
                        await store.transition(
                            conn,
                            run.id,
                            expected=[State.INITIALIZING],
                            new=State.RUNNING,
                            start_time=utcnow(),
                        )
        finally:
            poller.forget(run.id)

    async def _next(
        self,
        poller: Poller,
        backend: Backend,
        handle: Handle,
        cancel: asyncio.Event,
        deadline: Deadline | None = None,
    ) -> Outcome | _Overtime | None:
        """The next poll outcome for the run, None when a cancel was requested first, or
        ``_OVERTIME`` when the run reached its ``deadline``. A backend that can wait for its
        process (local) hurries the poller when it ends."""
        nxt = asyncio.create_task(poller.next(handle.run_id))
        cancelled = asyncio.create_task(cancel.wait())
        waiting: set[asyncio.Task[Any]] = {nxt, cancelled}
        overtime = None
        if deadline is not None:
            overtime = asyncio.create_task(asyncio.sleep(deadline.remaining()))
            waiting.add(overtime)
        if backend.capabilities.waits:
            # returns early only when the process ended (it is cancelled with the others)
            waiting.add(asyncio.create_task(backend.wait(handle, PROCESS_WAIT_SECONDS)))
        try:
            while True:
                done, _ = await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
                if nxt in done:
                    return nxt.result()
                if cancelled in done:
                    return None
                if overtime in done:
                    return _OVERTIME
                poller.kick()  # the process ended: look now rather than at the next cycle
                waiting -= done
        finally:
            for task in waiting:
                task.cancel()

    async def _stop_overtime(
        self,
        run: Run,
        engine: Engine | None,
        backend: Backend,
        rundir: RunDir,
        handle: Handle,
        deadline: Deadline,
    ) -> None:
        """Stop a run that reached its group's max_duration: SYSTEM_ERROR, with the reason."""
        await self._retrying(
            run.id, f"stopping in {run.compute_env}", lambda: backend.cancel(handle)
        )
        status = Status(State.SYSTEM_ERROR, None, deadline.reason())
        await self._finish(run, engine, backend, rundir, status, handle)

    async def _deadline(self, run_id: str) -> Deadline | None:
        async with outage.connect(self.db) as conn:
            return Deadline.of(await store.get_watch(conn, run_id))

    async def _retrying(self, run_id: str, what: str, call: Callable[[], Awaitable[T]]) -> T:
        """``call()``, retried with backoff while the compute environment cannot be reached
        (submit, cancel and attach are safe to repeat); the first failure and the recovery
        are noted in the run's system_logs."""
        delay = 1.0
        failures = 0
        while True:
            try:
                result = await call()
            except Unreachable as exc:
                failures += 1
                if failures == 1:
                    await self._note(
                        run_id, f"{what} failed: {exc.message}; retrying (next in {delay:g} s)"
                    )
                log.warning("run %s: %s failed (%s); retrying in %g s", run_id, what, exc, delay)
                await asyncio.sleep(delay)
                delay = min(RETRY_MAX_SECONDS, delay * 2)
                continue
            if failures:
                await self._note(run_id, f"{what} succeeded after {failures + 1} attempts")
            return result

    async def _note(self, run_id: str, line: str) -> None:
        """Add a line to the run's system_logs (what Spindle had to deal with)."""
        log.info("run %s: %s", run_id, line)
        with contextlib.suppress(Exception):
            async with self.db.begin() as conn:
                await store.append_system_log(conn, run_id, line)

    async def _sync_progress(
        self, run: Run, engine: Engine | None, backend: Backend, rundir: RunDir, handle: Handle
    ) -> None:
        tasks, progress, _ = await self._read_progress(engine, backend, rundir, handle)
        if tasks:
            async with outage.begin(self.db) as conn:
                await _save_progress(conn, run.id, tasks, progress)

    @staticmethod
    async def _read_progress(
        engine: Engine | None, backend: Backend, rundir: RunDir, handle: Handle
    ) -> tuple[list[Task], Progress, Report | None]:
        """The tasks so far: the backend's report when it gives one, else the engine's."""
        try:
            report = await backend.report(handle, rundir)
        except Unreachable:  # no news this time: its poller notes the trouble and retries
            return [], Progress(done=0, total=None), None
        if report is not None:
            tasks, planned = report.tasks, report.planned
        elif engine is not None:
            tasks = await asyncio.to_thread(engine.progress, rundir)
            planned = engine.planned_tasks(rundir) if tasks else None
        else:
            tasks, planned = [], None
        progress = Progress(
            done=sum(1 for t in tasks if t.state is State.COMPLETE),
            total=planned if tasks else None,
            current=[t.name for t in tasks if t.state is State.RUNNING],
        )
        return tasks, progress, report

    async def _finish(
        self,
        run: Run,
        engine: Engine | None,
        backend: Backend,
        rundir: RunDir,
        status: Status,
        handle: Handle | None,
    ) -> None:
        """Read the engine's last progress and its outputs, then write them, the final state
        and the closing of unfinished tasks in one transaction."""
        final = status.state
        values: dict[str, Any] = {"end_time": utcnow()}
        if status.exit_code is not None:
            values["exit_code"] = status.exit_code
        notes = [status.reason] if status.reason else []
        tasks: list[Task] = []
        progress: Progress | None = None
        if handle is not None:
            tasks, progress, report = await self._read_progress(engine, backend, rundir, handle)
            try:
                if report is not None and report.outputs is not None:
                    values["outputs"] = report.outputs
                elif engine is not None:
                    files = await self._retrying(
                        run.id,
                        f"listing the run's files in {run.compute_env}",
                        lambda: backend.files(handle, rundir),
                    )
                    values["outputs"] = await asyncio.to_thread(engine.outputs, rundir, files)
            except Exception as exc:
                log.exception("collecting outputs of %s failed", run.id)
                notes.append(f"collecting outputs failed: {exc!r}")
            if final is State.EXECUTOR_ERROR and engine is not None:
                notes += await asyncio.to_thread(engine.failure_notes, rundir)
        async with outage.begin(self.db) as conn:
            current = await store.get_run(conn, run.id)
            if current is None or not current.state.active:
                log.info("run %s ended elsewhere", run.id)
                return
            if tasks and progress is not None:
                await _save_progress(conn, run.id, tasks, progress)
            if (
                current.start_time is None
                and handle is not None
                and final not in (State.CANCELED, State.SYSTEM_ERROR)
            ):
                values["start_time"] = values["end_time"]  # it ran between two looks
            done = await store.transition(
                conn,
                run.id,
                expected=ACTIVE_STATES,
                new=final,
                reason=status.reason,
                system_logs=[*current.system_logs, *notes],
                **values,
            )
            if done:
                await store.unfinished_tasks_to(conn, run.id, final)  # tasks end as their run
                if current.group_id is not None:
                    await self.wakeup.notify(conn, "queued")  # its group has room again
        if done and current.group_id is not None:
            self.wakeup.run_queued()
        log.info("run %s ended %s", run.id, final.value if done else "(already ended)")

    async def _fail(self, run: Run, reason: str) -> None:
        """SYSTEM_ERROR with ``reason``. Raises ``DatabaseDown`` if that cannot be written:
        the run is then taken up again once the database is back, never left unowned."""
        async with outage.begin(self.db) as conn:
            current = await store.get_run(conn, run.id)
            logs = [*(current.system_logs if current else []), reason]
            if await store.transition(
                conn,
                run.id,
                expected=ACTIVE_STATES,
                new=State.SYSTEM_ERROR,
                reason=reason,
                end_time=utcnow(),
                system_logs=logs,
            ):
                await store.unfinished_tasks_to(conn, run.id, State.SYSTEM_ERROR)
                if current is not None and current.group_id is not None:
                    await self.wakeup.notify(conn, "queued")
                    self.wakeup.run_queued()


async def _save_progress(
    conn: AsyncConnection, run_id: str, tasks: list[Task], progress: Progress
) -> None:
    await store.save_tasks(conn, run_id, tasks)
    await store.update_run(
        conn,
        run_id,
        progress={"done": progress.done, "total": progress.total, "current": progress.current},
    )
