"""Run group limits with real Snakemake runs: ``max_runs`` and ``max_cpus`` make a group's
runs take turns while a run outside the group starts at once; ``max_duration`` stops a run
(SYSTEM_ERROR, with the reason); and two worker processes sharing PostgreSQL or MariaDB
never run more of a group at once than its limit."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import insert, select

from spindle.db.engine import create_engine
from spindle.db.tables import LOCAL_USER, run_groups, users
from tests import servers
from tests.api.conftest import example_form
from tests.servers import WES, Server

pytestmark = [pytest.mark.engine, pytest.mark.slow]

TERMINAL = {"COMPLETE", "EXECUTOR_ERROR", "SYSTEM_ERROR", "CANCELED"}


def add_group(database_url: str, **limits: Any) -> str:
    """A run group of the local user's, written straight to the database the servers use."""

    async def insert_group() -> str:
        engine = create_engine(database_url)
        try:
            group_id = str(uuid.uuid4())
            now = datetime.now(UTC)
            async with engine.begin() as conn:
                owner = (
                    await conn.execute(select(users.c.id).where(users.c.name == LOCAL_USER))
                ).scalar_one()
                await conn.execute(
                    insert(run_groups).values(
                        id=group_id,
                        name="batch",
                        description="",
                        owner_id=owner,
                        created_at=now,
                        updated_at=now,
                        **limits,
                    )
                )
            return group_id
        finally:
            await engine.dispose()

    return asyncio.run(insert_group())


def submit(url: str, *, seconds: float, group: str | None = None, **engine: str) -> str:
    data, files = example_form(
        "snakemake", "sleep", params={"seconds": seconds}, engine_parameters=engine or None
    )
    if group is not None:
        data["run_group_id"] = group
    r = httpx.post(f"{url}{WES}/runs", data=data, files=files, timeout=30)
    assert r.status_code == 200, r.text
    run_id: str = r.json()["run_id"]
    return run_id


def run_log(url: str, run_id: str) -> dict[str, Any]:
    r = httpx.get(f"{url}{WES}/runs/{run_id}", timeout=10)
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


def wait_all(url: str, run_ids: list[str], seconds: float = 240) -> dict[str, dict[str, Any]]:
    """The RunLogs once every run has ended; meanwhile, each run's state as sampled."""
    deadline = time.monotonic() + seconds
    logs: dict[str, dict[str, Any]] = {}
    while time.monotonic() < deadline:
        logs = {r: run_log(url, r) for r in run_ids}
        if all(log["state"] in TERMINAL for log in logs.values()):
            return logs
        time.sleep(0.3)
    raise AssertionError(f"runs did not end: { {r: v['state'] for r, v in logs.items()} }")


def wait_state(url: str, run_id: str, states: set[str], seconds: float = 120) -> str:
    deadline = time.monotonic() + seconds
    state = ""
    while time.monotonic() < deadline:
        state = str(httpx.get(f"{url}{WES}/runs/{run_id}/status", timeout=5).json()["state"])
        if state in states:
            return state
        time.sleep(0.2)
    raise AssertionError(f"run {run_id} is {state}, not one of {states}")


def spans(logs: dict[str, dict[str, Any]]) -> list[tuple[datetime, datetime]]:
    out = []
    for log in logs.values():
        rl = log["run_log"]
        out.append(
            (datetime.fromisoformat(rl["start_time"]), datetime.fromisoformat(rl["end_time"]))
        )
    return out


def most_at_once(intervals: list[tuple[datetime, datetime]]) -> int:
    """The most intervals that overlap at one moment."""
    points = sorted([(s, 1) for s, _ in intervals] + [(e, -1) for _, e in intervals])
    now = peak = 0
    for _, step in points:  # at equal times an end (-1) sorts before a start (+1)
        now += step
        peak = max(peak, now)
    return peak


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """One server for this module's SQLite tests (a start detects both engines: seconds).
    Each test makes a group of its own and waits for its runs to end, so none sees
    another's."""
    folder = tmp_path_factory.mktemp("group-limits")
    s = Server(
        folder / "data",
        folder / "server.log",
        env={"SPINDLE_MAX_CONCURRENT_RUNS": "4", "SPINDLE_POLL_INTERVAL": "30"},
    )
    try:
        s.start()
        yield s
    finally:
        s.stop()


def sqlite_url(server: Server) -> str:
    return f"sqlite+aiosqlite:///{server.data_dir / 'spindle.db'}"


