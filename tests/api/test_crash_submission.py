"""A crash mid-submission leaves either the run with its folder, or a staging folder the next
start removes: never a run folder without a run. The crash is simulated at the service level
(the step after it never runs, and neither does any clean-up), the next start is real; and
a real server is killed with SIGKILL during a burst of submissions."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import httpx
import pytest

from spindle.config import Settings
from spindle.engines.registry import Catalog
from spindle.storage.rundir import Staging, abandoned
from tests.api.conftest import WES, example_form, make_app, open_client
from tests.servers import Server


class Crash(BaseException):
    """The process dies here: nothing after it runs."""


async def _submit_and_crash(
    settings: Settings, catalog: Catalog, monkeypatch: pytest.MonkeyPatch, step: str
) -> None:
    """Submit a run, the process dying right after ``Staging.<step>`` (before the commit:
    ``place``; after it: ``done`` not run)."""
    original = getattr(Staging, step)

    def crash(self: Staging) -> None:
        if step == "place":
            original(self)
        self._unlock()  # the process dies: its lock goes with it
        raise Crash

    monkeypatch.setattr(Staging, step, crash)
    monkeypatch.setattr(Staging, "discard", lambda self: None)  # a dead process cleans nothing
    data, files = example_form("cwl", "wordcount")
    async for client in open_client(make_app(settings, catalog, worker=False)):
        with pytest.raises(Crash):
            await client.post(f"{WES}/runs", data=data, files=files)
    monkeypatch.undo()


async def test_crash_before_the_commit_leaves_nothing_after_the_next_start(
    catalog: Catalog, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    await _submit_and_crash(settings, catalog, monkeypatch, "place")
    # (what the crash left: a run folder without a run, and its staging folder)
    assert len(list((settings.data_dir / "runs").iterdir())) == 1
    assert len(list((settings.data_dir / "staging").iterdir())) == 1
    async for client in open_client(make_app(settings, catalog, worker=False)):
        assert (await client.get(f"{WES}/runs")).json()["runs"] == []
        assert list((settings.data_dir / "runs").iterdir()) == []
        assert list((settings.data_dir / "staging").iterdir()) == []


async def test_crash_after_the_commit_keeps_the_run_and_its_folder(
    catalog: Catalog, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    await _submit_and_crash(settings, catalog, monkeypatch, "done")
    async for client in open_client(make_app(settings, catalog, worker=False)):
        runs = (await client.get(f"{WES}/runs")).json()["runs"]
        assert len(runs) == 1
        folder = settings.data_dir / "runs" / runs[0]["run_id"]
        assert (folder / "attachments" / "workflow.cwl").is_file()
        assert list((settings.data_dir / "staging").iterdir()) == []


def test_a_submission_in_flight_is_left_alone(settings: Settings) -> None:
    """Another process starting meanwhile (a second API server on the same folder) does not
    take a staging folder whose submitter still holds its lock."""
    staging = Staging(settings.data_dir, "in-flight")
    staging.begin()
    try:
        assert abandoned(settings.data_dir) == []
    finally:
        staging.done()
    gone = Staging(settings.data_dir, "gone")
    gone.begin()
    gone._unlock()  # its process died: the lock went with it
    assert [s.run_id for s in abandoned(settings.data_dir)] == ["gone"]


@pytest.mark.engine
@pytest.mark.slow
def test_kill9_of_serve_during_a_burst_of_submissions(tmp_path: Path) -> None:
    """A real server killed with SIGKILL while several POST /runs are in flight (their
    attachments arriving, staged, being stored); the next start settles what it left: every
    run it knows has its folder, no run folder is without a run, no staging folder is left."""
    data = tmp_path / "data"
    first = Server(data, tmp_path / "server.log", command=["serve", "--no-worker"])
    fields, files = example_form("cwl", "wordcount")
    # a big attachment keeps each request in flight for a while
    files = [*files, ("workflow_attachment", ("padding.txt", b"x" * 4_000_000))]
    answered: list[str] = []
    stop = threading.Event()

    def submit_until_killed() -> None:
        with httpx.Client(timeout=60) as client:
            while not stop.is_set():
                try:
                    r = client.post(f"{first.url}{WES}/runs", data=fields, files=files)
                except httpx.HTTPError:
                    return  # the server is gone
                assert r.status_code == 200, r.text
                answered.append(r.json()["run_id"])

    threads = [threading.Thread(target=submit_until_killed) for _ in range(6)]
    try:
        first.start()
        for t in threads:
            t.start()
        deadline = time.monotonic() + 120
        while len(answered) < 6 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert len(answered) >= 6, "the server answered too few submissions"
        first.kill9()  # with the other submissions in flight
    finally:
        stop.set()
        for t in threads:
            if t.is_alive():
                t.join(60)
        first.stop()

    second = Server(data, tmp_path / "server.log", command=["serve", "--no-worker"])
    try:
        second.start()  # settles the interrupted submissions before it serves
        body = httpx.get(f"{second.url}{WES}/runs", params={"page_size": 1000}, timeout=30).json()
    finally:
        second.stop()
    stored = {r["run_id"] for r in body["runs"]}
    assert set(answered) <= stored  # every answered submission is kept
    folders = {p.name for p in (data / "runs").iterdir()}
    assert folders == stored  # each run has its folder, and no folder is without a run
    for run_id in stored:
        assert (data / "runs" / run_id / "attachments" / "workflow.cwl").is_file()
    staging = data / "staging"
    assert not staging.exists() or list(staging.iterdir()) == []
