"""The network guard: an ASGI middleware in front of every route (API and web UI) that refuses
what a hostile network or another web page sends before any route sees it.

- **Host** (DNS rebinding): a request whose ``Host`` names something other than this service
  is refused (421). Accepted: an IP address (a browser sends one only for a page served from
  that address), ``localhost``, the bound ``host``, ``public_url``'s host and the
  ``allowed_hosts`` setting (``*`` accepts any, ``*.example.org`` any name under it).
- **Cross-site changes**: a POST, PUT, PATCH or DELETE whose ``Sec-Fetch-Site`` says
  ``cross-site``, or whose ``Origin`` is not Spindle's own (the request's scheme and Host,
  ``public_url``, or the ``allowed_origins`` setting), is refused (403). Requests without
  either header (curl, the CLI, the Python client) pass: only browsers send them, and a
  browser always does on a cross-origin POST.
- **Bodies**: the body of an upload route (``POST /ga4gh/wes/v1/runs``, the UI's
  ``POST /submit``) is counted while it is read, chunked or not, and cut at
  ``max_upload_bytes`` plus room for the text fields (413 naming ``workflow_attachment``);
  every body must keep up with ``body_min_bytes_per_second`` after a grace of
  ``body_timeout_seconds``, or it is cut (408). A cut answer closes the connection.

Refusals under the API prefix answer the WES ``ErrorResponse``; elsewhere the UI's error page.
"""

from __future__ import annotations

import asyncio
import ipaddress
import time
from urllib.parse import urlsplit

from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from spindle import limits
from spindle.api.errors import ErrorPage, error_response
from spindle.api.links import PREFIX
from spindle.config import Settings
from spindle.errors import PayloadTooLarge, SpindleError

#: methods that change something, and so must not come from another site
UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
#: routes whose body is a multipart upload of attachments, counted against max_upload_bytes
UPLOAD_ROUTES = frozenset({("POST", PREFIX + "/runs"), ("POST", "/submit")})
#: bytes an upload's body may have beyond max_upload_bytes (as the routes' own
#: Content-Length check allows)
FORM_ROOM = limits.FORM_ROOM
#: host names a local service always answers to
LOOPBACK_NAMES = frozenset({"localhost", "localhost.localdomain"})


class RequestTimeout(SpindleError):
    """The request body arrived too slowly."""

    status_code = 408


def origin_of(url: str) -> str:
    """``scheme://host[:port]`` of a URL, lower-cased ("" when it has none)."""
    parts = urlsplit(url.strip())
    if not parts.scheme or not parts.netloc:
        return ""
    return f"{parts.scheme}://{parts.netloc}".lower()


def _host_name(host: str) -> str:
    """The name part of a Host header value (no port, no IPv6 brackets), lower-cased."""
    host = host.strip().lower()
    if host.startswith("["):
        return host[1:].partition("]")[0]
    return host.rpartition(":")[0] if host.count(":") == 1 else host


def _is_ip(name: str) -> bool:
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


class HostCheck:
    """Whether a Host header names this service (see the module docstring)."""

    def __init__(self, settings: Settings) -> None:
        names = {n.strip().lower().rstrip(".") for n in settings.allowed_hosts if n.strip()}
        self.any = "*" in names
        self.suffixes = tuple(n[1:] for n in names if n.startswith("*."))
        self.names = {n for n in names if not n.startswith("*")} | LOOPBACK_NAMES
        if settings.host:
            self.names.add(_host_name(settings.host))
        if settings.public_url:
            public = urlsplit(settings.public_url).hostname
            if public:
                self.names.add(public.lower())

    def allows(self, host: str) -> bool:
        name = _host_name(host).rstrip(".")
        if self.any or not name or _is_ip(name) or name in self.names:
            return True
        return any(name.endswith(suffix) for suffix in self.suffixes)


