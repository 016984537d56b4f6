"""One poll cycle per backend for all the runs a worker follows in it.

Each run's task asks :meth:`Poller.next` for its status; the poller's own loop calls
``backend.poll`` with every followed handle at once (for SLURM: one ``squeue`` for all of an
environment's runs), every ``interval`` seconds or sooner when kicked (a new run, a local
process that ended). A cycle that fails, e.g. because the cluster cannot be reached, gives
every run a :class:`Trouble` instead of a status, and the next cycles back off up to
``max_backoff`` seconds; runs keep their state meanwhile. The poller never blocks a caller
for longer than it takes the next cycle to finish.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass

from spindle.backends.base import Backend, Handle, Status
from spindle.errors import SpindleError, describe

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Trouble:
    """A poll cycle that failed: why, and when the next one is due."""

    message: str
    retry_in: float


Outcome = Status | Trouble


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
