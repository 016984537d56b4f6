"""One poll cycle per backend for all the runs a worker follows in it.

Each run's task asks :meth:`Poller.next` for its status; the poller's own loop calls
``backend.poll`` with every followed handle at once (for SLURM: one ``squeue`` for all of an
environment's runs), every ``interval`` seconds or sooner when kicked (a new run, a local
process that ended). A cycle that fails, e.g. because the cluster cannot be reached, gives
every run a :class:`Trouble` instead of a status, and the next cycles back off up to
``max_backoff`` seconds; runs keep their state meanwhile. The poller never blocks a caller
for longer than it takes the next cycle to finish. :func:`next_outcome` is what a run's
driver waits on: the next cycle's outcome, a cancel request, its deadline, or its process's
end (which hurries the poller).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass
from typing import Any

from spindle.backends.base import Backend, Handle, Status
from spindle.errors import SpindleError, describe
from spindle.runs.lifecycle import Deadline

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Trouble:
    """A poll cycle that failed: why, and when the next one is due."""

    message: str
    retry_in: float


Outcome = Status | Trouble

#: How long a run waits on a backend that can wait for its process (local) before looking
#: again; the poller's cycles look anyway, so this only bounds one wait.
PROCESS_WAIT_SECONDS = 3600.0


class Overtime:
    """What :func:`next_outcome` answers when the run reached its group's max_duration."""


OVERTIME = Overtime()


class Stopping:
    """What :func:`next_outcome` answers when the worker is stopping."""


STOPPING = Stopping()


class Poller:
    def __init__(self, name: str, backend: Backend, interval: float, max_backoff: float) -> None:
        self.name = name
        self.backend = backend
        self.interval = interval
        self.max_backoff = max(max_backoff, interval)
        self._handles: dict[str, Handle] = {}
        self._results: dict[str, tuple[int, Outcome]] = {}
        self._started = 0  # cycles started so far
        self._finished = asyncio.Condition()
        self._kicked = asyncio.Event()
        self._loop: asyncio.Task[None] | None = None

    # --- what runs use -------------------------------------------------------------------

    def follow(self, handle: Handle) -> None:
        self._handles[handle.run_id] = handle
        self._kicked.set()
        self._ensure_loop()

    def _ensure_loop(self) -> None:
        if self._handles and (self._loop is None or self._loop.done()):
            self._loop = asyncio.create_task(self._run(), name=f"poller-{self.name}")

    def forget(self, run_id: str) -> None:
        self._handles.pop(run_id, None)
        self._results.pop(run_id, None)

    def kick(self) -> None:
        """Start the next cycle now (unless backing off after a failure)."""
        self._kicked.set()

    async def next(self, run_id: str) -> Outcome:
        """The outcome for ``run_id`` of the first cycle that starts after this call."""
        wanted = self._started + 1
        self._ensure_loop()
        async with self._finished:
            await self._finished.wait_for(
                lambda: run_id in self._results and self._results[run_id][0] >= wanted
            )
            return self._results[run_id][1]

    async def close(self) -> None:
        if self._loop is not None:
            self._loop.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._loop

    # --- the cycle -----------------------------------------------------------------------

    async def _run(self) -> None:
        failures = 0
        while self._handles:
            handles = list(self._handles.values())
            self._started += 1
            cycle = self._started
            self._kicked.clear()
            try:
                statuses = await self.backend.poll(handles)
            except Exception as exc:
                if not isinstance(exc, SpindleError):
                    log.exception("polling %s failed", self.name)
                failures += 1
                delay = min(self.max_backoff, self.interval * 2**failures)
                message = describe(exc)
                outcomes: dict[str, Outcome] = {h.run_id: Trouble(message, delay) for h in handles}
            else:
                failures = 0
                delay = self.interval
                outcomes = {
                    h.run_id: statuses.get(h.run_id)
                    or Trouble(f"{self.name} reported nothing on this run", delay)
                    for h in handles
                }
            async with self._finished:
                for run_id, outcome in outcomes.items():
                    if run_id in self._handles:
                        self._results[run_id] = (cycle, outcome)
                self._finished.notify_all()
            if failures:
                await asyncio.sleep(delay)  # back off: kicks do not hurry a failing backend
            else:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._kicked.wait(), delay)


async def next_outcome(
    poller: Poller,
    backend: Backend,
    handle: Handle,
    cancel: asyncio.Event,
    deadline: Deadline | None = None,
    stopping: asyncio.Event | None = None,
) -> Outcome | Overtime | Stopping | None:
    """The next poll outcome for the run, None when a cancel was requested first,
    ``OVERTIME`` when the run reached its ``deadline``, or ``STOPPING`` once ``stopping`` is
    set (the worker stops). A backend that can wait for its process (local) hurries the
    poller when it ends."""
    if stopping is not None and stopping.is_set():
        return STOPPING
    nxt = asyncio.create_task(poller.next(handle.run_id))
    cancelled = asyncio.create_task(cancel.wait())
    waiting: set[asyncio.Task[Any]] = {nxt, cancelled}
    stopped = None
    if stopping is not None:
        stopped = asyncio.create_task(stopping.wait())
        waiting.add(stopped)
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
            if stopped in done:
                return STOPPING
            if overtime in done:
                return OVERTIME
            poller.kick()  # the process ended: look now rather than at the next cycle
            waiting -= done
    finally:
        for task in waiting:
            task.cancel()
