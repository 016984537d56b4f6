"""Separate worker processes on one shared database: `spindle serve --no-worker` for the API
and `spindle worker` processes that claim, run and finish real workflows. On PostgreSQL a
submission wakes them through LISTEN/NOTIFY (their fallback poll is an hour away, so
nothing else could); on SQLite and MariaDB they poll."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests import servers
from tests.api.conftest import example_form
from tests.servers import WES, Server

pytestmark = [pytest.mark.engine, pytest.mark.slow]


@pytest.fixture
def fleet(
    tmp_path: Path, database_url: str, db_kind: str, cwltool_exe: str
) -> Iterator[tuple[Server, list[Server]]]:
    env = {
        "SPINDLE_DATABASE_URL": database_url,
        # On PostgreSQL only NOTIFY can wake a worker; SQLite and MariaDB poll each second.
        "SPINDLE_POLL_INTERVAL": "3600" if db_kind == "postgresql" else "1",
        "SPINDLE_MAX_CONCURRENT_RUNS": "2",
    }
    with servers.fleet(tmp_path, env) as both:
        yield both


def _wait_all(url: str, run_ids: list[str], seconds: float = 120) -> dict[str, str]:
    deadline = time.monotonic() + seconds
    states: dict[str, str] = {}
    while time.monotonic() < deadline:
        states = {
            r: httpx.get(f"{url}{WES}/runs/{r}/status", timeout=5).json()["state"] for r in run_ids
        }
        if all(
            s in {"COMPLETE", "EXECUTOR_ERROR", "SYSTEM_ERROR", "CANCELED"} for s in states.values()
        ):
            return states
        time.sleep(0.3)
    raise AssertionError(f"runs did not finish: {states}")


def test_worker_processes_share_the_queue(fleet: tuple[Server, list[Server]]) -> None:
    api, workers = fleet
    time.sleep(2)  # workers are up and idle
    data, files = example_form("cwl", "wordcount")
    run_ids = []
    for _ in range(4):
        r = httpx.post(f"{api.url}{WES}/runs", data=data, files=files, timeout=30)
        assert r.status_code == 200, r.text
        run_ids.append(r.json()["run_id"])
    states = _wait_all(api.url, run_ids)
    assert set(states.values()) == {"COMPLETE"}, states
    logs = "".join(w.log.read_text() for w in workers)
    # every run was claimed by exactly one worker and ran once
    for run_id in run_ids:
        assert logs.count(f"run {run_id} ended COMPLETE") == 1, logs
