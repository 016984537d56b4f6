"""The run lifecycle: every change of a run's state, and nothing else writes one.

Each step takes a connection inside the caller's transaction and is one compare-and-set
write of the run's state (guarded by the states it may move from) plus its event, a
:class:`StateChange`, in that same transaction: both are committed or neither. A step whose
guard no longer holds (another worker, a cancel, the API moved the run first) writes
nothing and answers None. The events table is the outbox: the SSE streams
(``runs/feed.py``) and anything later (notifications, metrics) read what happened from it,
so nobody needs a hook here.

The worker (``scheduler/``), ``RunService.cancel`` and ``GroupService`` call these steps;
``store.transition`` is the primitive underneath, called from here only. Two writes of the
state live elsewhere by design: a run is created ``QUEUED`` by ``store.insert_run``, and the
claim (``QUEUED → INITIALIZING``) is the single atomic statement of ``runs/claim.py``.

Progress and the system-log notes are written here too (they belong to the run's story),
guarded by the run being active, but they are not state changes and write no event: the run
stream reads progress from the run row (``feed.follow_run``), and a new event kind would be
a new message in every public stream.

Notifications are the one consequence written here: each successful step records what it
owes its subscribers (``notify.outbox.record``) in the caller's transaction, so a
notification exists exactly when its change does; sending is the dispatcher's, later.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from spindle import metrics
from spindle.db.types import utcnow
from spindle.domain import ACTIVE_STATES, Progress, Run, State, Task
from spindle.notify import outbox
from spindle.runs import store
from spindle.runs.wakeup import Wakeup


@dataclass(frozen=True)
class StateChange:
    """The event a step writes: the run went ``to`` a state, for ``reason``."""

    run_id: str
    to: State
    reason: str | None = None
    #: the run's group when it ended, whose room it freed (not part of the event's data)
    group_id: str | None = None

    @property
    def data(self) -> dict[str, Any]:
        """The event's data as the events table holds it (and the streams send it)."""
        data: dict[str, Any] = {"to": self.to.value}
        if self.reason:
            data["reason"] = self.reason
        return data


async def _move(
    conn: AsyncConnection, change: StateChange, expected: Collection[State], **values: Any
) -> StateChange | None:
    done = await store.transition(
        conn, change.run_id, expected=expected, new=change.to, reason=change.reason, **values
    )
    if not done:
        return None
    # the notifications it owes, in this same transaction (the outbox; notify/outbox.py)
    await outbox.record(conn, change.run_id, change.to, change.reason)
    return change


# --- the worker's steps -------------------------------------------------------------------


async def start(
    conn: AsyncConnection,
    run_id: str,
    *,
    handle: dict[str, Any],
    cmd: list[str],
    running: bool,
) -> StateChange | None:
    """The backend took the run (``handle``, ``cmd``): saved at once. With ``running`` (a
    backend that does not queue) the run moves ``INITIALIZING → RUNNING`` in the same
    write; otherwise, or when it was cancelled meanwhile, only the handle is saved and the
    monitor takes it from there (:func:`mark_running` once it runs)."""
    saved: dict[str, Any] = {"handle": handle, "cmd": cmd}
    if running:
        change = StateChange(run_id, State.RUNNING)
        if await _move(conn, change, [State.INITIALIZING], start_time=utcnow(), **saved):
            return change
    await store.update_run(conn, run_id, **saved)
    return None


async def mark_running(conn: AsyncConnection, run_id: str) -> StateChange | None:
    """The backend says a run still ``INITIALIZING`` runs (a queued job started, or an
    adopted run whose start its previous owner had not recorded)."""
    change = StateChange(run_id, State.RUNNING)
    return await _move(conn, change, [State.INITIALIZING], start_time=utcnow())


async def record_progress(
    conn: AsyncConnection, run_id: str, tasks: Iterable[Task], progress: Progress
) -> bool:
    """Save the tasks an engine reports and the run's progress, each only when it changed,
    and only while the run is active. True if anything was written."""
    current = await store.get_progress(conn, run_id)
    if current is None or not current[0].active:
        return False
    written = await store.save_tasks(conn, run_id, tasks)
    if current[1] != progress:
        await store.update_run(
            conn,
            run_id,
            progress={"done": progress.done, "total": progress.total, "current": progress.current},
        )
        written += 1
    return written > 0


@dataclass(frozen=True)
class Ending:
    """How a run ended, as its driver found out: the final state, the engine's exit code,
    the reason, its outputs (None: not collected) and notes for its system_logs."""

    state: State
    exit_code: int | None = None
    reason: str | None = None
    outputs: dict[str, Any] | None = None
    notes: tuple[str, ...] = ()
    #: it was started (had a handle), so a run never seen running ran between two looks
    launched: bool = False


