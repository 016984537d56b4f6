"""Fixtures of the operations tests: the app with the fake engine and backend (runs in
milliseconds, writing real logs), in process or on a real uvicorn server on loopback."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from fastapi import FastAPI

from spindle.testing import plugins
from tests.api.conftest import app_client, make_app
from tests.scheduler.test_fakes import fake_catalog, fake_settings


@pytest.fixture
def fakes() -> Iterator[None]:
    with plugins():
        yield


async def fake_app(tmp_path: Path, **kw: Any) -> FastAPI:
    return make_app(fake_settings(tmp_path, **kw), await fake_catalog())


@pytest.fixture
async def client(fakes: None, tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    """The app with its worker and the fake engine, in process (an SSE answer arrives
    whole, once its stream has ended)."""
    async with app_client(await fake_app(tmp_path)) as c:
        yield c


@contextlib.asynccontextmanager
async def served(app: FastAPI) -> AsyncIterator[str]:
    """``app`` on a real uvicorn server on a free loopback port (its lifespan run by the
    server); yields the base URL."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port: int = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", timeout_graceful_shutdown=2))
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        for _ in range(2000):  # up to 20 s
            if server.started or task.done():
                break
            await asyncio.sleep(0.01)
        assert server.started
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await task
        sock.close()
