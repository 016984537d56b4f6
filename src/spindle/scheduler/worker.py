"""The worker: claim → stage → launch → monitor → finish, for up to N runs at once.

One asyncio task per owned run drives it through its states; one heartbeat task renews the
leases of all of them in a single statement. A run whose owner died (its lease ran out) is
adopted and re-attached through the backend handle saved at submit time.
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
from spindle.errors import SpindleError, Unreachable
from spindle.runs import claim, store
from spindle.runs.wakeup import Wakeup
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

#: what a task still marked unfinished becomes when its run ends this way
_TASK_END = {
    State.CANCELED: State.CANCELED,
    State.SYSTEM_ERROR: State.SYSTEM_ERROR,
    State.EXECUTOR_ERROR: State.EXECUTOR_ERROR,
    State.COMPLETE: State.COMPLETE,
    State.PREEMPTED: State.PREEMPTED,
}


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
        loop = asyncio.get_running_loop()
        next_adoption = loop.time()
        try:
            while not stop.is_set():
                self.wakeup.queued.clear()
                # Orphans are looked for at start and then on the poll timer: a lease runs
                # for many poll intervals, so a submission's wake-up need not pay for it.
                adopt = loop.time() >= next_adoption
                if adopt:
                    next_adoption = loop.time() + self.settings.poll_interval
                await self._fill(adopt=adopt)
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

    async def _fill(self, *, adopt: bool) -> None:
        """Adopt orphans first (they already run somewhere), then claim queued runs."""
        while adopt and len(self._active) < self.capacity:
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
        except Exception:
            log.exception("claiming a run failed; will retry")
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
            except Exception:
                log.exception("renewing leases failed; will retry")
                continue
            for lost in ids - owned:
                log.warning("run %s was adopted by another worker; letting go", lost)
                task = self._active.get(lost)
                if task is not None:
                    task.cancel()

    async def _shutdown(self) -> None:
        """Stop following runs but leave their engines running; expire the leases now so a
        restarted worker adopts them at once."""
        tasks = list(self._active.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if tasks:
            with contextlib.suppress(Exception):
                async with self.db.begin() as conn:
                    await claim.renew_leases(
                        conn,
                        worker_id=self.id,
                        run_ids=[t.get_name().removeprefix("run-") for t in tasks],
                        lease_until=utcnow(),
                    )
        for poller in self._pollers.values():
            await poller.close()
        for backend in self.backends.values():
            await backend.close()

    # --- one run -------------------------------------------------------------------------

    async def _drive(self, run: Run, *, adopted: bool) -> None:
        rundir = RunDir.for_run(self.settings.data_dir, run.id)
        try:
            backend = self._backend(run)
            engine = self.catalog.get(run.engine)
            if run.handle is not None:
                handle = Handle.from_json(run.handle)
            elif run.state is State.CANCELING:
                await self._finish(run, engine, backend, rundir, Status(State.CANCELED), None)
                return
            else:
                handle = await self._launch(run, engine, backend, rundir)
            await self._monitor(run, engine, backend, rundir, handle, adopted=adopted)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.exception("run %s failed inside Spindle", run.id)
            reason = exc.message if isinstance(exc, SpindleError) else repr(exc)
            await self._fail(run, f"Spindle could not run it: {reason}")
        finally:
            with contextlib.suppress(Exception):
                async with self.db.begin() as conn:
                    await claim.release(conn, run_id=run.id, worker_id=self.id)

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

    async def _launch(self, run: Run, engine: Engine, backend: Backend, rundir: RunDir) -> Handle:
        site = backend.site(run.id, rundir)
        launch = await asyncio.to_thread(engine.prepare, run, rundir, site)
        handle = await self._retrying(
            run.id,
            f"submitting to {run.compute_env}",
            lambda: backend.submit(run.id, launch, rundir),
        )
        saved: dict[str, Any] = {"handle": handle.to_json(), "cmd": launch.argv}
        async with self.db.begin() as conn:
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
        engine: Engine,
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
                    # _finish reads the engine's progress once, with the final state
                    await self._finish(run, engine, backend, rundir, status, handle)
                    return
                await self._sync_progress(run, engine, rundir)
                async with self.db.connect() as conn:
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
                    async with self.db.begin() as conn:
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
        engine: Engine,
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
        async with self.db.connect() as conn:
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

    async def _sync_progress(self, run: Run, engine: Engine, rundir: RunDir) -> None:
        tasks, progress = await self._read_progress(engine, rundir)
        if tasks:
            async with self.db.begin() as conn:
                await _save_progress(conn, run.id, tasks, progress)

    @staticmethod
    async def _read_progress(engine: Engine, rundir: RunDir) -> tuple[list[Task], Progress]:
        tasks = await asyncio.to_thread(engine.progress, rundir)
        progress = Progress(
            done=sum(1 for t in tasks if t.state is State.COMPLETE),
            total=engine.planned_tasks(rundir) if tasks else None,
            current=[t.name for t in tasks if t.state is State.RUNNING],
        )
        return tasks, progress

    async def _finish(
        self,
        run: Run,
        engine: Engine,
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
            tasks, progress = await self._read_progress(engine, rundir)
            try:
                files = await self._retrying(
                    run.id,
                    f"listing the run's files in {run.compute_env}",
                    lambda: backend.files(handle, rundir),
                )
                values["outputs"] = await asyncio.to_thread(engine.outputs, rundir, files)
            except Exception as exc:
                log.exception("collecting outputs of %s failed", run.id)
                notes.append(f"collecting outputs failed: {exc!r}")
            if final is State.EXECUTOR_ERROR:
                notes += await asyncio.to_thread(engine.failure_notes, rundir)
        async with self.db.begin() as conn:
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
                await store.unfinished_tasks_to(conn, run.id, _TASK_END.get(final, final))
                if current.group_id is not None:
                    await self.wakeup.notify(conn, "queued")  # its group has room again
        if done and current.group_id is not None:
            self.wakeup.run_queued()
        log.info("run %s ended %s", run.id, final.value if done else "(already ended)")

    async def _fail(self, run: Run, reason: str) -> None:
        with contextlib.suppress(Exception):
            async with self.db.begin() as conn:
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
