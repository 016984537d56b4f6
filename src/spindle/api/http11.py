"""How ``spindle serve`` speaks HTTP/1.1: uvicorn's h11 protocol, with the limits a hostile
client meets before the app sees its request.

uvicorn times out idle keep-alive connections (``keep_alive_seconds``) and h11 bounds the
request line and headers (``max_header_bytes``, a 400 past it), but nothing stops a client
that sends its headers a byte at a time, or opens a connection and says nothing: each holds a
connection forever. :class:`TimedH11Protocol` gives every request ``header_timeout_seconds``
from its first byte (or from the connection's start) to its last header, then answers 408 and
closes. The body's own pace is checked in the app (``spindle.api.guard``).
"""

from __future__ import annotations

import asyncio
from typing import Any

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

from spindle.config import Settings

_TIMEOUT_TEXT = b"the request headers did not arrive in time (header_timeout_seconds)\n"
_TIMEOUT_ANSWER = (
    b"HTTP/1.1 408 Request Timeout\r\n"
    b"content-type: text/plain; charset=utf-8\r\n"
    b"connection: close\r\n"
    b"content-length: %d\r\n"
    b"\r\n%s" % (len(_TIMEOUT_TEXT), _TIMEOUT_TEXT)
)


class TimedH11Protocol(H11Protocol):
    """H11Protocol with a deadline for each request's headers (``header_timeout`` seconds,
    set on the subclass :func:`protocol` makes)."""

    header_timeout: float = 30.0

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._header_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        # a new request starts: its headers have header_timeout from now
        if self.conn.their_state is h11.IDLE:
            self._arm()
        super().data_received(data)
        if self.conn.their_state is not h11.IDLE:
            self._disarm()  # the headers are in (or the request was refused)

    def _arm(self) -> None:
        if self._header_timer is None:
            self._header_timer = self.loop.call_later(self.header_timeout, self._timed_out)

    def _disarm(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _timed_out(self) -> None:
        self._header_timer = None
        if self.conn.their_state is h11.IDLE and not self.transport.is_closing():
            self.transport.write(_TIMEOUT_ANSWER)
            self.transport.close()


def protocol(settings: Settings) -> type[TimedH11Protocol]:
    """The protocol class for uvicorn's ``http=`` with the settings' header timeout."""
    return type(
        "SpindleH11Protocol",
        (TimedH11Protocol,),
        {"header_timeout": settings.header_timeout_seconds},
    )


def uvicorn_options(settings: Settings) -> dict[str, Any]:
    """The network limits as uvicorn's options (``uvicorn.run(app, **options)``)."""
    return {
        "http": protocol(settings),
        "timeout_keep_alive": settings.keep_alive_seconds,
        "h11_max_incomplete_event_size": settings.max_header_bytes,
    }
