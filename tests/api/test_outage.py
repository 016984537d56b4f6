"""A database outage answers 503 with ``Retry-After`` on every path (the web UI: its error
page with 503), and is logged once when it starts and once when it ends rather than with a
traceback per request. The shared database servers are never stopped: the app reaches its
database through a TCP relay the test cuts and restores, or is built with a URL nothing
answers."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy.engine import make_url

from spindle.config import Settings
from spindle.engines.registry import Catalog
from tests.api.conftest import WES, example_form, make_app, open_client, runs_on_disk

PATHS = ["/service-info", "/ready", "/runs", "/runs/0f6a3c1e-0000-4000-8000-000000000000"]


class Relay:
    """A TCP relay to a database server that can be cut (listener closed, every connection
    aborted) and restored on the same port: an outage without touching the server."""

    def __init__(self, host: str, port: int) -> None:
        self.target = (host, port)
        self.port = 0
        self.server: asyncio.Server | None = None
        self.writers: set[asyncio.StreamWriter] = set()

    async def start(self) -> None:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", self.port)
        self.port = self.server.sockets[0].getsockname()[1]

    async def cut(self) -> None:
        assert self.server is not None
        self.server.close()
        for writer in list(self.writers):
            writer.transport.abort()
        self.server = None
        await asyncio.sleep(0.05)  # (the pipes see their ends)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.target)
        except OSError:
            writer.transport.abort()
            return
        pair = {writer, up_writer}
        self.writers |= pair

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            with contextlib.suppress(OSError):
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            dst.transport.abort()  # one side hung up: so does the other

        try:
            await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))
        finally:
            self.writers -= pair


@contextlib.asynccontextmanager
async def relayed(database_url: str) -> AsyncIterator[tuple[Relay, str]]:
    url = make_url(database_url)
    relay = Relay(url.host or "127.0.0.1", url.port or 5432)
    await relay.start()
    try:
        yield (
            relay,
            url.set(host="127.0.0.1", port=relay.port).render_as_string(hide_password=False),
        )
    finally:
        if relay.server is not None:
            await relay.cut()


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


def _unreachable_url(db_kind: str, database_url: str, tmp_path: Path) -> str:
    if db_kind == "sqlite":
        folder = tmp_path / "a-folder-not-a-database"
        folder.mkdir()
        return f"sqlite+aiosqlite:///{folder}"
    url = make_url(database_url).set(host="127.0.0.1", port=_closed_port())
    return url.render_as_string(hide_password=False)


def _tracebacks(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.exc_info and r.name.startswith(("spindle", "sqlalchemy", "uvicorn"))
    ]


def _outage_lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "spindle.db.outage"]


async def _assert_503(client: httpx.AsyncClient, settings: Settings) -> None:
    for path in PATHS:
        r = await client.get(f"{WES}{path}")
        assert r.status_code == 503, (path, r.text)
        assert r.json() == {"msg": r.json()["msg"], "status_code": 503}
        assert "the database is unreachable" in r.json()["msg"]
        assert int(r.headers["Retry-After"]) > 0
    data, files = example_form("cwl", "wordcount")
    r = await client.post(f"{WES}/runs", data=data, files=files)
    assert r.status_code == 503, r.text
    assert runs_on_disk(settings) == []
    page = await client.get("/runs")
    assert page.status_code == 503
    assert page.headers["content-type"].startswith("text/html")
    assert "the database is unreachable" in page.text


async def test_unreachable_database_answers_503_and_logs_one_line(
    catalog: Catalog,
    settings: Settings,
    db_kind: str,
    database_url: str,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    url = _unreachable_url(db_kind, database_url, tmp_path)
    app = make_app(
        settings.model_copy(update={"database_url": url}), catalog, migrate=False, worker=False
    )
    caplog.set_level(logging.INFO)
    async for client in open_client_no_cleanup(app):
        await _assert_503(client, settings)
    assert not _tracebacks(caplog), "no traceback for an outage"
    lines = _outage_lines(caplog)
    assert len(lines) == 1, lines
    assert "the database is unreachable" in lines[0]


async def test_outage_and_recovery_are_logged_once_each(
    catalog: Catalog,
    settings: Settings,
    shared_database_url: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """On a database server (SQLite has none to lose; the unreachable-URL test covers it)."""
    async with relayed(shared_database_url) as (relay, url):
        on_relay = settings.model_copy(update={"database_url": url})
        app = make_app(on_relay, catalog, migrate=False, worker=False)
        caplog.set_level(logging.INFO)
        async for client in open_client(app):
            assert (await client.get(f"{WES}/runs")).status_code == 200
            await relay.cut()
            await _assert_503(client, settings)
            await relay.start()
            r = await client.get(f"{WES}/runs")
            assert r.status_code == 200, r.text
            lines = _outage_lines(caplog)
            assert len(lines) == 2, lines
            assert "the database is unreachable" in lines[0]
            assert "answers again" in lines[1]
    assert not _tracebacks(caplog), "no traceback for an outage"


async def open_client_no_cleanup(app: object) -> AsyncIterator[httpx.AsyncClient]:
    """A client of ``app`` with its lifespan running, without the end-of-test cancel of
    unfinished runs (which needs the database)."""
    from fastapi import FastAPI

    assert isinstance(app, FastAPI)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://spindle.test") as c:
            yield c
