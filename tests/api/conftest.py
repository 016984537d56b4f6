"""API tests talk HTTP to the real application (in process, through httpx's ASGI transport)
with its embedded worker running real engines."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator, Iterable
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from spindle.app import create_app
from spindle.config import Settings
from spindle.domain import Caller
from spindle.engines.registry import Catalog
from spindle.runs.service import RunService
from tests.support import EXAMPLES

WES = "/ga4gh/wes/v1"

EXAMPLE_TYPES = {
    "snakemake": ("SMK", "9", "Snakefile", "params.json"),
    "cwl": ("CWL", "v1.2", "workflow.cwl", "inputs.json"),
    "wdl": ("WDL", "1.1", "workflow.wdl", "inputs.json"),
}


FINAL_STATES = {"COMPLETE", "EXECUTOR_ERROR", "SYSTEM_ERROR", "CANCELED", "PREEMPTED"}


#: The caller tests clean up as: an admin, so every user's runs are in reach.
CLEANUP = Caller(user_id=0, name="test-cleanup", admin=True)


async def open_client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    """``app_client`` as an async generator (for ``async for client in open_client(app)``)."""
    async with app_client(app) as client:
        yield client


@contextlib.asynccontextmanager
async def app_client(
    app: FastAPI, headers: dict[str, str] | None = None
) -> AsyncIterator[httpx.AsyncClient]:
    """A client of ``app`` with its lifespan running (sending ``headers`` with every
    request). At the end, runs a test left going are cancelled and awaited, through the run
    service as an admin, so no engine outlives its test whoever submitted it."""
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(
            transport=transport, base_url="http://spindle.test", headers=headers
        ) as c:
            try:
                yield c
            finally:
                await _cancel_unfinished(app.state.service)


async def _cancel_unfinished(service: RunService) -> None:
    page = await service.list(page_size=1000, page_token=None, caller=CLEANUP)
    unfinished = [r.id for r in page.items if not r.state.terminal]
    for run_id in unfinished:
        await service.cancel(run_id, caller=CLEANUP)
    deadline = time.monotonic() + 60
    while unfinished and time.monotonic() < deadline:
        await asyncio.sleep(0.1)
        unfinished = [
            r for r in unfinished if not (await service.state(r, caller=CLEANUP)).terminal
        ]
    assert not unfinished, f"runs {unfinished} did not end within 60 s of their cancel"


def make_app(settings: Settings, catalog: Catalog, **kw: Any) -> FastAPI:
    return create_app(settings, catalog=catalog, **kw)


@pytest.fixture
async def api(settings: Settings, catalog: Catalog) -> AsyncIterator[httpx.AsyncClient]:
    """The app with its embedded worker, on SQLite."""
    async for client in open_client(make_app(settings, catalog)):
        yield client


@pytest.fixture
async def api_no_worker(settings: Settings, catalog: Catalog) -> AsyncIterator[httpx.AsyncClient]:
    """The app without a worker: submitted runs stay QUEUED."""
    async for client in open_client(make_app(settings, catalog, worker=False)):
        yield client


def example_form(
    language: str,
    name: str,
    *,
    params: dict[str, Any] | None = None,
    tags: dict[str, str] | None = None,
    engine_parameters: dict[str, str] | None = None,
) -> tuple[dict[str, str], list[tuple[str, tuple[str, bytes]]]]:
    """The multipart form that submits ``examples/<language>/<name>``, attachments with their
    relative paths."""
    wf_type, version, workflow, params_file = EXAMPLE_TYPES[language]
    folder = EXAMPLES / language / name
    if params is None:
        pfile = folder / params_file
        params = json.loads(pfile.read_text()) if pfile.exists() else {}
    data = {
        "workflow_type": wf_type,
        "workflow_type_version": version,
        "workflow_url": workflow,
        "workflow_params": json.dumps(params),
    }
    if tags is not None:
        data["tags"] = json.dumps(tags)
    if engine_parameters is not None:
        data["workflow_engine_parameters"] = json.dumps(engine_parameters)
    files = [
        ("workflow_attachment", (p.relative_to(folder).as_posix(), p.read_bytes()))
        for p in sorted(folder.rglob("*"))
        if p.is_file() and p.name != params_file and not p.name.endswith(".md")
    ]
    return data, files


async def submit_example(client: httpx.AsyncClient, language: str, name: str, **kw: Any) -> str:
    data, files = example_form(language, name, **kw)
    r = await client.post(f"{WES}/runs", data=data, files=files)
    assert r.status_code == 200, r.text
    run_id: str = r.json()["run_id"]
    return run_id


async def wait_state(
    client: httpx.AsyncClient, run_id: str, states: Iterable[str], seconds: float = 120
) -> str:
    wanted = set(states)
    deadline = time.monotonic() + seconds
    state = ""
    while time.monotonic() < deadline:
        r = await client.get(f"{WES}/runs/{run_id}/status")
        state = str(r.json()["state"])
        if state in wanted:
            return state
        await asyncio.sleep(0.1)
    raise AssertionError(f"run {run_id} is {state}, not {wanted}, after {seconds}s")


def runs_on_disk(settings: Settings) -> list[Path]:
    """Run folders and submissions being staged (``<data_dir>/staging``)."""
    root = settings.data_dir / "runs"
    return sorted(root.glob("*")) + sorted((settings.data_dir / "staging").glob("*"))
