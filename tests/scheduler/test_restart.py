"""Spindle killed with SIGKILL mid-run and started again: the run is adopted through its
saved handle and finishes, without a second engine process; a run whose engine died
meanwhile becomes SYSTEM_ERROR with the reason."""

from __future__ import annotations

import json
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.api.conftest import WES, example_form
from tests.servers import Server

pytestmark = [pytest.mark.engine, pytest.mark.slow]


@pytest.fixture
def servers(tmp_path: Path, snakemake_exe: str) -> Iterator[list[Server]]:
    made: list[Server] = []
    yield made
    for s in made:
        s.stop()


def _wait(url: str, run_id: str, states: set[str], seconds: float = 90) -> dict[str, object]:
    deadline = time.monotonic() + seconds
    body: dict[str, object] = {}
    while time.monotonic() < deadline:
        body = httpx.get(f"{url}{WES}/runs/{run_id}", timeout=5).json()
        if body["state"] in states:
            return body
        time.sleep(0.2)
    raise AssertionError(f"{run_id} stayed {body.get('state')}, wanted {states}")


def _submit_sleep(url: str, seconds: int) -> str:
    data, files = example_form("snakemake", "sleep", params={"seconds": seconds})
    r = httpx.post(f"{url}{WES}/runs", data=data, files=files, timeout=30)
    assert r.status_code == 200, r.text
    run_id: str = r.json()["run_id"]
    return run_id


def _wait_task(url: str, run_id: str) -> None:
    for _ in range(300):
        if httpx.get(f"{url}{WES}/runs/{run_id}/tasks", timeout=5).json()["task_logs"]:
            return
        time.sleep(0.1)
    raise AssertionError("no task appeared")


def test_killed_spindle_restarts_and_the_run_completes_once(
    tmp_path: Path, servers: list[Server]
) -> None:
    data = tmp_path / "data"
    first = Server(data, tmp_path / "server.log")
    servers.append(first)
    first.start()
    run_id = _submit_sleep(first.url, 6)
    _wait(first.url, run_id, {"RUNNING"})
    _wait_task(first.url, run_id)
    engine_pid = int((data / "runs" / run_id / "pid").read_text())

    first.kill9()
    os.kill(engine_pid, 0)  # the engine outlived Spindle

    second = Server(data, tmp_path / "server.log")
    servers.append(second)
    second.start()
    body = _wait(second.url, run_id, {"COMPLETE", "EXECUTOR_ERROR", "SYSTEM_ERROR"})
    assert body["state"] == "COMPLETE", body
    # one engine process ran the workflow: it started once and its single job ran once
    events = (data / "runs" / run_id / "logs" / "snakemake-events.jsonl").read_text()
    started = [e for e in map(json.loads, events.splitlines()) if e["event"] == "workflow_started"]
    assert len(started) == 1
    assert (data / "runs" / run_id / "work" / "results" / "slept.txt").read_text() == "done\n"
    tasks = httpx.get(f"{second.url}{WES}/runs/{run_id}/tasks").json()["task_logs"]
    assert [t["name"] for t in tasks].count("nap") == 1
    assert all(t["exit_code"] == 0 for t in tasks)


def test_engine_gone_after_restart_is_system_error_with_reason(
    tmp_path: Path, servers: list[Server]
) -> None:
    data = tmp_path / "data"
    first = Server(data, tmp_path / "server.log")
    servers.append(first)
    first.start()
    run_id = _submit_sleep(first.url, 300)
    _wait(first.url, run_id, {"RUNNING"})
    _wait_task(first.url, run_id)
    first.kill9()
    engine_pid = int((data / "runs" / run_id / "pid").read_text())
    os.killpg(engine_pid, signal.SIGKILL)

    second = Server(data, tmp_path / "server.log")
    servers.append(second)
    second.start()
    body = _wait(second.url, run_id, {"COMPLETE", "EXECUTOR_ERROR", "SYSTEM_ERROR"})
    assert body["state"] == "SYSTEM_ERROR"
    logs = body["run_log"]["system_logs"]  # type: ignore[index]
    assert any("is gone and recorded no exit code" in line for line in logs), logs


TERMINAL = {"COMPLETE", "EXECUTOR_ERROR", "SYSTEM_ERROR", "CANCELED"}


def _engine_starts(data: Path, run_id: str) -> int:
    """How many times an engine started the run's workflow (Snakemake logs each start)."""
    events = (data / "runs" / run_id / "logs" / "snakemake-events.jsonl").read_text()
    return sum(1 for e in map(json.loads, events.splitlines()) if e["event"] == "workflow_started")


def test_a_server_stopped_with_sigterm_takes_its_run_up_at_the_next_start(
    tmp_path: Path, servers: list[Server]
) -> None:
    data = tmp_path / "data"
    first = Server(data, tmp_path / "server.log")
    servers.append(first)
    first.start()
    run_id = _submit_sleep(first.url, 3)
    _wait(first.url, run_id, {"RUNNING"})
    _wait_task(first.url, run_id)

    first.stop()  # SIGTERM: a clean stop, the engine left running

    second = Server(data, tmp_path / "server.log")
    servers.append(second)
    second.start()
    body = _wait(second.url, run_id, TERMINAL)
    assert body["state"] == "COMPLETE", body
    assert _engine_starts(data, run_id) == 1


def test_a_worker_stopped_with_sigterm_leaves_its_runs_to_the_next_one(
    tmp_path: Path, servers: list[Server]
) -> None:
    """A standalone worker stopped mid-run, one of its runs cancelled while no worker is
    up: the next worker finishes one and cancels the other, each engine started once."""
    env = {"SPINDLE_POLL_INTERVAL": "0.5", "SPINDLE_MAX_CONCURRENT_RUNS": "4"}
    data = tmp_path / "data"
    api = Server(data, tmp_path / "api.log", command=["serve", "--no-worker"], env=env)
    worker = Server(data, tmp_path / "worker.log", command=["worker"], env=env)
    servers.extend([api, worker])
    api.start()
    worker.start()
    short, long = _submit_sleep(api.url, 3), _submit_sleep(api.url, 300)
    for run_id in (short, long):
        _wait(api.url, run_id, {"RUNNING"})
        _wait_task(api.url, run_id)
    long_pgid = int((data / "runs" / long / "pid").read_text())

    worker.stop()  # SIGTERM
    assert worker.proc is not None
    assert worker.proc.returncode == 0
    os.killpg(long_pgid, 0)  # the engine outlived its worker
    r = httpx.post(f"{api.url}{WES}/runs/{long}/cancel", timeout=10)
    assert r.status_code == 200, r.text
    assert _wait(api.url, long, {"CANCELING"})["state"] == "CANCELING"

    again = Server(data, tmp_path / "worker.log", command=["worker"], env=env)
    servers.append(again)
    again.start()
    assert _wait(api.url, short, TERMINAL)["state"] == "COMPLETE"
    assert _wait(api.url, long, TERMINAL)["state"] == "CANCELED"
    assert [_engine_starts(data, r) for r in (short, long)] == [1, 1]
    with pytest.raises(ProcessLookupError):  # nothing of the cancelled run is left
        os.killpg(long_pgid, 0)
