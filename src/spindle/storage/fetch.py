"""Fetching an http(s) ``workflow_url`` for a run, safely, at submission.

Engines never see a remote URL: Spindle fetches the file itself when the run is submitted and
puts the copy among the run's attachments, under the last segment of the URL's path
(:func:`local_name`); the engine runs that copy. So a workflow URL cannot make Spindle's host
reach what it should not (SSRF):

- every address the host name resolves to is checked before connecting, and the connection
  goes to the checked address (no second lookup a rebinding DNS server could answer
  differently); loopback, private, link-local (cloud metadata at 169.254.169.254),
  shared, multicast, reserved and unspecified addresses are refused unless they are in
  ``fetch_allowed_networks``. IPv4 addresses inside IPv6 ones (mapped, 6to4, Teredo, NAT64)
  are checked as the IPv4 address;
- each redirect (at most ``fetch_max_redirects``) goes through the same check;
- the body is cut at ``fetch_max_bytes``, and the whole fetch at ``fetch_timeout_seconds``,
  so an answer at 1 byte a second ends in time;
- no proxy from the environment is used, and nothing but http and https is fetched.

Every refusal is an InvalidRequest naming ``workflow_url`` (a 400 at submission).
"""

from __future__ import annotations

import asyncio
import functools
import ipaddress
import re
import socket
import ssl
import typing
from collections.abc import Iterable, Sequence
from pathlib import Path
from urllib.parse import unquote, urlsplit

import httpcore
import httpx

import spindle
from spindle.config import Settings
from spindle.errors import InvalidRequest

FIELD = "workflow_url"
#: the name of the copy when the URL's path ends without one
DEFAULT_NAME = "workflow"
_PLAIN_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._+-]{0,254}")
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


def is_remote(url: str) -> bool:
    return urlsplit(url).scheme.lower() in ("http", "https")


def local_name(url: str) -> str:
    """The file name of the fetched copy of ``url`` among the attachments: the last segment
    of its path (``https://x.org/wf/main.cwl?raw=1`` → ``main.cwl``) when it is a plain file
    name (letters, digits, ``._+-``), else ``workflow``."""
    name = unquote(urlsplit(url).path.rsplit("/", 1)[-1])
    return name if _PLAIN_NAME.fullmatch(name) else DEFAULT_NAME


def local_reference(url: str) -> str:
    """What an engine runs for ``url``: the copy's name, with the URL's ``#fragment``."""
    fragment = urlsplit(url).fragment
    return local_name(url) + (f"#{fragment}" if fragment else "")


# --- addresses ---------------------------------------------------------------------------


