"""The run lifecycle (``runs/lifecycle.py``), on every database: each step is one
compare-and-set of the run's state plus its event, in the caller's transaction (both or
neither); a step whose expected state moved writes nothing. And the rule: nothing else in
``src/`` writes a run's state."""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from spindle.db.tables import events
from spindle.domain import Progress, State, Task
from spindle.runs import lifecycle, store
from spindle.runs.lifecycle import Ending
from spindle.runs.wakeup import Wakeup
from tests.runs.test_claim import add_run, get

SRC = Path(__file__).resolve().parents[2] / "src" / "spindle"


async def state_events(engine: AsyncEngine, run_id: str) -> list[dict[str, Any]]:
    async with engine.connect() as conn:
        return [e.data for e in await store.list_events(conn, run_id) if e.kind == "state"]


async def event_count(engine: AsyncEngine) -> int:
    async with engine.connect() as conn:
        return int((await conn.execute(select(func.count()).select_from(events))).scalar_one())


def task(n: int, state: State) -> Task:
    return Task(id=f"job-{n}", name=f"rule_{n}", state=state)


async def test_a_run_through_every_step_writes_each_change_with_its_event(
    db_engine: AsyncEngine,
) -> None:
    wakeup = Wakeup()
    run = await add_run(db_engine, State.INITIALIZING)
    async with db_engine.begin() as conn:
        started = await lifecycle.start(
            conn, run.id, handle={"backend": "local", "pid": 1}, cmd=["cwltool"], running=True
        )
    assert started == lifecycle.StateChange(run.id, State.RUNNING)
    got = await get(db_engine, run.id)
    assert (got.state, got.handle, got.cmd) == (
        State.RUNNING,
        {"backend": "local", "pid": 1},
        ["cwltool"],
    )
    assert got.start_time is not None

    progress = Progress(done=1, total=2, current=["rule_2"])
    tasks = [task(1, State.COMPLETE), task(2, State.RUNNING)]
    async with db_engine.begin() as conn:
        assert await lifecycle.record_progress(conn, run.id, tasks, progress)
    async with db_engine.begin() as conn:  # the same again: nothing to write
        assert not await lifecycle.record_progress(conn, run.id, tasks, progress)
    assert (await get(db_engine, run.id)).progress == progress

    async with db_engine.begin() as conn:
        await lifecycle.note(conn, run.id, "cannot follow the run in local: gone; retrying")
        cancel = await lifecycle.request_cancel(conn, run.id, State.RUNNING, wakeup)
    assert cancel is not None
    assert cancel.to is State.CANCELING

    ending = Ending(State.CANCELED, exit_code=143, outputs={"out": "x"}, launched=True)
    async with db_engine.begin() as conn:
        ended = await lifecycle.finish(conn, run.id, ending, wakeup)
    assert ended is not None
    assert ended.to is State.CANCELED
    got = await get(db_engine, run.id)
    assert (got.state, got.exit_code, got.outputs) == (State.CANCELED, 143, {"out": "x"})
    assert got.system_logs == ["cannot follow the run in local: gone; retrying"]
    assert got.end_time is not None
    async with db_engine.connect() as conn:
        states = [
            t.state for _, t in await store.list_tasks(conn, run.id, after_ordinal=None, limit=9)
        ]
    assert states == [State.COMPLETE, State.CANCELED]  # the unfinished task ended with it

    assert await state_events(db_engine, run.id) == [
        {"from": None, "to": "QUEUED"},
        {"to": "RUNNING"},
        {"to": "CANCELING", "reason": "cancel requested"},
        {"to": "CANCELED"},
    ]


async def test_a_queued_run_is_canceled_at_once_and_a_failure_keeps_its_reason(
    db_engine: AsyncEngine,
) -> None:
    wakeup = Wakeup()
    queued = await add_run(db_engine)
    running = await add_run(db_engine, State.RUNNING, system_logs=["earlier"])
    async with db_engine.begin() as conn:
        assert await lifecycle.request_cancel(conn, queued.id, State.QUEUED, wakeup)
        assert await lifecycle.fail(conn, running.id, "Spindle could not run it: boom", wakeup)
    assert (await get(db_engine, queued.id)).state is State.CANCELED
    failed = await get(db_engine, running.id)
    assert failed.state is State.SYSTEM_ERROR
    assert failed.system_logs == ["earlier", "Spindle could not run it: boom"]
    assert (await state_events(db_engine, running.id))[-1] == {
        "to": "SYSTEM_ERROR",
        "reason": "Spindle could not run it: boom",
    }


