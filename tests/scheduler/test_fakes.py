"""The worker with the fake engine and the fake backend (spindle.testing), registered through
the plugin path: its paths in milliseconds, no real engine involved."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import update

from spindle.config import Settings
from spindle.db.engine import create_engine
from spindle.db.tables import runs
from spindle.db.types import utcnow
from spindle.engines.registry import Catalog
from spindle.testing import FakeBackend, FakeEngine, plugins
from tests.api.conftest import CLEANUP, WES, app_client, make_app


@pytest.fixture
def fakes() -> Iterator[None]:
    with plugins():
        yield


def fake_settings(tmp_path: Path, **kw: Any) -> Settings:
    return Settings(
        data_dir=tmp_path / "data",
        lease_seconds=5,
        poll_interval=0.2,
        monitor_interval=0.02,
        cancel_grace_seconds=3,
        max_concurrent_runs=4,
        compute_envs={"managed": {"type": "fake", "description": "a managed service"}},
        allowed_hosts=["spindle.test"],  # the in-process client's base URL
        **kw,
    )


async def fake_catalog(*, engine: bool = True) -> Catalog:
    catalog = Catalog()
    if engine:
        fake = FakeEngine()
        catalog.add(fake, await fake.detect())
    return catalog


def form(params: dict[str, Any], env: str = "local") -> dict[str, Any]:
    return {
        "data": {
            "workflow_type": "FAKE",
            "workflow_type_version": "1",
            "workflow_url": "workflow.fake",
            "workflow_params": json.dumps(params),
            "workflow_engine_parameters": json.dumps({"compute_env": env}),
        },
        "files": [("workflow_attachment", ("workflow.fake", b"a fake workflow\n"))],
    }


async def submit(client: httpx.AsyncClient, params: dict[str, Any], env: str = "local") -> str:
    r = await client.post(f"{WES}/runs", **form(params, env))
    assert r.status_code == 200, r.text
    run_id: str = r.json()["run_id"]
    return run_id


async def wait_for(
    client: httpx.AsyncClient, run_id: str, states: set[str], seconds: float = 20
) -> dict[str, Any]:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        r = await client.get(f"{WES}/runs/{run_id}")
        body: dict[str, Any] = r.json()
        if body["state"] in states:
            return body
        await asyncio.sleep(0.02)
    raise AssertionError(f"{run_id} did not reach {states} within {seconds} s")


ENDED = {"COMPLETE", "EXECUTOR_ERROR", "SYSTEM_ERROR", "CANCELED"}


@pytest.fixture
async def client(fakes: None, tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    app = make_app(fake_settings(tmp_path), await fake_catalog())
    async with app_client(app) as c:
        yield c


async def test_a_fake_run_on_the_local_backend_completes_with_tasks_and_outputs(
    client: httpx.AsyncClient,
) -> None:
    run_id = await submit(client, {"sleep": 0.1, "exit": 0, "tasks": 3})
    body = await wait_for(client, run_id, ENDED)
    assert body["state"] == "COMPLETE"
    assert body["run_log"]["exit_code"] == 0
    assert body["outputs"]["result"]["class"] == "File"
    tasks = (await client.get(f"{WES}/runs/{run_id}/tasks")).json()["task_logs"]
    assert [t["name"] for t in tasks] == ["task-1", "task-2", "task-3"]


async def test_a_failing_fake_run_is_executor_error_with_its_exit_code(
    client: httpx.AsyncClient,
) -> None:
    run_id = await submit(client, {"sleep": 0, "exit": 3, "tasks": 1})
    body = await wait_for(client, run_id, ENDED)
    assert (body["state"], body["run_log"]["exit_code"]) == ("EXECUTOR_ERROR", 3)


async def test_a_managed_backend_runs_its_workflow_type_without_a_local_engine(
    fakes: None, tmp_path: Path
) -> None:
    """The fake backend runs FAKE itself: no engine is installed, the job has no launch,
    tasks and outputs come from the backend's report."""
    app = make_app(fake_settings(tmp_path), await fake_catalog(engine=False))
    async with app_client(app) as client:
        refused = await client.post(f"{WES}/runs", **form({"sleep": 0}, "local"))
        assert refused.status_code == 400, refused.text
        info = (await client.get(f"{WES}/service-info")).json()
        assert info["workflow_type_versions"]["FAKE"]["workflow_type_version"] == ["1"]
        run_id = await submit(client, {"sleep": 0.05, "exit": 0, "tasks": 2}, "managed")
        body = await wait_for(client, run_id, ENDED)
        assert body["state"] == "COMPLETE"
        assert body["outputs"] == {"tasks_done": 2}
        tasks = (await client.get(f"{WES}/runs/{run_id}/tasks")).json()["task_logs"]
        assert [t["name"] for t in tasks] == ["task-1", "task-2"]
        run = await app.state.service.get(run_id, caller=CLEANUP)
        assert (run.engine, run.compute_env, run.cmd) == ("fake", "managed", [])