def _embedded_ipv4(ip: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if ip.sixtofour is not None:
        return ip.sixtofour
    if ip.teredo is not None:
        return ip.teredo[1]
    if ip in _NAT64:
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return None


class AddressPolicy:
    """Which addresses Spindle may connect to for a workflow URL."""

    def __init__(self, allowed: Iterable[IPNetwork] = ()) -> None:
        self.allowed = tuple(allowed)

    def refusal(self, address: str) -> str | None:
        """Why ``address`` is refused, or None when it may be reached."""
        ip: IPAddress = ipaddress.ip_address(address.partition("%")[0])
        if any(ip.version == net.version and ip in net for net in self.allowed):
            return None
        if isinstance(ip, ipaddress.IPv6Address):
            inner = _embedded_ipv4(ip)
            if inner is not None:
                why = self.refusal(str(inner))
                return f"{why} (inside {ip})" if why else None
        if ip.is_global and not ip.is_multicast:
            return None
        for kind, flag in (
            ("loopback", ip.is_loopback),
            ("link-local", ip.is_link_local),
            ("unspecified", ip.is_unspecified),
            ("multicast", ip.is_multicast),
            ("private", ip.is_private),
        ):
            if flag:
                return f"{ip} is a {kind} address"
        return f"{ip} is not a public address"


class _Refused(Exception):
    def __init__(self, message: str) -> None:
        self.message = message
        super().__init__(message)


class GuardedBackend(httpcore.AsyncNetworkBackend):
    """httpcore's network backend with every address checked before it is connected to."""

    def __init__(
        self,
        policy: AddressPolicy,
        inner: httpcore.AsyncNetworkBackend | None = None,
        *,
        setting: str = "fetch_allowed_networks",
    ) -> None:
        self.policy = policy
        self.inner = inner or httpcore.AnyIOBackend()
        self.setting = setting  # named in refusals: the setting that would allow it

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,  # noqa: ASYNC109 (httpcore's interface)
        local_address: str | None = None,
        socket_options: typing.Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        addresses = await self._resolve(host, port)
        for address in addresses:
            why = self.policy.refusal(address)
            if why is not None:
                raise _Refused(
                    f"{host} is refused: {why} (setting {self.setting})"
                    if host != address
                    else f"{why}; Spindle fetches only from public addresses "
                    f"(setting {self.setting})"
                )
        failure: OSError | httpcore.ConnectError | None = None
        for address in addresses:
            try:
                return await self.inner.connect_tcp(
                    address,
                    port,
                    timeout=timeout,
                    local_address=local_address,
                    socket_options=socket_options,
                )
            except (OSError, httpcore.ConnectError) as exc:
                failure = exc
        raise _Refused(f"could not connect to {host}:{port} ({failure})")

    async def _resolve(self, host: str, port: int) -> Sequence[str]:
        try:
            infos = await asyncio.get_running_loop().getaddrinfo(
                host, port, type=socket.SOCK_STREAM
            )
        except OSError as exc:
            raise _Refused(f"{host} does not resolve ({exc.strerror or exc})") from None
        addresses = list(dict.fromkeys(str(info[4][0]) for info in infos))
        if not addresses:
            raise _Refused(f"{host} does not resolve")
        return addresses

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,  # noqa: ASYNC109 (httpcore's interface)
        socket_options: typing.Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        raise _Refused("Unix sockets are not fetched")

    async def sleep(self, seconds: float) -> None:
        await self.inner.sleep(seconds)


@functools.cache
def _ssl_context() -> ssl.SSLContext:
    """The certificate authorities httpx trusts (loaded once: it takes a while)."""
    return httpx.create_ssl_context(trust_env=False)


class _Transport(httpx.AsyncHTTPTransport):
    """httpx's transport on the guarded backend (httpx takes no backend of its own)."""

    def __init__(self, backend: httpcore.AsyncNetworkBackend) -> None:
        super().__init__(verify=_ssl_context(), trust_env=False, retries=0)
        self._pool = httpcore.AsyncConnectionPool(
            ssl_context=_ssl_context(),
            max_connections=4,
            network_backend=backend,
        )


#: raised (through httpx) when the guarded backend refuses an address; ``.message`` says why
Refused = _Refused


def guarded_transport(
    policy: AddressPolicy,
    *,
    setting: str,
    inner: httpcore.AsyncNetworkBackend | None = None,
) -> httpx.AsyncHTTPTransport:
    """An httpx transport that checks every address it connects to against ``policy``, as
    workflow URL fetches do (for other callers, e.g. notification webhooks; ``setting``
    names their allow-list in refusals)."""
    return _Transport(GuardedBackend(policy, inner, setting=setting))


# --- fetching ----------------------------------------------------------------------------


async def fetch(
    url: str, settings: Settings, *, inner: httpcore.AsyncNetworkBackend | None = None
) -> bytes:
    """The body of ``url`` within the settings' limits, or InvalidRequest naming
    ``workflow_url`` (``inner``: the network backend under the checks, for tests)."""
    if not is_remote(url):
        raise InvalidRequest(FIELD, f"{url!r} is not an http(s) URL")
    policy = AddressPolicy(settings.fetch_allowed_networks)
    limit = settings.fetch_max_bytes
    seconds = settings.fetch_timeout_seconds
    try:
        async with (
            asyncio.timeout(seconds),
            httpx.AsyncClient(
                transport=_Transport(GuardedBackend(policy, inner)),
                follow_redirects=True,
                max_redirects=settings.fetch_max_redirects,
                trust_env=False,
                timeout=seconds,
                headers={"User-Agent": f"Spindle/{spindle.__version__}"},
            ) as client,
            client.stream("GET", url) as response,
        ):
            if response.status_code != 200:
                raise InvalidRequest(
                    FIELD, f"{response.url} answered {response.status_code}, not 200"
                )
            length = response.headers.get("content-length", "")
            if length.isdigit() and int(length) > limit:
                raise _too_large(url, limit)
            chunks: list[bytes] = []
            size = 0
            async for chunk in response.aiter_bytes():
                size += len(chunk)
                if size > limit:
                    raise _too_large(url, limit)
                chunks.append(chunk)
            return b"".join(chunks)
    except _Refused as exc:
        raise InvalidRequest(FIELD, f"{url!r} was not fetched: {exc.message}") from None
    except TimeoutError:
        raise InvalidRequest(
            FIELD,
            f"{url!r} was not fetched in {seconds:g} s (setting fetch_timeout_seconds)",
        ) from None
    except httpx.TooManyRedirects:
        raise InvalidRequest(
            FIELD,
            f"{url!r} redirects more than {settings.fetch_max_redirects} times "
            "(setting fetch_max_redirects)",
        ) from None
    except httpx.HTTPError as exc:
        raise InvalidRequest(FIELD, f"{url!r} was not fetched: {exc}") from None


def _too_large(url: str, limit: int) -> InvalidRequest:
    return InvalidRequest(FIELD, f"{url!r} is larger than {limit} bytes (setting fetch_max_bytes)")


def store(url: str, content: bytes, attachments: Path, attached: Iterable[str]) -> str:
    """Write the fetched copy of ``url`` among the attachments (blocking); its name, which
    no attachment may already have."""
    name = local_name(url)
    if name in set(attached):
        raise InvalidRequest(
            FIELD,
            f"the fetched workflow is saved as {name!r} among the attachments, and an "
            "attachment already has that name",
        )
    attachments.mkdir(parents=True, exist_ok=True)
    (attachments / name).write_bytes(content)
    return name
