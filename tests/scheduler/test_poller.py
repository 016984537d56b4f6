"""The poller: one ``backend.poll`` per cycle for every run followed in a backend, fresh
results for each caller, and backoff (with the reason handed to every run) while polling
fails. The backend here is a small one of the seam's own kind that records its calls."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest

from spindle.backends.base import Backend, Handle, Status
from spindle.domain import State
from spindle.errors import Unreachable
from spindle.execution import Job
from spindle.scheduler.poller import Poller, Trouble


class Recording(Backend):
    """Answers RUNNING for every handle, or fails while ``down``; records each call."""

    name = "recording"

    def __init__(self) -> None:
        self.calls: list[list[str]] = []
        self.down = False

    async def submit(self, job: Job) -> Handle:
        raise NotImplementedError

    async def poll(self, handles: Sequence[Handle]) -> dict[str, Status]:
        self.calls.append(sorted(h.run_id for h in handles))
        await asyncio.sleep(0.01)
        if self.down:
            raise Unreachable("the cluster is down")
        return {h.run_id: Status(State.RUNNING) for h in handles}

    async def cancel(self, handle: Handle) -> None:
        raise NotImplementedError


def handle(run_id: str) -> Handle:
    return Handle(run_id)


async def test_one_call_per_cycle_for_every_followed_run() -> None:
    backend = Recording()
    poller = Poller("hpc", backend, interval=0.2, max_backoff=1)
    try:
        for run_id in ("a", "b", "c"):
            poller.follow(handle(run_id))
        results = await asyncio.gather(*(poller.next(r) for r in ("a", "b", "c")))
        assert results == [Status(State.RUNNING)] * 3
        # every run asked, and each cycle covered all of them at once
        assert backend.calls
        assert all(call == ["a", "b", "c"] for call in backend.calls[-1:])
        cycles = len(backend.calls)
        await asyncio.gather(*(poller.next(r) for r in ("a", "b", "c")))
        assert len(backend.calls) == cycles + 1
    finally:
        await poller.close()


async def test_next_waits_for_a_cycle_that_started_after_the_call() -> None:
    backend = Recording()
    poller = Poller("hpc", backend, interval=0.05, max_backoff=1)
    try:
        poller.follow(handle("a"))
        await poller.next("a")
        before = len(backend.calls)
        await poller.next("a")
        assert len(backend.calls) > before
    finally:
        await poller.close()


async def test_a_forgotten_run_leaves_the_cycle() -> None:
    backend = Recording()
    poller = Poller("hpc", backend, interval=0.05, max_backoff=1)
    try:
        poller.follow(handle("a"))
        poller.follow(handle("b"))
        await poller.next("a")
        poller.forget("b")
        await poller.next("a")
        assert backend.calls[-1] == ["a"]
    finally:
        await poller.close()


async def test_failures_reach_every_run_and_back_off() -> None:
    backend = Recording()
    poller = Poller("hpc", backend, interval=0.05, max_backoff=0.4)
    try:
        poller.follow(handle("a"))
        poller.follow(handle("b"))
        backend.down = True
        first = await poller.next("a")
        assert isinstance(first, Trouble)
        assert first.message == "the cluster is down"
        second = await poller.next("b")
        assert isinstance(second, Trouble)
        assert second.retry_in > first.retry_in  # backing off
        assert second.retry_in <= 0.4
        poller.kick()  # kicks do not hurry a failing backend
        backend.down = False
        assert await poller.next("a") == Status(State.RUNNING)
    finally:
        await poller.close()


@pytest.mark.parametrize("interval", [0.05])
async def test_the_loop_ends_when_no_run_is_followed(interval: float) -> None:
    backend = Recording()
    poller = Poller("hpc", backend, interval=interval, max_backoff=1)
    poller.follow(handle("a"))
    await poller.next("a")
    poller.forget("a")
    await asyncio.sleep(interval * 4)
    calls = len(backend.calls)
    await asyncio.sleep(interval * 4)
    assert len(backend.calls) == calls
    poller.follow(handle("b"))  # and starts again
    assert await poller.next("b") == Status(State.RUNNING)
    await poller.close()
