"""An http(s) workflow_url is fetched by Spindle at submission (checked and bounded, see
tests/storage/test_fetch.py) and the engine runs the copy among the attachments."""

from __future__ import annotations

import functools
import ipaddress
import threading
from collections.abc import Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

from spindle.config import Settings
from spindle.domain import Caller
from spindle.engines.registry import Catalog
from spindle.engines.snakemake import snakefile_argument
from tests.api.conftest import CLEANUP, WES, make_app, open_client, runs_on_disk, wait_state


class QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def http_folder(tmp_path: Path) -> Iterator[tuple[Path, str, ThreadingHTTPServer]]:
    """A folder served over HTTP on loopback, its base URL and the server."""
    folder = tmp_path / "served"
    folder.mkdir()
    handler = functools.partial(QuietHandler, directory=str(folder))
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield folder, f"http://127.0.0.1:{server.server_address[1]}", server
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


async def _submit(
    client: httpx.AsyncClient, url: str, *attachments: tuple[str, bytes]
) -> httpx.Response:
    """RunWorkflow as multipart (also without attachments, as the Python client sends it)."""
    fields = {"workflow_type": "SMK", "workflow_type_version": "9", "workflow_url": url}
    parts: list[tuple[str, tuple[str | None, Any]]] = [(k, (None, v)) for k, v in fields.items()]
    parts += [("workflow_attachment", item) for item in attachments]
    return await client.post(f"{WES}/runs", files=parts)


def _loopback(settings: Settings) -> Settings:
    return settings.model_copy(
        update={"fetch_allowed_networks": [ipaddress.ip_network("127.0.0.0/8")]}
    )


async def test_a_refused_url_is_a_400_and_leaves_nothing(
    api_no_worker: httpx.AsyncClient, settings: Settings, http_folder: Any
) -> None:
    folder, base, _ = http_folder
    (folder / "Snakefile").write_text("rule all:\n")
    for url, problem in [
        (f"{base}/Snakefile", "127.0.0.1 is a loopback address"),
        ("http://169.254.169.254/latest/meta-data/", "169.254.169.254 is a link-local address"),
    ]:
        r = await _submit(api_no_worker, url)
        assert (r.status_code, r.json()["status_code"]) == (400, 400), r.text
        assert r.json()["msg"].startswith("workflow_url: ")
        assert problem in r.json()["msg"]
    assert runs_on_disk(settings) == []


async def test_the_fetched_copy_may_not_shadow_an_attachment(
    settings: Settings, catalog: Catalog, http_folder: Any
) -> None:
    folder, base, _ = http_folder
    (folder / "Snakefile").write_text("rule all:\n")
    app = make_app(_loopback(settings), catalog, worker=False)
    async for client in open_client(app):
        r = await _submit(client, f"{base}/Snakefile", ("Snakefile", b"rule other:\n"))
        assert r.status_code == 400, r.text
        assert "an attachment already has that name" in r.json()["msg"]


@pytest.mark.engine
async def test_the_engine_runs_the_fetched_copy(
    settings: Settings, catalog: Catalog, http_folder: Any, snakemake_exe: str
) -> None:
    """The URL is fetched once, at submission, and the server then stops; the Snakefile's
    include resolves among the attachments (the server does not have it: had Snakemake read
    the URL, it would have looked for the include next to it)."""
    folder, base, server = http_folder
    (folder / "Snakefile").write_text(
        'include: "rules/hello.smk"\n\nrule all:\n    input: "hi.txt"\n'
    )
    rule = b'rule hello:\n    output: "hi.txt"\n    shell: "echo hi > {output}"\n'
    async for client in open_client(make_app(_loopback(settings), catalog)):
        r = await _submit(client, f"{base}/Snakefile", ("rules/hello.smk", rule))
        assert r.status_code == 200, r.text
        run_id = r.json()["run_id"]
        server.shutdown()
        attachments = settings.data_dir / "runs" / run_id / "attachments"
        assert (attachments / "Snakefile").read_bytes() == (folder / "Snakefile").read_bytes()
        assert await wait_state(client, run_id, {"COMPLETE", "EXECUTOR_ERROR"}) == "COMPLETE"
        log = (await client.get(f"{WES}/runs/{run_id}")).json()
        assert log["request"]["workflow_url"] == f"{base}/Snakefile"


async def test_submitting_again_reuses_the_copy(
    settings: Settings, catalog: Catalog, http_folder: Any
) -> None:
    """Submit again needs no second fetch (the URL may be gone): the copy comes along with
    the attachments, and the engine's argument is that copy."""
    folder, base, server = http_folder
    (folder / "Snakefile").write_text("rule all:\n")
    app = make_app(_loopback(settings), catalog, worker=False)
    async for client in open_client(app):
        r = await _submit(client, f"{base}/Snakefile")
        assert r.status_code == 200, r.text
        server.shutdown()
        service = app.state.service
        first = await service.get(r.json()["run_id"], caller=CLEANUP)
        owner = Caller(user_id=first.owner_id, name="local", admin=True)
        again = await service.resubmit(first.id, caller=owner)
        rundir = service.rundir(again.id)
        assert (rundir.attachments / "Snakefile").read_text() == "rule all:\n"
        argument = snakefile_argument(again.request.workflow_url, rundir)
        assert argument == str(rundir.attachments.resolve() / "Snakefile")