class Guard:
    """The middleware (see the module docstring)."""

    def __init__(self, app: ASGIApp, *, settings: Settings, page: ErrorPage | None = None):
        self.app = app
        self.settings = settings
        self.page = page
        self.hosts = HostCheck(settings)
        self.origins = {o for o in map(origin_of, settings.allowed_origins) if o}
        if settings.public_url:
            self.origins.add(origin_of(settings.public_url))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request = Request(scope)
        problem = self._refusal(request)
        if problem is not None:
            status, msg = problem
            response = await self._answer(request, status, msg)
            await response(scope, receive, send)
            return
        body = _Body(self.settings, receive, scope)
        await self.app(scope, body.receive, body.send_through(send))

    def _refusal(self, request: Request) -> tuple[int, str] | None:
        host = request.headers.get("host", "")
        if host and not self.hosts.allows(host):
            return 421, (
                f"Host: {_host_name(host)!r} is not a name of this service (setting "
                "allowed_hosts); a foreign name is how DNS rebinding reaches a local service"
            )
        if request.method not in UNSAFE_METHODS:
            return None
        if request.headers.get("sec-fetch-site", "").strip().lower() == "cross-site":
            return 403, (
                "Sec-Fetch-Site: a change must not come from another site's page "
                "(cross-site requests are refused)"
            )
        origin = request.headers.get("origin")
        if origin is not None and not self._own_origin(origin, request):
            return 403, (
                f"Origin: {origin.strip()[:200]!r} is not this service's; a change must come "
                "from Spindle's own pages or a client that sends no Origin (setting "
                "allowed_origins)"
            )
        return None

    def _own_origin(self, origin: str, request: Request) -> bool:
        sent = origin_of(origin)
        if not sent:
            return False  # "null" (a sandboxed or privacy-sensitive context) or garbage
        host = request.headers.get("host", "")
        own = f"{request.url.scheme}://{host}".lower() if host else ""
        return sent == own or sent in self.origins

    async def _answer(self, request: Request, status: int, msg: str) -> Response:
        path = request.url.path
        if self.page is not None and path != PREFIX and not path.startswith(PREFIX + "/"):
            return await self.page(request, status, msg)
        return error_response(status, msg)


class _Body:
    """One request's ``receive``, counted and timed (see the module docstring), and its
    ``send``, which closes the connection after answering a request cut short."""

    def __init__(self, settings: Settings, receive: Receive, scope: Scope) -> None:
        self._receive = receive
        headers = dict(scope["headers"])
        length = headers.get(b"content-length", b"")
        # (a request without a body is never timed: its receive waits for the disconnect)
        self.done = b"transfer-encoding" not in headers and (not length or length == b"0")
        self.cut = False
        self.read = 0
        self.limit: int | None = None
        self.max_upload = settings.max_upload_bytes
        if (scope["method"], scope["path"]) in UPLOAD_ROUTES:
            self.limit = settings.max_upload_bytes + FORM_ROOM
        self.grace = settings.body_timeout_seconds
        self.rate = settings.body_min_bytes_per_second
        self.started = time.monotonic()

    async def receive(self) -> Message:
        if self.done:
            return await self._receive()
        # the body must have kept up with the minimum rate once the grace period is over
        deadline = self.started + self.grace + self.read / self.rate
        try:
            async with asyncio.timeout(max(0.0, deadline - time.monotonic())):
                message = await self._receive()
        except TimeoutError:
            self.cut = True
            raise RequestTimeout(
                f"request body: {self.read} bytes arrived in "
                f"{time.monotonic() - self.started:.0f} s, slower than "
                f"{self.rate} bytes per second after {self.grace:g} s "
                "(settings body_min_bytes_per_second, body_timeout_seconds)"
            ) from None
        if message["type"] != "http.request":
            self.done = True
            return message
        self.read += len(message.get("body", b""))
        if not message.get("more_body", False):
            self.done = True
        if self.limit is not None and self.read > self.limit:
            self.cut = True
            raise PayloadTooLarge(
                f"workflow_attachment: the upload is over the limit of {self.max_upload} bytes "
                "for the attachments together (setting max_upload_bytes)"
            )
        return message

    def send_through(self, send: Send) -> Send:
        async def guarded(message: Message) -> None:
            if message["type"] == "http.response.start" and self.cut:
                # the rest of the body is never read: end the connection with this answer
                headers = [
                    (k, v) for k, v in message.get("headers", []) if k.lower() != b"connection"
                ]
                message = {**message, "headers": [*headers, (b"connection", b"close")]}
            await send(message)

        return guarded