def test_max_runs_runs_a_group_one_at_a_time_and_others_at_once(server: Server) -> None:
    group = add_group(sqlite_url(server), max_runs=1)
    grouped = [submit(server.url, seconds=3, group=group) for _ in range(3)]
    outside = submit(server.url, seconds=1)

    # the run outside the group starts while the group's first run still holds its slot
    wait_state(server.url, outside, {"RUNNING", "COMPLETE"})
    states = [httpx.get(f"{server.url}{WES}/runs/{r}/status").json()["state"] for r in grouped]
    assert states.count("QUEUED") >= 2, states

    logs = wait_all(server.url, [*grouped, outside])
    assert {log["state"] for log in logs.values()} == {"COMPLETE"}
    group_spans = spans({r: logs[r] for r in grouped})
    assert most_at_once(group_spans) == 1, group_spans
    # in submission order, each after the one before ended
    starts = [datetime.fromisoformat(logs[r]["run_log"]["start_time"]) for r in grouped]
    assert starts == sorted(starts)
    outside_start = datetime.fromisoformat(logs[outside]["run_log"]["start_time"])
    assert outside_start < starts[1], (outside_start, starts)
    # the run that frees the slot wakes the worker: the next starts long before the next
    # poll (30 s away)
    ends = [datetime.fromisoformat(logs[r]["run_log"]["end_time"]) for r in grouped]
    for ended, started in zip(ends, starts[1:], strict=False):
        assert (started - ended).total_seconds() < 10, (ends, starts)


def test_max_cpus_holds_runs_whose_cpus_do_not_fit(server: Server) -> None:
    group = add_group(sqlite_url(server), max_cpus=3)
    two = [submit(server.url, seconds=2, group=group, cpus="2") for _ in range(2)]
    one = submit(server.url, seconds=2, group=group, cpus="1")
    logs = wait_all(server.url, [*two, one])
    assert {log["state"] for log in logs.values()} == {"COMPLETE"}
    # 2 + 2 > 3: the two 2-CPU runs never overlap; the 1-CPU run may join the second
    assert most_at_once(spans({r: logs[r] for r in two})) == 1
    first_end = min(datetime.fromisoformat(logs[r]["run_log"]["end_time"]) for r in two)
    second_start = max(datetime.fromisoformat(logs[r]["run_log"]["start_time"]) for r in two)
    assert second_start >= first_end


def test_a_run_past_max_duration_is_stopped_as_system_error(server: Server) -> None:
    group = add_group(sqlite_url(server), max_duration_seconds=4)
    run_id = submit(server.url, seconds=120, group=group)
    started = time.monotonic()
    log = wait_all(server.url, [run_id], seconds=90)[run_id]
    assert time.monotonic() - started < 60
    assert log["state"] == "SYSTEM_ERROR"
    assert any("max_duration" in line for line in log["run_log"]["system_logs"]), log["run_log"]
    ran = datetime.fromisoformat(log["run_log"]["end_time"]) - datetime.fromisoformat(
        log["run_log"]["start_time"]
    )
    assert 4 <= ran.total_seconds() < 30, ran
    # the engine was stopped: its run folder's job never wrote its output
    out = server.data_dir / "runs" / run_id / "work" / "results" / "slept.txt"
    assert not out.exists()


@pytest.fixture
def fleet(tmp_path: Path, shared_database_url: str) -> Iterator[tuple[Server, list[Server]]]:
    env = {
        "SPINDLE_DATABASE_URL": shared_database_url,
        "SPINDLE_POLL_INTERVAL": "1",
        "SPINDLE_MAX_CONCURRENT_RUNS": "3",
    }
    with servers.fleet(tmp_path, env) as both:
        yield both


def test_two_workers_together_never_exceed_max_runs(
    fleet: tuple[Server, list[Server]], shared_database_url: str
) -> None:
    api, workers = fleet
    group = add_group(shared_database_url, max_runs=2)
    grouped = [submit(api.url, seconds=2, group=group) for _ in range(5)]
    logs = wait_all(api.url, grouped)
    assert {log["state"] for log in logs.values()} == {"COMPLETE"}, [
        log["run_log"]["system_logs"] for log in logs.values()
    ]
    assert most_at_once(spans(logs)) <= 2, spans(logs)
    worker_logs = "".join(w.log.read_text() for w in workers)
    for run_id in grouped:
        assert worker_logs.count(f"run {run_id} ended COMPLETE") == 1