async def test_a_step_whose_expected_state_moved_changes_nothing_and_writes_no_event(
    db_engine: AsyncEngine,
) -> None:
    wakeup = Wakeup()
    ended = await add_run(db_engine, State.COMPLETE, system_logs=["done"])
    queued = await add_run(db_engine)
    before = await event_count(db_engine)
    async with db_engine.begin() as conn:
        assert await lifecycle.mark_running(conn, ended.id) is None
        assert await lifecycle.mark_running(conn, queued.id) is None
        assert await lifecycle.finish(conn, ended.id, Ending(State.EXECUTOR_ERROR), wakeup) is None
        assert await lifecycle.fail(conn, ended.id, "late", wakeup) is None
        # a cancel that read RUNNING while the run is still QUEUED: nothing, read again
        assert await lifecycle.request_cancel(conn, queued.id, State.RUNNING, wakeup) is None
        assert await lifecycle.request_cancel(conn, ended.id, State.COMPLETE, wakeup) is None
        progress = Progress(done=1, total=1, current=[])
        assert not await lifecycle.record_progress(
            conn, ended.id, [task(1, State.COMPLETE)], progress
        )
    assert await event_count(db_engine) == before
    after = await get(db_engine, ended.id)
    assert (after.state, after.system_logs, after.progress) == (State.COMPLETE, ["done"], None)
    assert (await get(db_engine, queued.id)).state is State.QUEUED


async def test_a_failed_event_write_rolls_back_the_state_change(
    db_engine: AsyncEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    run = await add_run(db_engine, State.RUNNING)
    before = await event_count(db_engine)

    async def broken(*args: Any, **kwargs: Any) -> None:
        raise RuntimeError("the events table refused the row")

    monkeypatch.setattr(store, "add_event", broken)
    with pytest.raises(RuntimeError, match="refused"):
        async with db_engine.begin() as conn:
            await lifecycle.fail(conn, run.id, "Spindle could not run it", Wakeup())
    after = await get(db_engine, run.id)
    assert (after.state, after.end_time, after.system_logs) == (State.RUNNING, None, [])
    assert await event_count(db_engine) == before


# --- the rule -----------------------------------------------------------------------------


def _writes_runs(tree: ast.AST) -> bool:
    """Whether a module updates or inserts into the ``runs`` table (itself, or through
    ``store.update_run``)."""
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        func_ = node.func
        if isinstance(func_, ast.Attribute | ast.Name) and "update_run" in (
            getattr(func_, "attr", None),
            getattr(func_, "id", None),
        ):
            return True
        if (
            isinstance(func_, ast.Name)
            and func_.id in ("update", "insert")
            and any(isinstance(a, ast.Name) and a.id == "runs" for a in node.args)
        ):
            return True
        if (
            isinstance(func_, ast.Attribute)
            and func_.attr in ("update", "insert")
            and isinstance(func_.value, ast.Name)
            and func_.value.id == "runs"
        ):
            return True
    return False


def _sets_state(function: ast.AST) -> bool:
    """Whether a function writes a ``state`` value: ``.values(state=...)``,
    ``store.update_run(..., state=...)`` or a ``"state"`` key in a dict of values, outside
    a function that works on the ``tasks`` table (a task's state)."""
    names = {n.id for n in ast.walk(function) if isinstance(n, ast.Name)}
    if "tasks" in names:
        return False
    for node in ast.walk(function):
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr in ("values", "update_run")
            and any(k.arg == "state" for k in node.keywords)
        ):
            return True
        if isinstance(node, ast.Dict) and any(
            isinstance(k, ast.Constant) and k.value == "state" for k in node.keys
        ):
            return True
    return False


def test_only_the_lifecycle_writes_a_runs_state() -> None:
    writers: dict[str, list[str]] = {}
    callers: set[str] = set()
    for path in sorted(SRC.rglob("*.py")):
        module = path.relative_to(SRC).as_posix()
        tree = ast.parse(path.read_text(), filename=str(path))
        for node in ast.walk(tree):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and node.func.attr == "transition"
            ):
                callers.add(module)
        if not _writes_runs(tree):
            continue
        found = [
            f.name
            for f in ast.walk(tree)
            if isinstance(f, ast.FunctionDef | ast.AsyncFunctionDef) and _sets_state(f)
        ]
        if found:
            writers[module] = sorted(found)
    # store's primitives: a run is created QUEUED, and every later change is a transition,
    # which only the lifecycle calls; the claim (QUEUED → INITIALIZING) is claim.py's one
    # atomic statement
    assert writers == {
        "runs/store.py": ["insert_run", "transition"],
        "runs/claim.py": ["claim_next"],
    }
    assert callers == {"runs/lifecycle.py"}
