"""The network guard (``spindle.api.guard``): foreign Host names, changes from other sites'
pages, upload bodies counted while read (chunked too) and bodies that arrive too slowly."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from spindle.api.guard import FORM_ROOM
from spindle.config import Settings
from spindle.engines.registry import Catalog
from tests.api.conftest import WES, example_form, make_app, open_client, runs_on_disk


def _multipart() -> dict[str, Any]:
    data, files = example_form("cwl", "wordcount")
    return {"data": data, "files": files}


async def _runs(client: httpx.AsyncClient) -> list[Any]:
    runs: list[Any] = (await client.get(f"{WES}/runs")).json()["runs"]
    return runs


@pytest.mark.parametrize(
    "headers",
    [
        {"Origin": "http://evil.example"},
        {"Origin": "null"},
        {"Origin": "https://spindle.test"},  # same host, other scheme
        {"Sec-Fetch-Site": "cross-site"},
        {"Sec-Fetch-Site": "cross-site", "Origin": "http://spindle.test"},
    ],
)
async def test_changes_from_another_site_are_403(
    api_no_worker: httpx.AsyncClient, settings: Settings, headers: dict[str, str]
) -> None:
    r = await api_no_worker.post(f"{WES}/runs", headers=headers, **_multipart())
    assert (r.status_code, r.json()["status_code"]) == (403, 403), r.text
    assert r.json()["msg"].startswith(("Origin:", "Sec-Fetch-Site:"))
    r = await api_no_worker.post(f"{WES}/runs/nope/cancel", headers=headers)
    assert r.status_code == 403
    assert await _runs(api_no_worker) == []
    assert runs_on_disk(settings) == []


async def test_the_reported_forgery_is_refused(api_no_worker: httpx.AsyncClient) -> None:
    """The issue's reproduction: a urlencoded form posted from another site's page."""
    data, _ = example_form("snakemake", "hello")
    r = await api_no_worker.post(
        f"{WES}/runs", data=data, headers={"Origin": "http://evil.example"}
    )
    assert r.status_code == 403
    # and the same form without the Origin is still no run: WES takes multipart only
    assert (await api_no_worker.post(f"{WES}/runs", data=data)).status_code == 400
    assert await _runs(api_no_worker) == []


@pytest.mark.parametrize(
    "headers",
    [
        {},  # curl, the CLI, the Python client
        {"Origin": "http://spindle.test"},
        {"Origin": "http://spindle.test", "Sec-Fetch-Site": "same-origin"},
        {"Sec-Fetch-Site": "none"},  # typed into the address bar
    ],
)
async def test_own_and_originless_changes_pass(
    api_no_worker: httpx.AsyncClient, headers: dict[str, str]
) -> None:
    r = await api_no_worker.post(f"{WES}/runs", headers=headers, **_multipart())
    assert r.status_code == 200, r.text


async def test_allowed_origins_and_public_url(settings: Settings, catalog: Catalog) -> None:
    configured = settings.model_copy(
        update={
            "allowed_origins": ["https://app.example.org"],
            "public_url": "https://wes.example.org/",
        }
    )
    async for client in open_client(make_app(configured, catalog, worker=False)):
        for origin in ("https://app.example.org", "https://wes.example.org"):
            r = await client.post(f"{WES}/runs/nope/cancel", headers={"Origin": origin})
            assert r.status_code == 404, (origin, r.text)  # past the guard
        r = await client.post(
            f"{WES}/runs/nope/cancel", headers={"Origin": "https://other.example.org"}
        )
        assert r.status_code == 403


@pytest.mark.parametrize(
    ("host", "status"),
    [
        ("evil.example", 421),
        ("evil.example:8000", 421),
        ("localhost.evil.example", 421),
        ("spindle.test", 200),  # the tests' allowed_hosts
        ("localhost:8000", 200),
        ("127.0.0.1:8000", 200),
        ("[::1]:8000", 200),
        ("10.1.2.3", 200),  # an address is never a rebound name
    ],
)
async def test_host_names_are_checked(
    api_no_worker: httpx.AsyncClient, host: str, status: int
) -> None:
    r = await api_no_worker.get(f"{WES}/service-info", headers={"Host": host})
    assert r.status_code == status, r.text
    if status != 200:
        assert r.json()["status_code"] == 421
        assert r.json()["msg"].startswith(f"Host: {host.partition(':')[0]!r} is not a name")


async def test_allowed_hosts_wildcards(settings: Settings, catalog: Catalog) -> None:
    for hosts, host, status in [
        (["*"], "anything.example", 200),
        (["*.example.org"], "wes.example.org", 200),
        (["*.example.org"], "example.com", 421),
        ([], "spindle.test", 421),
    ]:
        app = make_app(settings.model_copy(update={"allowed_hosts": hosts}), catalog, worker=False)
        async for client in open_client(app):
            r = await client.get(f"{WES}/service-info", headers={"Host": host})
            assert r.status_code == status, (hosts, host)


async def test_ui_refusals_are_the_error_page(api_no_worker: httpx.AsyncClient) -> None:
    r = await api_no_worker.post("/submit", headers={"Origin": "http://evil.example"})
    assert r.status_code == 403
    assert r.headers["content-type"].startswith("text/html")
    assert "is not this service" in r.text


async def _chunks(sent: list[int], size: int, total: int) -> AsyncIterator[bytes]:
    """A multipart body of one big attachment, in chunks, with no Content-Length."""
    head = (
        b'--b\r\nContent-Disposition: form-data; name="workflow_attachment"; '
        b'filename="big.bin"\r\n\r\n'
    )
    sent.append(len(head))
    yield head
    while sum(sent) < total:
        sent.append(size)
        yield b"x" * size
    yield b"\r\n--b--\r\n"


async def test_chunked_upload_is_cut_at_the_limit(settings: Settings, catalog: Catalog) -> None:
    """A chunked upload (no Content-Length) is refused once it passes the limit, not after
    all of it was stored."""
    small = settings.model_copy(update={"max_upload_bytes": 1000})
    total = 40 * FORM_ROOM
    async for client in open_client(make_app(small, catalog, worker=False)):
        sent: list[int] = []
        r = await client.post(
            f"{WES}/runs",
            content=_chunks(sent, 64 * 1024, total),
            headers={"content-type": "multipart/form-data; boundary=b"},
        )
        assert (r.status_code, r.json()["status_code"]) == (413, 413), r.text
        assert r.json()["msg"].startswith("workflow_attachment:")
        assert "1000 bytes" in r.json()["msg"]
        assert sum(sent) <= 1000 + FORM_ROOM + 64 * 1024 < total
        assert r.headers["connection"] == "close"
        assert runs_on_disk(small) == []


async def test_a_slow_body_is_cut(settings: Settings, catalog: Catalog) -> None:
    slow = settings.model_copy(
        update={"body_timeout_seconds": 0.2, "body_min_bytes_per_second": 1000}
    )
    released = asyncio.Event()

    async def trickle() -> AsyncIterator[bytes]:
        yield b"--b\r\n"
        await released.wait()  # never, while the request lasts
        yield b"--b--\r\n"

    async for client in open_client(make_app(slow, catalog, worker=False)):
        r = await client.post(
            f"{WES}/runs",
            content=trickle(),
            headers={"content-type": "multipart/form-data; boundary=b"},
        )
        assert (r.status_code, r.json()["status_code"]) == (408, 408), r.text
        assert "body_min_bytes_per_second" in r.json()["msg"]
        assert not released.is_set()
