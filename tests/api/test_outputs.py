"""Outputs and sharing over HTTP, on fake runs (spindle.testing) in basic mode: the file
listing (groups, pages, isolation), signed links without credentials (valid, expired,
tampered, another run's), the log archive and the RO-Crate, read back with rocrate."""

from __future__ import annotations

import asyncio
import io
import zipfile
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from fastapi import FastAPI
from rocrate.rocrate import ROCrate

from spindle.domain import Caller
from spindle.storage.rundir import RunDir
from tests.api.conftest import WES, app_client, make_app, submit_example, wait_state
from tests.scheduler.test_fakes import ENDED, fake_catalog, fake_settings, fakes, form

__all__ = ["fakes"]

#: each user's credentials (personal tokens: quick to check, unlike passwords)
ALICE: dict[str, str] = {}
BOB: dict[str, str] = {}


@pytest.fixture
async def env(fakes: None, tmp_path: Path) -> AsyncIterator[tuple[FastAPI, httpx.AsyncClient]]:
    app = make_app(fake_settings(tmp_path, auth="basic"), await fake_catalog())
    async with app_client(app) as client:
        for name, headers in (("alice", ALICE), ("bob", BOB)):
            user = await app.state.accounts.add_user(name)
            caller = Caller(user_id=user.id, name=name)
            _, secret = await app.state.accounts.create_token(caller, "test")
            headers["Authorization"] = f"Bearer {secret}"
        yield app, client


async def finished_run(client: httpx.AsyncClient, params: dict[str, Any]) -> dict[str, Any]:
    r = await client.post(f"{WES}/runs", **form(params), headers=ALICE)
    assert r.status_code == 200, r.text
    run_id = r.json()["run_id"]
    for _ in range(1000):
        body: dict[str, Any] = (await client.get(f"{WES}/runs/{run_id}", headers=ALICE)).json()
        if body["state"] in ENDED:
            assert body["state"] == "COMPLETE", body
            return body
        await asyncio.sleep(0.02)
    raise AssertionError(f"{run_id} did not end")


async def test_files_are_listed_grouped_and_paged(
    env: tuple[FastAPI, httpx.AsyncClient], tmp_path: Path
) -> None:
    app, client = env
    body = await finished_run(client, {"sleep": 0, "tasks": 2})
    run_id = body["run_id"]
    rundir = RunDir.for_run(app.state.settings.data_dir, run_id)
    (rundir.outputs / "tables").mkdir()
    (rundir.outputs / "tables" / "t.csv").write_text("a,b\n")
    outside = tmp_path / "elsewhere.txt"
    outside.write_text("not the run's")
    (rundir.work / "leak.txt").symlink_to(outside)  # a link out of the folder: not listed
    (rundir.work / "inner.txt").symlink_to(rundir.work / "result.txt")  # inside: listed

    whole = await client.get(f"{WES}/runs/{run_id}/files", headers=ALICE)
    assert whole.status_code == 200, whole.text
    listed = {f["path"]: f for f in whole.json()["files"]}
    assert whole.json()["next_page_token"] == ""
    groups = {path: f["group"] for path, f in listed.items()}
    assert groups["attachments/workflow.fake"] == "inputs"
    assert groups["work/result.txt"] == "outputs"  # named by the run's outputs
    assert groups["outputs/tables/t.csv"] == "outputs"
    assert groups["logs/stdout"] == groups["logs/stderr"] == "logs"
    assert groups["work/inner.txt"] == "work"
    assert groups["params.json"] == "other"
    assert "work/leak.txt" not in listed
    assert list(listed) == sorted(listed)
    result = listed["work/result.txt"]
    assert (result["size"], result["stored"]) == (5, "local")
    assert datetime.fromisoformat(result["modified"]) <= datetime.now(UTC)
    download = await client.get(result["url"], headers=ALICE)
    assert download.content == b"done\n"
    # the RunLog's outputs keep their WES shape
    assert body["outputs"] == {"result": {"class": "File", "location": result["url"]}}

    paged: list[str] = []
    token = ""
    while True:
        r = await client.get(
            f"{WES}/runs/{run_id}/files",
            params={"page_size": 2, **({"page_token": token} if token else {})},
            headers=ALICE,
        )
        page = r.json()
        assert len(page["files"]) <= 2
        paged += [f["path"] for f in page["files"]]
        token = page["next_page_token"]
        if not token:
            break
    assert paged == list(listed)

    logs = await client.get(f"{WES}/runs/{run_id}/files?group=logs", headers=ALICE)
    assert {f["path"] for f in logs.json()["files"]} == {
        p for p, g in groups.items() if g == "logs"
    }

    bad_group = await client.get(f"{WES}/runs/{run_id}/files?group=secrets", headers=ALICE)
    assert (bad_group.status_code, bad_group.json()["status_code"]) == (400, 400)
    assert "group" in bad_group.json()["msg"]
    empty_group = await client.get(f"{WES}/runs/{run_id}/files?group=", headers=ALICE)
    assert empty_group.status_code == 400
    bad_token = await client.get(f"{WES}/runs/{run_id}/files?page_token=xyz", headers=ALICE)
    assert bad_token.status_code == 400
    assert "page_token" in bad_token.json()["msg"]
    # someone else's run is not found; no credentials is a 401
    assert (await client.get(f"{WES}/runs/{run_id}/files", headers=BOB)).status_code == 404
    assert (await client.get(f"{WES}/runs/{run_id}/files")).status_code == 401


