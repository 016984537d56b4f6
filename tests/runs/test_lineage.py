"""Recover, resubmit and lineage, DELETE /runs/{id} and retention, with the fake engine
(spindle.testing): the service's rules in milliseconds. What only a real engine shows (only
the unfinished steps run again) is in tests/engines/test_resume.py."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import update

from spindle.db.tables import runs
from spindle.domain import Caller
from spindle.errors import Conflict, RunNotFound
from spindle.runs import lineage, removal
from spindle.runs.removal import Janitor
from spindle.storage.access import Removed, remove_tree
from spindle.storage.rundir import RunDir, Staging, abandoned
from tests.api.conftest import CLEANUP, WES, app_client, make_app
from tests.scheduler.test_fakes import (
    ENDED,
    client,
    fake_catalog,
    fake_settings,
    fakes,
    submit,
    wait_for,
)

__all__ = ["client", "fakes"]  # the fixtures, imported so pytest finds them here

#: a caller who owns none of the runs (user ids of the in-process app start at 1)
STRANGER = Caller(user_id=999_999, name="stranger")


def app_of(client: httpx.AsyncClient) -> Any:
    return client._transport.app  # type: ignore[attr-defined]


def rundir(client: httpx.AsyncClient, run_id: str) -> RunDir:
    return RunDir.for_run(app_of(client).state.service.settings.data_dir, run_id)


async def failed_run(client: httpx.AsyncClient) -> str:
    """A run that failed, with a file of its own in its working folder."""
    run_id = await submit(client, {"sleep": 0, "exit": 3, "tasks": 1})
    assert (await wait_for(client, run_id, ENDED))["state"] == "EXECUTOR_ERROR"
    (rundir(client, run_id).work / "finished-step.txt").write_text("step one\n")
    return run_id


async def test_a_recovery_takes_over_the_working_folder_and_shows_its_lineage(
    client: httpx.AsyncClient,
) -> None:
    parent = await failed_run(client)
    r = await client.post(
        f"{WES}/runs/{parent}/recover",
        json={"notes": "fixed the exit code", "override_params": {"exit": 0}},
    )
    assert r.status_code == 200, r.text
    child = r.json()["run_id"]
    body = await wait_for(client, child, ENDED)
    assert body["state"] == "COMPLETE"
    assert body["request"]["workflow_params"]["exit"] == 0

    # the parent's working folder is the child's now, with what the parent left in it
    assert (rundir(client, child).work / "finished-step.txt").read_text() == "step one\n"
    assert not rundir(client, parent).work.exists()
    parent_log = (await client.get(f"{WES}/runs/{parent}")).json()["run_log"]
    assert any(child in line for line in parent_log["system_logs"])

    mine = (await client.get(f"{WES}/runs/{child}/lineage")).json()
    assert mine["parent"]["run_id"] == parent
    assert (mine["recovery"], mine["notes"], mine["work_from"]) == (
        True,
        "fixed the exit code",
        parent,
    )
    assert mine["changes"] == [{"key": "exit", "before": 3, "after": 0, "engine_parameter": False}]
    theirs = (await client.get(f"{WES}/runs/{parent}/lineage")).json()
    assert theirs["parent"] is None
    assert [(c["run_id"], c["recovery"]) for c in theirs["children"]] == [(child, True)]


async def test_only_a_failed_or_cancelled_run_is_recovered_and_only_by_who_sees_it(
    client: httpx.AsyncClient,
) -> None:
    done = await submit(client, {"sleep": 0, "exit": 0, "tasks": 1})
    assert (await wait_for(client, done, ENDED))["state"] == "COMPLETE"
    r = await client.post(f"{WES}/runs/{done}/recover", json={})
    assert r.status_code == 409, r.text
    assert set(r.json()) == {"msg", "status_code"}

    parent = await failed_run(client)
    service = app_of(client).state.service
    with pytest.raises(RunNotFound):
        await lineage.recover(service, parent, lineage.RecoverOptions(), caller=STRANGER)
    bad = await client.post(f"{WES}/runs/{parent}/recover", json={"reuse_work_dir": "yes"})
    assert bad.status_code == 400
    assert "reuse_work_dir" in bad.json()["msg"]
    bad = await client.post(
        f"{WES}/runs/{parent}/recover", json={"override_params": {"exit": "three"}}
    )
    assert bad.status_code == 400, bad.text
    missing = await client.post(f"{WES}/runs/no-such-run/recover", json={})
    assert missing.status_code == 404


async def test_two_recoveries_of_one_parent_never_share_its_folder(
    client: httpx.AsyncClient,
) -> None:
    """Both at once: exactly one takes the working folder, the other is refused (409)."""
    parent = await failed_run(client)
    answers = await asyncio.gather(
        *(
            client.post(f"{WES}/runs/{parent}/recover", json={"override_params": {"exit": 0}})
            for _ in range(2)
        )
    )
    codes = sorted(a.status_code for a in answers)
    assert codes == [200, 409], [a.text for a in answers]
    winner = next(a for a in answers if a.status_code == 200).json()["run_id"]
    await wait_for(client, winner, ENDED)
    # one working folder, in the winner's run folder; the refused one left nothing behind
    holders = [
        p.parent.parent.name
        for p in rundir(client, parent).root.parent.glob("*/work/finished-step.txt")
    ]
    assert holders == [winner]
    refused = next(a for a in answers if a.status_code == 409).json()["msg"]
    assert winner in refused

    # later too; a plain resubmission with overrides is still possible
    again = await client.post(f"{WES}/runs/{parent}/recover", json={})
    assert again.status_code == 409
    plain = await client.post(
        f"{WES}/runs/{parent}/recover",
        json={"reuse_work_dir": False, "override_params": {"exit": 0}},
    )
    assert plain.status_code == 200, plain.text
    fresh = plain.json()["run_id"]
    assert (await wait_for(client, fresh, ENDED))["state"] == "COMPLETE"
    assert not (rundir(client, fresh).work / "finished-step.txt").exists()
    assert (await client.get(f"{WES}/runs/{fresh}/lineage")).json()["work_from"] is None
    children = (await client.get(f"{WES}/runs/{parent}/lineage")).json()["children"]
    assert [c["run_id"] for c in children] == [winner, fresh]


async def test_a_run_submitted_again_is_linked_to_its_parent(client: httpx.AsyncClient) -> None:
    parent = await submit(client, {"sleep": 0, "exit": 0, "tasks": 1})
    await wait_for(client, parent, ENDED)
    r = await client.post(f"{WES}/runs/{parent}/resubmit")
    assert r.status_code == 200, r.text
    child = r.json()["run_id"]
    seen = (await client.get(f"{WES}/runs/{child}/lineage")).json()
    assert (seen["parent"]["run_id"], seen["recovery"], seen["changes"]) == (parent, False, [])


async def test_delete_removes_the_files_and_keeps_a_tombstone(client: httpx.AsyncClient) -> None:
    busy = await submit(client, {"sleep": 30, "exit": 0, "tasks": 1})
    await wait_for(client, busy, {"RUNNING"})
    r = await client.delete(f"{WES}/runs/{busy}")
    assert r.status_code == 409, r.text
    await client.post(f"{WES}/runs/{busy}/cancel")

    run_id = await submit(client, {"sleep": 0, "exit": 0, "tasks": 1})
    await wait_for(client, run_id, ENDED)
    service = app_of(client).state.service
    with pytest.raises(RunNotFound):
        await service.get(run_id, caller=STRANGER)
    with pytest.raises(RunNotFound):
        await removal.delete(service, run_id, caller=STRANGER)
    assert rundir(client, run_id).root.exists()  # the stranger removed nothing

    r = await client.delete(f"{WES}/runs/{run_id}")
    assert r.status_code == 200, r.text
    assert r.json()["deleted_at"]
    assert not rundir(client, run_id).root.exists()
    assert (await client.delete(f"{WES}/runs/{run_id}")).status_code == 200  # idempotent
    # the row stays (a tombstone), hidden from lists unless asked for
    got = await client.get(f"{WES}/runs/{run_id}")
    assert got.status_code == 200
    assert got.json()["state"] == "COMPLETE"
    listed = [x["run_id"] for x in (await client.get(f"{WES}/runs")).json()["runs"]]
    assert run_id not in listed
    everything = (await client.get(f"{WES}/runs", params={"include_deleted": "true"})).json()
    assert run_id in [x["run_id"] for x in everything["runs"]]
    assert (await client.get(f"{WES}/runs/{run_id}/files/work/result.txt")).status_code == 404
    recover = await client.post(f"{WES}/runs/{run_id}/recover", json={})
    assert recover.status_code == 409


async def test_retention_removes_work_folders_then_whole_runs_on_an_injected_clock(
    fakes: None, tmp_path: Path
) -> None:
    settings = fake_settings(tmp_path, retention_work_days=30, retention_files_days=90)
    app = make_app(settings, await fake_catalog())
    async with app_client(app) as client:
        old = await submit(client, {"sleep": 0, "exit": 0, "tasks": 1})
        new = await submit(client, {"sleep": 0, "exit": 0, "tasks": 1})
        await wait_for(client, old, ENDED)
        await wait_for(client, new, ENDED)
        service = app.state.service
        ended = (await service.get(old, caller=CLEANUP)).end_time
        now = [ended + timedelta(days=31)]
        janitor = Janitor(service.db, service.storage, settings, clock=lambda: now[0])
        # the first ended five days before the second
        async with service.db.begin() as conn:
            await conn.execute(
                update(runs).where(runs.c.id == old).values(end_time=ended - timedelta(days=5))
            )
        now[0] = ended + timedelta(days=27)
        assert await janitor.sweep() == [(old, "work")]
        kept = RunDir.for_run(settings.data_dir, old)
        assert not kept.work.exists()
        assert kept.stdout.exists()
        assert kept.params_file.exists()
        assert RunDir.for_run(settings.data_dir, new).work.exists()
        assert await janitor.sweep() == []  # recorded once
        note = (await service.get(old, caller=CLEANUP)).system_logs[-1]
        assert note.startswith("retention removed its work folder")

        now[0] = ended + timedelta(days=95)
        assert await janitor.sweep() == [(old, "files"), (new, "files")]
        assert not kept.root.exists()
        after = await service.get(old, caller=CLEANUP)
        assert after.files_removed_at is not None
        assert after.deleted_at is None


async def test_concurrent_recoveries_take_the_folder_once_on_every_database(
    fakes: None, tmp_path: Path, database_url: str
) -> None:
    """The hand-over is a unique key the database enforces: whichever commits first has the
    folder, the other is a Conflict and leaves the folder where the winner put it."""
    settings = fake_settings(tmp_path, database_url=database_url)
    app = make_app(settings, await fake_catalog())
    async with app_client(app) as client:
        parent = await failed_run(client)
        service = app.state.service
        options = lineage.RecoverOptions(override_params={"exit": 0})
        owner = (await service.get(parent, caller=CLEANUP)).owner_id
        caller = Caller(user_id=owner, name="local")
        results = await asyncio.gather(
            *(lineage.recover(service, parent, options, caller=caller) for _ in range(3)),
            return_exceptions=True,
        )
        won = [r for r in results if not isinstance(r, BaseException)]
        lost = [r for r in results if isinstance(r, BaseException)]
        assert len(won) == 1, results
        assert all(isinstance(e, Conflict) for e in lost), lost
        winner = won[0].id
        await wait_for(client, winner, ENDED)
        runs_folder = rundir(client, parent).root.parent
        holders = [p.parent.parent.name for p in runs_folder.glob("*/work/finished-step.txt")]
        assert holders == [winner]


def test_a_working_folder_taken_by_a_submission_a_crash_undid_goes_back(tmp_path: Path) -> None:
    """The recovery's process died after moving the parent's folder in, before its commit:
    the next start undoes the submission (no row) and gives the folder back."""
    parent = RunDir.for_run(tmp_path, "parent")
    parent.create()
    (parent.work / "finished-step.txt").write_text("step one\n")
    staging = Staging(tmp_path, "child")
    staging.begin()
    assert staging.take_work(parent.work)
    staging.place()
    staging._unlock()  # the process is gone: its lock with it

    (found,) = abandoned(tmp_path)
    found.settle(stored=False)
    assert (parent.work / "finished-step.txt").read_text() == "step one\n"
    assert not RunDir.for_run(tmp_path, "child").root.exists()
    assert not (tmp_path / "staging" / "child").exists()


async def test_the_worker_sweeps_with_its_janitor(fakes: None, tmp_path: Path) -> None:
    """Wired end to end: the embedded worker's janitor removes an ended run's work folder
    once it is older than the setting (here a fraction of a second), keeping its logs."""
    settings = fake_settings(tmp_path, retention_work_days=1e-6, retention_interval=0.05)
    app = make_app(settings, await fake_catalog())
    async with app_client(app) as client:
        run_id = await submit(client, {"sleep": 0, "exit": 0, "tasks": 1})
        await wait_for(client, run_id, ENDED)
        for _ in range(400):
            body = (await client.get(f"{WES}/runs/{run_id}")).json()
            if any("retention removed" in line for line in body["run_log"]["system_logs"]):
                break
            await asyncio.sleep(0.05)
        else:
            raise AssertionError("the janitor did not remove the work folder")
        folder = rundir(client, run_id)
        assert not folder.work.exists()
        assert folder.stdout.exists()


def test_links_in_place_of_a_working_folder_are_never_followed(tmp_path: Path) -> None:
    """A workflow may leave ``work`` as a link to another folder: a recovery does not take
    it over, and removing the work folder removes the link, not what it points at."""
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "precious.txt").write_text("keep\n")
    parent = RunDir.for_run(tmp_path, "parent")
    parent.create()
    parent.work.rmdir()
    parent.work.symlink_to(elsewhere)
    staging = Staging(tmp_path, "child")
    staging.begin()
    assert not staging.take_work(parent.work)
    staging.discard()

    assert remove_tree(parent.work) == Removed()
    assert not parent.work.is_symlink()
    assert (elsewhere / "precious.txt").read_text() == "keep\n"
