"""Spindle stopped (SIGTERM) or killed (SIGKILL) mid-run and started again: every run is
adopted through its saved handle and reaches its right end, each engine started once; a run
whose engine died meanwhile becomes SYSTEM_ERROR with the reason.

One test runs a real engine (Snakemake) through a kill and a restart; the others run 20 runs
of the fake engine (``spindle.testing``, registered in the processes by
``tests.fake_spindle``): a shell loop on the real local backend, with its process group, pid
file, wrapper and exit code, where a real engine would only add its start-up time."""

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


TERMINAL = {"COMPLETE", "EXECUTOR_ERROR", "SYSTEM_ERROR", "CANCELED"}

#: 20 runs: every fifth fails with exit code 3, the others succeed
CODES = [3 if i % 5 == 0 else 0 for i in range(20)]


def _submit_fake(url: str, sleep: float, code: int = 0) -> str:
    params = {"sleep": sleep, "exit": code, "tasks": 2}
    r = httpx.post(
        f"{url}{WES}/runs",
        data={
            "workflow_type": "FAKE",
            "workflow_type_version": "1",
            "workflow_url": "workflow.fake",
            "workflow_params": json.dumps(params),
        },
        files=[("workflow_attachment", ("workflow.fake", b"a fake workflow\n"))],
        timeout=30,
    )
    assert r.status_code == 200, r.text
    run_id: str = r.json()["run_id"]
    return run_id


def _fake_starts(data: Path, run_id: str) -> int:
    """How many times the fake engine's process started the run (it logs each task)."""
    events = data / "runs" / run_id / "logs" / "fake-tasks"
    return events.read_text().split("\n").count("start 1") if events.exists() else 0


def _wait_running(url: str, run_ids: list[str], at_least: int, seconds: float = 90) -> None:
    """Until ``at_least`` of the runs are RUNNING (one list request a look: cheap enough
    to catch them going on a loaded machine)."""
    deadline = time.monotonic() + seconds
    states: list[str] = []
    while time.monotonic() < deadline:
        listed = httpx.get(f"{url}{WES}/runs", params={"page_size": 1000}, timeout=10).json()
        states = [r["state"] for r in listed["runs"] if r["run_id"] in run_ids]
        if states.count("RUNNING") >= at_least:
            return
        time.sleep(0.1)
    raise AssertionError(f"fewer than {at_least} runs RUNNING: {states}")


def _check_ends(url: str, data: Path, run_ids: list[str], codes: list[int]) -> None:
    """Each run ended as its exit code says, its engine started once."""
    for run_id, code in zip(run_ids, codes, strict=True):
        body = _wait(url, run_id, TERMINAL)
        assert body["state"] == ("COMPLETE" if code == 0 else "EXECUTOR_ERROR"), body
        assert body["run_log"]["exit_code"] == code  # type: ignore[index]
        assert _fake_starts(data, run_id) == 1, run_id


@pytest.mark.parametrize("how", ["sigterm", "kill9"])
def test_serve_stopped_or_killed_during_20_runs_takes_them_up_at_the_next_start(
    tmp_path: Path, servers: list[Server], how: str
) -> None:
    """Runs going when the server stops. After SIGTERM the stop expired the leases (an hour
    long here: nothing else would let the next start adopt the runs in time); after SIGKILL
    they run out (2 s). Either way a run whose engine was killed while no server was up ends
    SYSTEM_ERROR with the reason."""
    env = {"SPINDLE_MAX_CONCURRENT_RUNS": "20", "SPINDLE_POLL_INTERVAL": "0.5"}
    if how == "sigterm":
        env["SPINDLE_LEASE_SECONDS"] = "3600"
    data = tmp_path / "data"
    first = Server(data, tmp_path / "server.log", env=env, fakes=True)
    servers.append(first)
    first.start()
    gone = _submit_fake(first.url, 300)
    run_ids = [_submit_fake(first.url, 8, code) for code in CODES]
    _wait_running(first.url, [gone, *run_ids], at_least=6)
    _wait(first.url, gone, {"RUNNING"})

    if how == "sigterm":
        first.stop()
        assert first.proc is not None
        # a clean stop, within the time ``stop`` gives it (uvicorn ends by re-raising the
        # signal it handled)
        assert first.proc.returncode == -signal.SIGTERM
    else:
        first.kill9()
    os.killpg(int((data / "runs" / gone / "pid").read_text()), signal.SIGKILL)

    second = Server(data, tmp_path / "server.log", env=env, fakes=True)
    servers.append(second)
    second.start()
    _check_ends(second.url, data, run_ids, CODES)
    body = _wait(second.url, gone, TERMINAL)
    assert body["state"] == "SYSTEM_ERROR"
    logs = body["run_log"]["system_logs"]  # type: ignore[index]
    assert any("is gone and recorded no exit code" in line for line in logs), logs


@pytest.mark.parametrize("how", ["sigterm", "kill9"])
def test_a_worker_stopped_or_killed_during_20_runs_leaves_them_to_the_next_one(
    tmp_path: Path, servers: list[Server], how: str
) -> None:
    """A standalone worker stopped or killed with 20 runs in hand or queued, one of its runs
    cancelled while no worker is up: the next worker finishes the others and cancels that
    one, each engine started once, nothing of the cancelled run left."""
    env = {"SPINDLE_POLL_INTERVAL": "0.5", "SPINDLE_MAX_CONCURRENT_RUNS": "16"}
    if how == "sigterm":
        env["SPINDLE_LEASE_SECONDS"] = "3600"
    data = tmp_path / "data"
    api = Server(data, tmp_path / "api.log", command=["serve", "--no-worker"], env=env, fakes=True)
    worker = Server(data, tmp_path / "worker.log", command=["worker"], env=env, fakes=True)
    servers.extend([api, worker])
    api.start()
    worker.start()
    long = _submit_fake(api.url, 300)
    _wait(api.url, long, {"RUNNING"})
    run_ids = [_submit_fake(api.url, 8, code) for code in CODES]
    _wait_running(api.url, run_ids, at_least=5)
    long_pgid = int((data / "runs" / long / "pid").read_text())

    if how == "sigterm":
        worker.stop()
        assert worker.proc is not None
        assert worker.proc.returncode == 0
    else:
        worker.kill9()
    os.killpg(long_pgid, 0)  # the engine outlived its worker
    r = httpx.post(f"{api.url}{WES}/runs/{long}/cancel", timeout=10)
    assert r.status_code == 200, r.text
    assert _wait(api.url, long, {"CANCELING"})["state"] == "CANCELING"

    again = Server(data, tmp_path / "worker.log", command=["worker"], env=env, fakes=True)
    servers.append(again)
    again.start()
    _check_ends(api.url, data, run_ids, CODES)
    assert _wait(api.url, long, TERMINAL)["state"] == "CANCELED"
    assert _fake_starts(data, long) == 1
    with pytest.raises(ProcessLookupError):  # nothing of the cancelled run is left
        os.killpg(long_pgid, 0)
