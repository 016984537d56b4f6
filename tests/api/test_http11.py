"""``spindle serve``'s HTTP/1.1 limits (``spindle.api.http11``) on a real uvicorn server,
started in the test on loopback with a trivial app: slow headers are cut, keep-alive and
header size come from the settings."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator

import uvicorn
from starlette.types import Receive, Scope, Send

from spindle.api.http11 import uvicorn_options
from spindle.config import Settings


async def _hello(scope: Scope, receive: Receive, send: Send) -> None:
    if scope["type"] != "http":
        return
    headers = [(b"content-length", b"5")]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": b"hello"})


@contextlib.asynccontextmanager
async def _server(settings: Settings) -> AsyncIterator[int]:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port: int = sock.getsockname()[1]
    config = uvicorn.Config(
        _hello, lifespan="off", log_level="warning", **uvicorn_options(settings)
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        for _ in range(1000):  # up to 10 s
            if server.started:
                break
            await asyncio.sleep(0.01)
        assert server.started
        yield port
    finally:
        server.should_exit = True
        await task
        sock.close()


async def _close(writer: asyncio.StreamWriter) -> None:
    writer.close()
    with contextlib.suppress(ConnectionError):
        await writer.wait_closed()


async def _read_all(reader: asyncio.StreamReader) -> bytes:
    async with asyncio.timeout(10):  # a bound for the test itself, not a timing asserted
        return await reader.read()


async def test_slow_headers_are_cut_with_a_408(settings: Settings) -> None:
    quick = settings.model_copy(update={"header_timeout_seconds": 0.3})
    async with _server(quick) as port:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET / HTTP/1.1\r\nHost: localhost\r\nX-Slow: a")  # and then nothing
        await writer.drain()
        answer = await _read_all(reader)  # ends: the server closed the connection
        await _close(writer)
        assert answer.startswith(b"HTTP/1.1 408 ")
        assert b"header_timeout_seconds" in answer

        # a connection that never says anything is closed too
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        assert (await _read_all(reader)).startswith(b"HTTP/1.1 408 ")
        await _close(writer)


async def test_prompt_requests_pass_and_keep_alive(settings: Settings) -> None:
    quick = settings.model_copy(update={"header_timeout_seconds": 0.3})
    async with _server(quick) as port:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        for _ in range(2):  # the second request on the same connection
            writer.write(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
            await writer.drain()
            async with asyncio.timeout(10):
                head = await reader.readuntil(b"\r\n\r\n")
                assert head.startswith(b"HTTP/1.1 200 ")
                assert await reader.readexactly(5) == b"hello"
        await _close(writer)


async def test_oversized_headers_are_a_400(settings: Settings) -> None:
    async with _server(settings.model_copy(update={"max_header_bytes": 4096})) as port:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        # (h11 bounds what it holds while the headers are still incomplete)
        writer.write(b"GET / HTTP/1.1\r\nHost: localhost\r\nX-Big: " + b"x" * 8000)
        await writer.drain()
        assert (await _read_all(reader)).startswith(b"HTTP/1.1 400 ")
        await _close(writer)
