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
from datetime import timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from spindle.backends.base import Backend, Handle, Status
from spindle.config import Settings
from spindle.db.types import utcnow
from spindle.domain import ACTIVE_STATES, Progress, Run, State, Task
from spindle.engines.base import Engine
from spindle.engines.registry import Catalog
from spindle.errors import SpindleError
from spindle.runs import claim, store
from spindle.runs.wakeup import Wakeup
from spindle.storage.rundir import RunDir

log = logging.getLogger(__name__)

#: what a task still marked unfinished becomes when its run ends this way
_TASK_END = {
    State.CANCELED: State.CANCELED,
    State.SYSTEM_ERROR: State.SYSTEM_ERROR,
    State.EXECUTOR_ERROR: State.EXECUTOR_ERROR,
    State.COMPLETE: State.COMPLETE,
    State.PREEMPTED: State.PREEMPTED,
}


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
                await self._finish(run, engine, rundir, Status(State.CANCELED), None)
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

    async def _launch(self, run: Run, engine: Engine, backend: Backend, rundir: RunDir) -> Handle:
        launch = await asyncio.to_thread(engine.prepare, run, rundir)
        handle = await backend.submit(run.id, launch, rundir)
        async with self.db.begin() as conn:
            await store.update_run(conn, run.id, handle=handle.to_json(), cmd=launch.argv)
            started = await store.transition(
                conn,
                run.id,
                expected=[State.INITIALIZING],
                new=State.RUNNING,
                start_time=utcnow(),
            )
        if not started:
            # cancelled while we were starting it: the handle is saved, stop it now
            log.info("run %s was cancelled during start-up", run.id)
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
        first = True
        while True:
            status = (
                await backend.attach(handle)
                if (adopted and first)
                else (await backend.poll([handle]))[run.id]
            )
            first = False
            if status.state.terminal:
                await self._finish(run, engine, rundir, status, handle)
                return
            await self._sync_progress(run, engine, rundir)
            async with self.db.connect() as conn:
                state = await store.get_state(conn, run.id)
            if state is State.CANCELING:
                await backend.cancel(handle)
                await self._finish(run, engine, rundir, Status(State.CANCELED), handle)
                return
            if state is None or not state.active:
                return  # someone else finished it
            if state is State.INITIALIZING and status.state is State.RUNNING:
                # adopted before the previous owner recorded the start
                async with self.db.begin() as conn:
                    await store.transition(
                        conn,
                        run.id,
                        expected=[State.INITIALIZING],
                        new=State.RUNNING,
                        start_time=utcnow(),
                    )
            waiter = asyncio.create_task(backend.wait(handle, self.settings.monitor_interval))
            canceller = asyncio.create_task(cancel.wait())
            await asyncio.wait([waiter, canceller], return_when=asyncio.FIRST_COMPLETED)
            waiter.cancel()
            canceller.cancel()

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
                values["outputs"] = await asyncio.to_thread(engine.outputs, rundir)
            except Exception as exc:
                log.exception("collecting outputs of %s failed", run.id)
                notes.append(f"collecting outputs failed: {exc!r}")
        async with self.db.begin() as conn:
            current = await store.get_run(conn, run.id)
            if current is None or not current.state.active:
                log.info("run %s ended elsewhere", run.id)
                return
            if tasks and progress is not None:
                await _save_progress(conn, run.id, tasks, progress)
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


async def _save_progress(
    conn: AsyncConnection, run_id: str, tasks: list[Task], progress: Progress
) -> None:
    await store.save_tasks(conn, run_id, tasks)
    await store.update_run(
        conn,
        run_id,
        progress={"done": progress.done, "total": progress.total, "current": progress.current},
    )
