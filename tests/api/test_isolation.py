"""The isolation matrix, on every database: two users and an admin, real Snakemake and CWL
runs, and every API operation of each against each other's runs. Someone else's run is a 404
exactly like a run that does not exist; the admin sees and acts on all; lists and
service-info count only what the caller may see."""

from __future__ import annotations

import asyncio
import base64
import time
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest

from spindle.config import Settings
from spindle.engines.registry import Catalog
from tests.api.conftest import WES, app_client, example_form, make_app

pytestmark = pytest.mark.engine

FINAL = ["COMPLETE", "EXECUTOR_ERROR", "SYSTEM_ERROR", "CANCELED"]
PASSWORDS = {"alice": "alice's secret", "bob": "bob's secret", "root": "root's secret"}


def as_user(name: str) -> dict[str, str]:
    raw = f"{name}:{PASSWORDS[name]}".encode()
    return {"Authorization": "Basic " + base64.b64encode(raw).decode()}


async def submit(api: httpx.AsyncClient, user: str, language: str, name: str) -> str:
    data, files = example_form(language, name)
    r = await api.post(f"{WES}/runs", data=data, files=files, headers=as_user(user))
    assert r.status_code == 200, r.text
    run_id: str = r.json()["run_id"]
    return run_id


async def wait(api: httpx.AsyncClient, user: str, run_id: str, states: list[str]) -> str:
    deadline = time.monotonic() + 180
    state = ""
    while time.monotonic() < deadline:
        r = await api.get(f"{WES}/runs/{run_id}/status", headers=as_user(user))
        state = r.json()["state"]
        if state in states:
            return state
        await asyncio.sleep(0.2)
    raise AssertionError(f"run {run_id} is {state}, not {states}")


async def first_task_and_file(api: httpx.AsyncClient, owner: str, run_id: str) -> tuple[str, str]:
    tasks = (await api.get(f"{WES}/runs/{run_id}/tasks", headers=as_user(owner))).json()
    task_id: str = tasks["task_logs"][0]["id"]
    log = (await api.get(f"{WES}/runs/{run_id}", headers=as_user(owner))).json()
    locations: list[str] = []

    def walk(value: Any) -> None:
        if isinstance(value, dict):
            if isinstance(value.get("location"), str):
                locations.append(value["location"])
            for v in value.values():
                walk(v)
        elif isinstance(value, list):
            for v in value:
                walk(v)

    walk(log["outputs"])
    path = urlsplit(locations[0]).path.split("/files/", 1)[1]
    return task_id, path


def reads(run_id: str, task_id: str, path: str) -> dict[str, str]:
    """Every GET a client can make about one run."""
    base = f"{WES}/runs/{run_id}"
    return {
        "get": base,
        "status": f"{base}/status",
        "tasks": f"{base}/tasks",
        "task": f"{base}/tasks/{task_id}",
        "stdout": f"{base}/logs/stdout",
        "stderr": f"{base}/logs/stderr",
        "task log": f"{base}/tasks/{task_id}/logs/stdout",
        "file": f"{base}/files/{path}",
        "progress": f"{base}/progress",
        "files": f"{base}/files",
        "signed link": f"{base}/links/{path}",
        "log archive": f"{base}/logs/archive",
        "ro-crate": f"{base}/ro-crate",
        "lineage": f"{base}/lineage",
    }