async def test_a_submit_that_fails_is_a_system_error_with_the_reason(
    client: httpx.AsyncClient,
) -> None:
    run_id = await submit(client, {"submit_error": "the service said no"}, "managed")
    body = await wait_for(client, run_id, ENDED)
    assert body["state"] == "SYSTEM_ERROR"
    assert "the service said no" in " ".join(body["run_log"]["system_logs"])


async def test_a_cancel_stops_a_managed_run(client: httpx.AsyncClient) -> None:
    run_id = await submit(client, {"sleep": 300}, "managed")
    await wait_for(client, run_id, {"RUNNING"})
    r = await client.post(f"{WES}/runs/{run_id}/cancel")
    assert r.status_code == 200, r.text
    body = await wait_for(client, run_id, ENDED)
    assert body["state"] == "CANCELED"


async def test_a_dead_workers_run_is_adopted_and_finished_by_the_next(
    fakes: None, tmp_path: Path
) -> None:
    """A worker dies while its run goes (its lease runs out); the next worker adopts the run
    through its saved handle (a new backend object) and sees it to its end."""
    settings = fake_settings(tmp_path)
    first = make_app(settings, await fake_catalog())
    async with first.router.lifespan_context(first):  # stops without cancelling anything
        transport = httpx.ASGITransport(app=first)
        async with httpx.AsyncClient(transport=transport, base_url="http://spindle.test") as client:
            # long enough to be seen RUNNING however slow the machine, and still going when
            # this worker is gone
            run_id = await submit(client, {"sleep": 4.0, "tasks": 2}, "managed")
            await wait_for(client, run_id, {"RUNNING"})
    db = create_engine(settings.effective_database_url)
    try:
        async with db.begin() as conn:  # as a worker that died leaves it
            await conn.execute(
                update(runs)
                .where(runs.c.id == run_id)
                .values(worker_id="dead", lease_expires_at=utcnow() - timedelta(seconds=1))
            )
    finally:
        await db.dispose()
    second = make_app(settings, await fake_catalog())
    async with app_client(second) as client:
        body = await wait_for(client, run_id, ENDED, seconds=60)
        assert body["state"] == "COMPLETE"
        assert body["outputs"] == {"tasks_done": 2}
    assert isinstance(second.state.worker.backends["managed"], FakeBackend)
    assert second.state.worker.backends["managed"].submitted == []  # attached, not resubmitted


async def test_a_groups_max_runs_makes_its_runs_take_turns(client: httpx.AsyncClient) -> None:
    """With max_runs 1 the second run of a group starts only once the first has ended; a
    run outside the group is not held back by it."""
    r = await client.post(f"{WES}/run-groups", json={"name": "batch", "max_runs": 1})
    assert r.status_code == 200, r.text
    group = r.json()["id"]
    ids = []
    for _ in range(2):
        data = form({"sleep": 3.0, "tasks": 1}, "managed")
        data["data"]["run_group_id"] = group
        r = await client.post(f"{WES}/runs", **data)
        assert r.status_code == 200, r.text
        ids.append(r.json()["run_id"])
    outside = await submit(client, {"sleep": 0, "tasks": 1}, "managed")
    # the run outside the group ends while the group's first run still goes and holds its
    # second back (states, not the RunLog's whole-second times, which can tie)
    assert (await wait_for(client, outside, ENDED))["state"] == "COMPLETE"
    states = [(await client.get(f"{WES}/runs/{i}/status")).json()["state"] for i in ids]
    assert states[0] not in ENDED
    assert states[1] == "QUEUED"
    bodies = [await wait_for(client, run_id, ENDED) for run_id in ids]
    assert [b["state"] for b in bodies] == ["COMPLETE"] * 2
    first, second = (b["run_log"] for b in bodies)
    assert second["start_time"] >= first["end_time"]