async def test_signed_links_work_without_credentials_for_their_file_only(
    env: tuple[FastAPI, httpx.AsyncClient],
) -> None:
    app, client = env
    first = (await finished_run(client, {"sleep": 0}))["run_id"]
    second = (await finished_run(client, {"sleep": 0}))["run_id"]

    made = await client.get(f"{WES}/runs/{first}/links/work/result.txt", headers=ALICE)
    assert made.status_code == 200, made.text
    url = made.json()["url"]
    expires_at = datetime.fromisoformat(made.json()["expires_at"])
    default = app.state.settings.link_seconds
    assert timedelta(0) < expires_at - datetime.now(UTC) <= timedelta(seconds=default)

    got = await client.get(url)  # no credentials at all
    assert got.status_code == 200, got.text
    assert got.content == b"done\n"
    assert "result.txt" in got.headers["content-disposition"]
    # the plain download still needs credentials
    assert (await client.get(f"{WES}/runs/{first}/files/work/result.txt")).status_code == 401

    parts = urlsplit(url)
    query = parse_qs(parts.query)
    expires, signature = query["expires"][0], query["signature"][0]

    def forged(path: str = parts.path, **q: str) -> str:
        values = {"expires": expires, "signature": signature, **q}
        return f"{path}?expires={values['expires']}&signature={values['signature']}"

    refused = [
        forged(signature=signature[:-2] + ("AA" if not signature.endswith("AA") else "BB")),
        forged(expires=str(int(expires) + 3600)),
        forged(parts.path.replace(first, second)),  # the same path in another run
        forged(parts.path.replace("work/result.txt", "logs/stdout")),  # another file
        forged(signature=""),
    ]
    for bad in refused:
        r = await client.get(bad)
        assert (r.status_code, r.json()["status_code"]) == (403, 403), bad

    # once expired (the clock moved past it), the link is refused
    app.state.outputs.signer.clock = lambda: expires_at + timedelta(seconds=1)
    assert (await client.get(url)).status_code == 403
    app.state.outputs.signer.clock = lambda: datetime.now(UTC)
    assert (await client.get(url)).status_code == 200

    short = await client.get(
        f"{WES}/runs/{first}/links/work/result.txt?expires_in=60", headers=ALICE
    )
    short_at = datetime.fromisoformat(short.json()["expires_at"])
    assert short_at - datetime.now(UTC) <= timedelta(seconds=60)
    # making a link: someone else's run is not found, a path out of the run is refused
    assert (
        await client.get(f"{WES}/runs/{first}/links/work/result.txt", headers=BOB)
    ).status_code == 404
    missing = await client.get(f"{WES}/runs/{first}/links/work/none.txt", headers=ALICE)
    assert missing.status_code == 404
    escape = await client.get(f"{WES}/runs/{first}/links/work/%2E%2E/%2E%2E/x", headers=ALICE)
    assert escape.status_code in (400, 404)
    too_long = await client.get(
        f"{WES}/runs/{first}/links/work/result.txt?expires_in=99999999", headers=ALICE
    )
    assert too_long.status_code == 400
    assert "expires_in" in too_long.json()["msg"]


async def test_the_log_archive_is_a_zip_of_the_runs_logs(
    env: tuple[FastAPI, httpx.AsyncClient],
) -> None:
    _, client = env
    run_id = (await finished_run(client, {"sleep": 0, "tasks": 2}))["run_id"]
    r = await client.get(f"{WES}/runs/{run_id}/logs/archive", headers=ALICE)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "application/zip"
    assert f"{run_id}-logs.zip" in r.headers["content-disposition"]
    # the log streams beside it still answer, and the archive holds the same bytes
    stdout = (await client.get(f"{WES}/runs/{run_id}/logs/stdout", headers=ALICE)).content
    assert stdout.endswith(b"fake ran 2 tasks\n")
    with zipfile.ZipFile(io.BytesIO(r.content)) as zf:
        assert zf.testzip() is None
        names = set(zf.namelist())
        assert {"run.json", "logs/stdout", "logs/stderr", "logs/fake-tasks"} <= names
        assert zf.read("logs/stdout") == stdout
        assert all(n == "run.json" or n.startswith(("logs/", "tasks/")) for n in names)
    assert (await client.get(f"{WES}/runs/{run_id}/logs/archive", headers=BOB)).status_code == 404