async def test_isolation_matrix(
    catalog: Catalog,
    settings: Settings,
    database_url: str,
    snakemake_exe: str,
    cwltool_exe: str,
) -> None:
    on_db = Settings(**{**settings.model_dump(), "database_url": database_url, "auth": "basic"})
    app = make_app(on_db, catalog, migrate=False)
    async with app_client(app) as api:
        for name, password in PASSWORDS.items():
            await app.state.accounts.add_user(name, password=password, admin=name == "root")

        done = {
            "alice": await submit(api, "alice", "snakemake", "wordcount"),
            "bob": await submit(api, "bob", "cwl", "wordcount"),
        }
        for owner, run_id in done.items():
            assert await wait(api, owner, run_id, FINAL) == "COMPLETE"
        live = {
            "alice": await submit(api, "alice", "cwl", "sleep"),
            "bob": await submit(api, "bob", "cwl", "sleep"),
        }
        owner_of = {run_id: owner for owner, run_id in [*done.items(), *live.items()]}

        # --- reads of finished runs --------------------------------------------------------
        for owner, run_id in done.items():
            task_id, path = await first_task_and_file(api, owner, run_id)
            for viewer in PASSWORDS:
                allowed = viewer in (owner, "root")
                for what, url in reads(run_id, task_id, path).items():
                    r = await api.get(url, headers=as_user(viewer))
                    expected = 200 if allowed else 404
                    assert r.status_code == expected, (viewer, owner, what, r.text)
                    if not allowed:
                        # the same answer as for a run that does not exist
                        assert r.json() == {
                            "msg": f"run {run_id!r} was not found",
                            "status_code": 404,
                        }, (viewer, what)
                # a finished run's cancel changes nothing: 200 for who may, 404 for others
                r = await api.post(f"{WES}/runs/{run_id}/cancel", headers=as_user(viewer))
                assert r.status_code == (200 if allowed else 404), (viewer, owner, r.text)
                if not allowed:  # (the owner's own are tested in tests/runs/test_lineage.py)
                    for method, action in (
                        ("POST", "recover"),
                        ("POST", "resubmit"),
                        ("DELETE", ""),
                    ):
                        url = f"{WES}/runs/{run_id}" + (f"/{action}" if action else "")
                        r = await api.request(method, url, headers=as_user(viewer))
                        assert r.status_code == 404, (viewer, owner, method, action, r.text)

        # --- lists and counts --------------------------------------------------------------
        for viewer in PASSWORDS:
            mine = {r for r, o in owner_of.items() if viewer in (o, "root")}
            listed = (
                await api.get(f"{WES}/runs", params={"page_size": 1}, headers=as_user(viewer))
            ).json()
            seen = {r["run_id"] for r in listed["runs"]}
            token = listed["next_page_token"]
            while token:
                page = (
                    await api.get(
                        f"{WES}/runs", params={"page_token": token}, headers=as_user(viewer)
                    )
                ).json()
                seen |= {r["run_id"] for r in page["runs"]}
                token = page["next_page_token"]
            assert seen == mine, viewer
            info = (await api.get(f"{WES}/service-info", headers=as_user(viewer))).json()
            counts = info["system_state_counts"]
            assert sum(counts.values()) == len(mine), (viewer, counts)
            assert counts["COMPLETE"] == len([r for r in mine if r in done.values()])
        anonymous = (await api.get(f"{WES}/service-info")).json()["system_state_counts"]
        assert sum(anonymous.values()) == 0

        # --- cancel of running runs --------------------------------------------------------
        for owner, run_id in live.items():
            await wait(api, owner, run_id, ["RUNNING"])
        r = await api.post(f"{WES}/runs/{live['alice']}/cancel", headers=as_user("bob"))
        assert r.status_code == 404
        r = await api.post(f"{WES}/runs/{live['bob']}/cancel", headers=as_user("alice"))
        assert r.status_code == 404
        for owner, run_id in live.items():
            state = await wait(api, owner, run_id, ["RUNNING", *FINAL])
            assert state == "RUNNING", f"{owner}'s run was stopped by someone else"
        r = await api.post(f"{WES}/runs/{live['alice']}/cancel", headers=as_user("alice"))
        assert r.status_code == 200
        r = await api.post(f"{WES}/runs/{live['bob']}/cancel", headers=as_user("root"))
        assert r.status_code == 200
        for owner, run_id in live.items():
            assert await wait(api, owner, run_id, FINAL) == "CANCELED"

        # --- each user's stats count their own runs -----------------------------------------
        for viewer in ("alice", "bob"):
            me = (await api.get(f"{WES}/me", headers=as_user(viewer))).json()
            assert me["stats"] == {
                "submitted": 2,
                "succeeded": 1,
                "failed": 0,
                "canceled": 1,
                "active": 0,
            }
        root = (await api.get(f"{WES}/me", headers=as_user("root"))).json()
        assert (root["admin"], root["stats"]["submitted"]) == (True, 0)
