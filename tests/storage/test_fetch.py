"""Fetching an http(s) workflow_url (``spindle.storage.fetch``) against a real HTTP server on
loopback that the test starts, allowed through ``fetch_allowed_networks`` as a deployment
would allow an internal network; and the refusals without it."""

from __future__ import annotations

import asyncio
import ipaddress
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import httpcore
import pytest

from spindle.config import Settings
from spindle.errors import InvalidRequest
from spindle.storage.fetch import AddressPolicy, fetch, local_name, local_reference

SNAKEFILE = b'rule all:\n    shell: "echo fetched"\n'


@dataclass
class Served:
    """The test's HTTP server: its base URL and the paths asked for, in order."""

    base: str
    asked: list[str] = field(default_factory=list)


async def _answer(
    served: Served, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
) -> None:
    try:
        head = await reader.readuntil(b"\r\n\r\n")
        path = head.split(b" ", 2)[1].decode()
        served.asked.append(path)
        if path == "/wf/Snakefile":
            writer.write(
                b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(SNAKEFILE), SNAKEFILE)
            )
        elif path.startswith("/to/"):
            target = path.removeprefix("/to/")
            writer.write(
                b"HTTP/1.1 302 Found\r\nLocation: %s\r\nContent-Length: 0\r\n\r\n" % target.encode()
            )
        elif path == "/big":
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 5000\r\n\r\n" + b"x" * 5000)
        elif path == "/big-unsized":
            writer.write(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n")
            for _ in range(50):
                writer.write(b"x" * 1000)
                await writer.drain()
        elif path == "/slow":
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n")
            for _ in range(1000):
                writer.write(b"x")
                await writer.drain()
                await asyncio.sleep(0.1)
        else:
            writer.write(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n")
        await writer.drain()
    except (ConnectionError, asyncio.IncompleteReadError):
        pass
    finally:
        writer.close()


@pytest.fixture
async def served() -> AsyncIterator[Served]:
    holder: list[Served] = []
    server = await asyncio.start_server(lambda r, w: _answer(holder[0], r, w), "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    holder.append(Served(f"http://127.0.0.1:{port}"))
    async with server:
        yield holder[0]
        server.close()


def _settings(settings: Settings, **kw: Any) -> Settings:
    """The test's settings with loopback allowed (and ``kw``)."""
    values: dict[str, Any] = {"fetch_allowed_networks": ["127.0.0.0/8"], **kw}
    return settings.model_copy(
        update={
            **values,
            "fetch_allowed_networks": [
                ipaddress.ip_network(n) for n in values["fetch_allowed_networks"]
            ],
        }
    )


class Recording(httpcore.AnyIOBackend):
    """The real backend, noting every address it is asked to connect to."""

    def __init__(self) -> None:
        self.connected: list[str] = []

    async def connect_tcp(self, host: str, port: int, **kw: Any) -> httpcore.AsyncNetworkStream:
        self.connected.append(host)
        return await super().connect_tcp(host, port, **kw)


async def test_an_allowed_url_is_fetched(settings: Settings, served: Served) -> None:
    body = await fetch(f"{served.base}/wf/Snakefile", _settings(settings))
    assert body == SNAKEFILE
    # a redirect to an allowed address is followed
    body = await fetch(f"{served.base}/to/{served.base}/wf/Snakefile", _settings(settings))
    assert body == SNAKEFILE


async def test_loopback_is_refused_without_the_setting(settings: Settings, served: Served) -> None:
    with pytest.raises(InvalidRequest) as refused:
        await fetch(f"{served.base}/wf/Snakefile", settings)
    assert refused.value.field == "workflow_url"
    assert "127.0.0.1 is a loopback address" in refused.value.problem
    assert "fetch_allowed_networks" in refused.value.problem
    assert served.asked == []


@pytest.mark.parametrize(
    "url",
    [
        "http://localhost:9/x",  # a name is checked by what it resolves to
        "http://[::1]:9/x",
        "http://[::ffff:127.0.0.1]:9/x",
        "http://0.0.0.0:9/x",
        "http://10.0.0.1/x",
        "http://192.168.1.1/x",
        "http://100.100.100.200/x",  # Alibaba's metadata, in shared address space
        "http://[fd00:ec2::254]/x",  # AWS's IPv6 metadata
        "http://[64:ff9b::a9fe:a9fe]/x",  # 169.254.169.254 through NAT64
    ],
)
async def test_internal_addresses_are_refused_before_connecting(
    settings: Settings, url: str
) -> None:
    recording = Recording()
    with pytest.raises(InvalidRequest, match=r"workflow_url: .* was not fetched: .*address"):
        await fetch(url, settings, inner=recording)
    assert recording.connected == []


async def test_metadata_is_refused_without_connecting(settings: Settings) -> None:
    recording = Recording()
    with pytest.raises(InvalidRequest, match=r"169\.254\.169\.254 is a link-local address"):
        await fetch("http://169.254.169.254/latest/meta-data/", settings, inner=recording)
    assert recording.connected == []


async def test_a_redirect_to_a_denied_address_is_refused(
    settings: Settings, served: Served
) -> None:
    recording = Recording()
    for target in ("http://169.254.169.254/latest/meta-data/", "http://10.0.0.1/"):
        with pytest.raises(InvalidRequest, match=r"is a (link-local|private) address"):
            await fetch(f"{served.base}/to/{target}", _settings(settings), inner=recording)
    assert recording.connected == ["127.0.0.1", "127.0.0.1"]  # never the targets
    # nor may a redirect leave http(s)
    with pytest.raises(InvalidRequest, match="workflow_url"):
        await fetch(f"{served.base}/to/file:///etc/passwd", _settings(settings))


async def test_too_many_redirects(settings: Settings, served: Served) -> None:
    url = f"{served.base}/to/{served.base}/to/{served.base}/wf/Snakefile"
    with pytest.raises(InvalidRequest, match="redirects more than 1 times"):
        await fetch(url, _settings(settings, fetch_max_redirects=1))


@pytest.mark.parametrize("path", ["/big", "/big-unsized"])
async def test_an_oversized_body_is_refused(settings: Settings, served: Served, path: str) -> None:
    with pytest.raises(InvalidRequest, match=r"larger than 1000 bytes \(setting fetch_max_bytes\)"):
        await fetch(served.base + path, _settings(settings, fetch_max_bytes=1000))


async def test_a_slow_body_is_cut_by_the_time_limit(settings: Settings, served: Served) -> None:
    """One byte every 0.1 s would take 100 s: the whole fetch has 0.5 s."""
    with pytest.raises(InvalidRequest, match=r"not fetched in 0.5 s \(setting fetch_timeout"):
        await fetch(f"{served.base}/slow", _settings(settings, fetch_timeout_seconds=0.5))


async def test_an_error_status_is_refused(settings: Settings, served: Served) -> None:
    with pytest.raises(InvalidRequest, match="answered 404, not 200"):
        await fetch(f"{served.base}/nothing", _settings(settings))


def test_public_addresses_pass_and_allowed_networks_open_others() -> None:
    policy = AddressPolicy()
    assert policy.refusal("93.184.215.14") is None
    assert policy.refusal("2606:2800:21f:cb07:6820:80da:af6b:8b2c") is None
    assert policy.refusal("10.1.2.3") == "10.1.2.3 is a private address"
    opened = AddressPolicy([ipaddress.ip_network("10.1.0.0/16")])
    assert opened.refusal("10.1.2.3") is None
    assert opened.refusal("10.2.0.1") == "10.2.0.1 is a private address"


@pytest.mark.parametrize(
    ("url", "name", "reference"),
    [
        ("https://x.org/wf/main.cwl?raw=1", "main.cwl", "main.cwl"),
        ("https://x.org/wf/packed.cwl#main", "packed.cwl", "packed.cwl#main"),
        ("https://x.org/", "workflow", "workflow"),
        ("https://x.org/a/%2E%2E", "workflow", "workflow"),
        ("https://x.org/a:b", "workflow", "workflow"),
        ("https://x.org/a%23b#c", "workflow", "workflow#c"),
    ],
)
def test_the_copy_name(url: str, name: str, reference: str) -> None:
    assert (local_name(url), local_reference(url)) == (name, reference)
