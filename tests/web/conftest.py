"""Web UI tests talk HTTP to the real application in process (httpx's ASGI transport, with a
cookie jar like a browser's) and read the pages with BeautifulSoup. Runs in given states are
written through the store, as the worker writes them."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from bs4 import BeautifulSoup
from fastapi import FastAPI
from sqlalchemy.ext.asyncio import AsyncEngine

from spindle.config import Settings
from spindle.domain import Caller, Run, RunRequest, State
from spindle.engines.registry import Catalog
from spindle.runs import store
from spindle.runs.service import RunService
from tests.api.conftest import make_app, open_client
from tests.runs import local_user_id

#: For checks made through the run service beside the pages: sees every run.
ADMIN = Caller(user_id=0, name="admin", admin=True)


@dataclass
class Site:
    client: httpx.AsyncClient
    app: FastAPI

    @property
    def service(self) -> RunService:
        service: RunService = self.app.state.service
        return service

    async def page(self, path: str, status: int = 200, **kw: Any) -> BeautifulSoup:
        r = await self.client.get(path, **kw)
        assert r.status_code == status, r.text[:2000]
        assert r.headers["content-type"].startswith("text/html")
        return BeautifulSoup(r.text, "html.parser")


@pytest.fixture
async def site(settings: Settings, catalog: Catalog) -> AsyncIterator[Site]:
    """The app without a worker, on SQLite: submitted runs stay QUEUED, and runs the test
    writes in other states stay as written (no engine runs for them)."""
    app = make_app(settings, catalog, worker=False)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://spindle.test") as c:
            yield Site(c, app)


@pytest.fixture
async def site_with_worker(settings: Settings, catalog: Catalog) -> AsyncIterator[Site]:
    """The app with its embedded worker running real engines; runs still going at the end
    are cancelled and awaited."""
    app = make_app(settings, catalog)
    async for client in open_client(app):
        yield Site(client, app)


async def add_run(
    db: AsyncEngine,
    *,
    url: str = "Snakefile",
    wf_type: str = "SMK",
    tags: dict[str, str] | None = None,
    params: dict[str, Any] | None = None,
    path: tuple[State, ...] = (),
    owner_id: int | None = None,
    **values: Any,
) -> Run:
    """A run written as the service and the worker write one, moved along ``path``, owned by
    ``owner_id`` (default: the local user, who is every request in ``auth = "none"``)."""
    request = RunRequest(
        workflow_type=wf_type,
        workflow_type_version="9" if wf_type == "SMK" else "v1.2",
        workflow_url=url,
        workflow_params=params or {},
        tags=tags or {},
    )
    run_id = str(uuid.uuid4())
    async with db.begin() as conn:
        await store.insert_run(
            conn,
            run_id=run_id,
            request=request,
            engine="snakemake" if wf_type == "SMK" else "cwltool",
            compute_env="local",
            owner_id=await local_user_id(conn) if owner_id is None else owner_id,
        )
        current = State.QUEUED
        for state in path:
            assert await store.transition(conn, run_id, expected=[current], new=state)
            current = state
        if values:
            await store.update_run(conn, run_id, **values)
        run = await store.get_run(conn, run_id)
    assert run is not None
    return run


def csrf_token(page: BeautifulSoup) -> str:
    field = page.select_one("input[name=csrf_token]")
    assert field is not None, "the page has no form with a CSRF token"
    value = field.get("value")
    assert isinstance(value, str)
    assert value
    return value


def text(page: BeautifulSoup, selector: str) -> str:
    found = page.select_one(selector)
    assert found is not None, selector
    return " ".join(found.get_text(" ").split())


# --- signed in -------------------------------------------------------------------------------

ORIGIN = "http://spindle.test"
PASSWORDS = {"alice": "alice's secret", "bob": "bob's secret", "root": "root's secret"}


def browser(app: FastAPI) -> httpx.AsyncClient:
    """Another client of the same app with a cookie jar of its own, sending the Origin a
    browser sends with a form's POST."""
    return httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url=ORIGIN, headers={"Origin": ORIGIN}
    )


@contextlib.asynccontextmanager
async def basic_site(settings: Settings, catalog: Catalog, **overrides: Any) -> AsyncIterator[Site]:
    """The app in ``auth = "basic"`` without a worker, with the users alice, bob and root
    (an admin); the client has not signed in."""
    values = {**settings.model_dump(), "auth": "basic", **overrides}
    app = make_app(Settings(**values), catalog, worker=False)
    async with app.router.lifespan_context(app):
        for name, password in PASSWORDS.items():
            await app.state.accounts.add_user(name, password=password, admin=name == "root")
        async with browser(app) as client:
            yield Site(client, app)


async def sign_in(
    client: httpx.AsyncClient, name: str, password: str | None = None, next_path: str = ""
) -> httpx.Response:
    """The sign-in form filled in and sent, as a browser does (the page first, for its CSRF
    token and cookie)."""
    form = BeautifulSoup((await client.get("/login")).text, "html.parser")
    return await client.post(
        "/login",
        data={
            "csrf_token": csrf_token(form),
            "name": name,
            "password": PASSWORDS[name] if password is None else password,
            "next": next_path,
        },
    )
