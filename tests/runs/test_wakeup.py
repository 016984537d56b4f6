"""Wake-ups between processes (spindle.runs.wakeup): a notification acts in every process
but the one that sent it, which was woken in-process already. Delivery across real
processes on PostgreSQL is tested in tests/scheduler/test_workers.py."""

from __future__ import annotations

from spindle.runs.wakeup import Wakeup


async def test_a_notification_from_another_process_wakes_the_worker() -> None:
    sender, receiver = Wakeup(), Wakeup()
    cancel = receiver.cancel_event("run-1")
    receiver.deliver(f"{sender.sender} queued")
    receiver.deliver(f"{sender.sender} cancel:run-1")
    assert receiver.queued.is_set()
    assert cancel.is_set()


async def test_a_process_ignores_its_own_echo() -> None:
    wakeup = Wakeup()
    cancel = wakeup.cancel_event("run-1")
    wakeup.deliver(f"{wakeup.sender} queued")
    wakeup.deliver(f"{wakeup.sender} cancel:run-1")
    assert not wakeup.queued.is_set()
    assert not cancel.is_set()


async def test_unknown_messages_change_nothing() -> None:
    wakeup = Wakeup()
    wakeup.deliver("someone else-entirely")
    wakeup.deliver("")
    assert not wakeup.queued.is_set()
