"""The driver of one run: launch → monitor → finish, through its engine and backend.

The worker (``scheduler.worker``) claims or adopts a run and hands it here; every state
change the driver makes goes through ``runs.lifecycle``. A database error surfaces as
``outage.DatabaseDown`` (the worker waits it out and hands the run back); a failure inside
Spindle ends the run ``SYSTEM_ERROR`` with the reason.

When the worker stops it sets :attr:`Driver.stopping`: each run's driver finishes the step
it is in (a database write is never cut half-way) and raises :class:`Stopped` at its next
wait (for the backend's next look, between two tries to reach a compute environment),
leaving the run's engine going for another worker to adopt.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import replace
from typing import Any, TypeVar

from sqlalchemy.ext.asyncio import AsyncEngine

from spindle.backends.base import Backend, Handle, Status
from spindle.config import Settings
from spindle.domain import Progress, Run, State, Task
from spindle.engines.base import Engine
from spindle.engines.registry import Catalog
from spindle.errors import SpindleError, Unreachable, describe
from spindle.execution import Job, Report
from spindle.runs import lifecycle, lineage, store, users
from spindle.runs.lifecycle import Deadline, Ending
from spindle.runs.wakeup import Wakeup
from spindle.scheduler import outage
from spindle.scheduler.outage import DatabaseDown
from spindle.scheduler.poller import (
    Outcome,
    Overtime,
    Poller,
    Stopping,
    Trouble,
    next_outcome,
)
from spindle.storage.rundir import RunDir
from spindle.storage.shipping import remove_uploaded, stage_inputs, upload

log = logging.getLogger(__name__)
T = TypeVar("T")

#: Longest wait between two tries to reach a compute environment that cannot be reached
#: (the waits double from one second up to this).
RETRY_MAX_SECONDS = 30.0


class Stopped(Exception):
    """The worker is stopping: the run's driver stopped at a wait, the run left as it is
    (its engine going, its lease to be expired by the worker)."""


class Driver:
    """Drives the runs of one worker, one call of :meth:`drive` per run; shares one
    :class:`Poller` per compute environment among them."""

    def __init__(
        self,
        *,
        settings: Settings,
        db: AsyncEngine,
        catalog: Catalog,
        backends: dict[str, Backend],
        wakeup: Wakeup,
    ) -> None:
        self.settings = settings
        self.db = db
        self.catalog = catalog
        self.backends = backends
        self.wakeup = wakeup
        self.pollers: dict[str, Poller] = {}
        #: set when the worker stops: every run's driver raises ``Stopped`` at its next wait
        self.stopping = asyncio.Event()

    async def drive(self, run: Run, *, adopted: bool) -> None:
        """Take ``run`` to its end (``DatabaseDown``, ``Stopped`` and cancellation pass
        through)."""
        rundir = RunDir.for_run(self.settings.data_dir, run.id)
        try:
            if self.stopping.is_set():
                raise Stopped
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
        except (asyncio.CancelledError, DatabaseDown, Stopped):
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
        poller = self.pollers.get(run.compute_env)
        if poller is None:
            interval = backend.poll_interval or self.settings.monitor_interval
            poller = Poller(run.compute_env, backend, interval, RETRY_MAX_SECONDS)
            self.pollers[run.compute_env] = poller
        return poller

    # --- launch --------------------------------------------------------------------------

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
            staged = await stage_inputs(
                self.settings, run, rundir, lambda p: str(site.path(rundir, p))
            )
            launch = await asyncio.to_thread(engine.prepare, staged, rundir, site)
            async with self.db.connect() as conn:
                resumed = await lineage.took_work(conn, run.id)
            if resumed:  # its work/ is its parent's: the engine's resume hook continues it
                launch = await asyncio.to_thread(engine.resume, staged, rundir, launch)
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
        async with outage.begin(self.db) as conn:
            # the common case in one statement: the handle saved with the move to RUNNING;
            # a queued job (RUNNING once it runs), or a run cancelled while we were starting
            # it, has its handle saved all the same, and the monitor takes it from here
            await lifecycle.start(
                conn,
                run.id,
                handle=handle.to_json(),
                cmd=launch.argv if launch else [],
                running=not backend.capabilities.queues,
            )
        return handle

    # --- monitor -------------------------------------------------------------------------

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
                    nxt = await next_outcome(
                        poller, backend, handle, cancel, deadline, self.stopping
                    )
                    if isinstance(nxt, Stopping):
                        raise Stopped
                    if isinstance(nxt, Overtime) and deadline is not None:
                        await self._stop_overtime(run, engine, backend, rundir, handle, deadline)
                        return
                    outcome = None if isinstance(nxt, Overtime) else nxt
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
                        await lifecycle.mark_running(conn, run.id)
        finally:
            poller.forget(run.id)

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
                await self.pause(delay)
                delay = min(RETRY_MAX_SECONDS, delay * 2)
                continue
            if failures:
                await self._note(run_id, f"{what} succeeded after {failures + 1} attempts")
            return result

    async def pause(self, seconds: float) -> None:
        """Sleep ``seconds``, or raise ``Stopped`` as soon as the worker stops."""
        if self.stopping.is_set():
            raise Stopped
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.stopping.wait(), seconds)
        if self.stopping.is_set():
            raise Stopped

    async def _note(self, run_id: str, line: str) -> None:
        """Add a line to the run's system_logs (what Spindle had to deal with)."""
        log.info("run %s: %s", run_id, line)
        with contextlib.suppress(Exception):
            async with self.db.begin() as conn:
                await lifecycle.note(conn, run_id, line)

    async def _sync_progress(
        self, run: Run, engine: Engine | None, backend: Backend, rundir: RunDir, handle: Handle
    ) -> None:
        tasks, progress, _ = await self._read_progress(engine, backend, rundir, handle)
        if tasks:
            async with outage.begin(self.db) as conn:
                await lifecycle.record_progress(conn, run.id, tasks, progress)

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

    # --- finish --------------------------------------------------------------------------

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
        notes: list[str] = []
        tasks: list[Task] = []
        progress: Progress | None = None
        outputs: dict[str, Any] | None = None
        if handle is not None:
            tasks, progress, report = await self._read_progress(engine, backend, rundir, handle)
            try:
                if report is not None and report.outputs is not None:
                    outputs = report.outputs
                elif engine is not None:
                    files = await self._retrying(
                        run.id,
                        f"listing the run's files in {run.compute_env}",
                        lambda: backend.files(handle, rundir),
                    )
                    outputs = await asyncio.to_thread(engine.outputs, rundir, files)
            except Exception as exc:
                log.exception("collecting outputs of %s failed", run.id)
                notes.append(f"collecting outputs failed: {exc!r}")
            if status.state is State.EXECUTOR_ERROR and engine is not None:
                notes += await asyncio.to_thread(engine.failure_notes, rundir)
            # before the final state, so a worker that dies meanwhile leaves the run to be
            # adopted and finished (and uploaded) again, never ended without its upload
            uploaded = await upload(self.settings, replace(run, outputs=outputs or {}), rundir)
            if uploaded is not None:
                notes.append(uploaded)
        ending = Ending(
            status.state,
            exit_code=status.exit_code,
            reason=status.reason,
            outputs=outputs,
            notes=tuple(notes),
            launched=handle is not None,
        )
        async with outage.begin(self.db) as conn:
            if tasks and progress is not None:
                await lifecycle.record_progress(conn, run.id, tasks, progress)
            change = await lifecycle.finish(conn, run.id, ending, self.wakeup)
        lifecycle.woken(change, self.wakeup)
        log.info("run %s ended %s", run.id, status.state.value if change else "(already ended)")
        if change and handle is not None:
            # only once the end is stored: a finish tried again still finds the outputs
            await remove_uploaded(self.settings, rundir)

    async def _fail(self, run: Run, reason: str) -> None:
        """SYSTEM_ERROR with ``reason``. Raises ``DatabaseDown`` if that cannot be written:
        the run is then taken up again once the database is back, never left unowned."""
        async with outage.begin(self.db) as conn:
            change = await lifecycle.fail(conn, run.id, reason, self.wakeup)
        lifecycle.woken(change, self.wakeup)