async def test_the_ro_crate_of_a_finished_run(
    env: tuple[FastAPI, httpx.AsyncClient], tmp_path: Path
) -> None:
    _, client = env
    body = await finished_run(client, {"sleep": 0, "tasks": 1})
    run_id = body["run_id"]
    r = await client.get(f"{WES}/runs/{run_id}/ro-crate", headers=ALICE)
    assert r.status_code == 200, r.text
    path = tmp_path / "crate.zip"
    path.write_bytes(r.content)

    crate = ROCrate(path)  # read back by the library
    workflow = crate.mainEntity
    assert workflow.id == "attachments/workflow.fake"
    assert "ComputationalWorkflow" in workflow.type
    assert workflow["programmingLanguage"]["name"] == "FAKE"
    profiles = {p["@id"] for p in crate.root_dataset["conformsTo"]}
    assert "https://w3id.org/ro/wfrun/workflow/0.5" in profiles
    (action,) = [e for e in crate.get_entities() if e.type == "CreateAction"]
    assert action["instrument"].id == workflow.id
    assert action["actionStatus"] == "http://schema.org/CompletedActionStatus"
    assert datetime.fromisoformat(action["startTime"]) <= datetime.fromisoformat(action["endTime"])
    assert [e.id for e in action["result"]] == ["work/result.txt"]
    inputs = {e.id for e in action["object"]}
    assert {"#param-sleep", "#param-tasks"} <= inputs
    (organize,) = [e for e in crate.get_entities() if e.type == "OrganizeAction"]
    assert (organize["instrument"]["name"], organize["instrument"]["version"]) == ("fake", "1.0")
    assert organize["result"].id == action.id
    with zipfile.ZipFile(path) as zf:
        assert zf.read("work/result.txt") == b"done\n"
        assert "ro-crate-metadata.json" in zf.namelist()

    # an active run has no crate yet; someone else's run is not found
    r = await client.post(f"{WES}/runs", **form({"sleep": 30}), headers=ALICE)
    active = r.json()["run_id"]
    early = await client.get(f"{WES}/runs/{active}/ro-crate", headers=ALICE)
    assert (early.status_code, early.json()["status_code"]) == (409, 409)
    assert (await client.get(f"{WES}/runs/{run_id}/ro-crate", headers=BOB)).status_code == 404


@pytest.mark.engine
async def test_a_cwl_run_with_provenance_archives_it_and_makes_a_crate(
    api: httpx.AsyncClient, tmp_path: Path
) -> None:
    """A real cwltool run asked for its provenance: the research object is in the log
    archive; its RO-Crate names the CWL workflow, cwltool and the output file."""
    run_id = await submit_example(api, "cwl", "wordcount", engine_parameters={"provenance": "true"})
    assert await wait_state(api, run_id, ["COMPLETE", "EXECUTOR_ERROR", "SYSTEM_ERROR"]) == (
        "COMPLETE"
    )
    r = await api.get(f"{WES}/runs/{run_id}/logs/archive")
    with zipfile.ZipFile(io.BytesIO(r.content)) as zf:
        names = set(zf.namelist())
        assert "reports/cwltool-provenance/manifest-sha1.txt" in names
        assert any(n.startswith("reports/cwltool-provenance/metadata/provenance/") for n in names)
        assert "logs/stderr" in names

    r = await api.get(f"{WES}/runs/{run_id}/ro-crate")
    path = tmp_path / "crate.zip"
    path.write_bytes(r.content)
    crate = ROCrate(path)
    assert crate.mainEntity.id == "attachments/workflow.cwl"
    assert crate.mainEntity["programmingLanguage"].id.endswith("#cwl")
    (action,) = [e for e in crate.get_entities() if e.type == "CreateAction"]
    results = [e.id for e in action["result"]]
    assert sorted(results) == ["outputs/counts.txt", "outputs/shouted.txt"]
    (organize,) = [e for e in crate.get_entities() if e.type == "OrganizeAction"]
    assert organize["instrument"]["name"] == "cwltool"