async def finish(
    conn: AsyncConnection, run_id: str, ending: Ending, wakeup: Wakeup
) -> StateChange | None:
    """Any active state → the final one, with the end time, exit code, outputs and notes;
    tasks still marked unfinished end with it, and a run of a group wakes the workers of
    other processes on commit (its group has room again; the caller wakes its own after the
    commit, see :func:`woken`). None if the run had ended already."""
    current = await store.get_run(conn, run_id)
    if current is None or not current.state.active:
        return None
    values: dict[str, Any] = {"end_time": utcnow()}
    if ending.exit_code is not None:
        values["exit_code"] = ending.exit_code
    if ending.outputs is not None:
        values["outputs"] = ending.outputs
    if (
        current.start_time is None
        and ending.launched
        and ending.state not in (State.CANCELED, State.SYSTEM_ERROR)
    ):
        values["start_time"] = values["end_time"]  # it ran between two looks
    notes = [ending.reason] if ending.reason else []
    change = await _move(
        conn,
        StateChange(run_id, ending.state, ending.reason, current.group_id),
        ACTIVE_STATES,
        system_logs=[*current.system_logs, *notes, *ending.notes],
        **values,
    )
    if change is not None:
        await _ended(conn, current, ending.state, wakeup)
    return change


async def fail(
    conn: AsyncConnection, run_id: str, reason: str, wakeup: Wakeup
) -> StateChange | None:
    """Any active state → ``SYSTEM_ERROR`` because Spindle could not run it (``reason``)."""
    current = await store.get_run(conn, run_id)
    change = await _move(
        conn,
        StateChange(run_id, State.SYSTEM_ERROR, reason, current.group_id if current else None),
        ACTIVE_STATES,
        end_time=utcnow(),
        system_logs=[*(current.system_logs if current else []), reason],
    )
    if change is not None and current is not None:
        await _ended(conn, current, State.SYSTEM_ERROR, wakeup)
    return change


@dataclass(frozen=True)
class Deadline:
    """When a running run of a group with ``max_duration`` must be stopped (the group
    max_duration stop is a :func:`finish` with :meth:`reason`)."""

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

    def reason(self) -> str:
        """The reason a run past it ends ``SYSTEM_ERROR`` with (its driver stops it in its
        backend, then :func:`finish` writes it)."""
        return (
            f"stopped: it ran longer than its run group's max_duration of "
            f"{self.seconds / 60:g} minutes ({self.seconds} s)"
        )


async def _ended(conn: AsyncConnection, run: Run, final: State, wakeup: Wakeup) -> None:
    await store.unfinished_tasks_to(conn, run.id, final)
    metrics.ended(run, final)  # (counted in the process whose worker ended it)
    if run.group_id is not None:
        await wakeup.notify(conn, "queued")  # its group has room again (sent on commit)


def woken(change: StateChange | None, wakeup: Wakeup) -> None:
    """After the commit of an ending: wake this process's worker if the run's group has
    room again."""
    if change is not None and change.group_id is not None:
        wakeup.run_queued()


async def note(conn: AsyncConnection, run_id: str, line: str) -> None:
    """Add a line to the run's system_logs (what Spindle had to deal with)."""
    await store.append_system_log(conn, run_id, line)


# --- the services' steps ------------------------------------------------------------------

#: the reason a QUEUED run's cancel gives
CANCELLED_QUEUED = "cancelled before it started"
#: the reason an active run's cancel request gives
CANCEL_REQUESTED = "cancel requested"


def cancellable(state: State) -> bool:
    """Whether a cancel request moves a run in ``state`` (an ended run, or one being
    cancelled, is left as it is)."""
    return state is State.QUEUED or (state.active and state is not State.CANCELING)


async def request_cancel(
    conn: AsyncConnection, run_id: str, state: State, wakeup: Wakeup
) -> StateChange | None:
    """Cancel a run seen in ``state``: ``QUEUED → CANCELED`` at once, an active run →
    ``CANCELING`` (its worker, told across processes on commit and in-process by the
    caller after it, stops the engine). None if nothing changed: the state moved meanwhile
    (read it again and retry), or the run is not :func:`cancellable`."""
    if state is State.QUEUED:
        change = StateChange(run_id, State.CANCELED, CANCELLED_QUEUED)
        return await _move(conn, change, [State.QUEUED], end_time=utcnow())
    if cancellable(state):
        change = StateChange(run_id, State.CANCELING, CANCEL_REQUESTED)
        if await _move(conn, change, [state]):
            await wakeup.notify(conn, f"cancel:{run_id}")
            return change
    return None
