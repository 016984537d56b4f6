"""S3 storage against a real S3 server on loopback (moto): uploads byte-identical and
verified, a multipart upload with a small part size, downloads answered by a presigned URL
that works, the local copy removed when asked, and ``s3://`` inputs staged for a run (a fake
run, and a real Snakemake run that reads one)."""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from spindle.config import Settings
from spindle.engines.registry import Catalog
from spindle.storage.rundir import RunDir
from spindle.storage.s3 import MANIFEST, S3Error, S3Store
from tests.api.conftest import WES, app_client, make_app
from tests.s3 import REGION, S3Server, aws, s3_server
from tests.scheduler.test_fakes import ENDED, fake_catalog, fake_settings, fakes, form

__all__ = ["aws", "fakes", "s3_server"]

MiB = 1024 * 1024


def s3_settings(server: S3Server, bucket: str, **kw: Any) -> dict[str, Any]:
    return {
        "s3_bucket": bucket,
        "s3_prefix": "runs/here",
        "s3_endpoint_url": server.endpoint,
        "s3_region": REGION,
        **kw,
    }


def test_uploads_are_byte_identical_and_large_files_go_in_parts(
    s3_server: S3Server, aws: None, tmp_path: Path
) -> None:
    bucket = s3_server.bucket()
    store = S3Store(Settings(**s3_settings(s3_server, bucket, s3_part_size_bytes=5 * MiB)))
    big = tmp_path / "big.bin"
    big.write_bytes(os.urandom(11 * MiB))  # three parts of (at most) 5 MiB
    small = tmp_path / "small.txt"
    small.write_bytes(b"a small file\n")

    assert store.upload_file(big, "k/big.bin")["parts"] == 3
    assert store.upload_file(small, "k/small.txt")["parts"] == 1

    client = s3_server.client()
    for path, key in ((big, "k/big.bin"), (small, "k/small.txt")):
        assert client.get_object(Bucket=bucket, Key=key)["Body"].read() == path.read_bytes()
    assert client.head_object(Bucket=bucket, Key="k/big.bin")["ETag"].endswith('-3"')

    # a file of a run folder is sent only while it is inside it: a link swapped in that
    # leads out is refused, and nothing is uploaded
    run = tmp_path / "run"
    run.mkdir()
    (run / "out.txt").symlink_to(small)
    with pytest.raises(S3Error, match="no longer a file inside the run folder"):
        store.upload_file(run / "out.txt", "k/leak.txt", root=run)
    assert "Contents" not in client.list_objects_v2(Bucket=bucket, Prefix="k/leak")


@pytest.fixture
async def s3_app(
    fakes: None, s3_server: S3Server, aws: None, tmp_path: Path
) -> AsyncIterator[tuple[FastAPI, httpx.AsyncClient, str]]:
    bucket = s3_server.bucket()
    settings = fake_settings(tmp_path, **s3_settings(s3_server, bucket, s3_remove_local=True))
    app = make_app(settings, await fake_catalog())
    async with app_client(app) as client:
        yield app, client, bucket


async def wait_for_log(client: httpx.AsyncClient, run_id: str, text: str) -> dict[str, Any]:
    """The run once it ended, whose system logs hold ``text`` from that moment on (the
    upload is done before the final state is written)."""
    for _ in range(1500):
        body: dict[str, Any] = (await client.get(f"{WES}/runs/{run_id}")).json()
        if body["state"] in ENDED:
            assert any(text in line for line in body["run_log"]["system_logs"]), body
            return body
        await asyncio.sleep(0.02)
    raise AssertionError(f"{run_id} did not end: {body}")


async def test_a_finished_run_is_uploaded_and_downloads_come_from_s3(
    s3_app: tuple[FastAPI, httpx.AsyncClient, str], s3_server: S3Server
) -> None:
    app, client, bucket = s3_app
    r = await client.post(f"{WES}/runs", **form({"sleep": 0, "tasks": 2}))
    run_id = r.json()["run_id"]
    body = await wait_for_log(client, run_id, "uploaded to")
    assert body["state"] == "COMPLETE"
    assert f"s3://{bucket}/runs/here/{run_id}/" in " ".join(body["run_log"]["system_logs"])

    s3 = s3_server.client()
    listed = s3.list_objects_v2(Bucket=bucket, Prefix=f"runs/here/{run_id}/")
    keys = {o["Key"].removeprefix(f"runs/here/{run_id}/") for o in listed["Contents"]}
    assert keys == {"logs/stdout", "logs/stderr", "logs/fake-tasks", "work/result.txt"}
    rundir = RunDir.for_run(app.state.settings.data_dir, run_id)
    for path in ("logs/stdout", "logs/stderr", "logs/fake-tasks"):  # logs stay here too
        key = f"runs/here/{run_id}/{path}"
        assert s3.get_object(Bucket=bucket, Key=key)["Body"].read() == (
            (rundir.root / path).read_bytes()
        )
    result = s3.get_object(Bucket=bucket, Key=f"runs/here/{run_id}/work/result.txt")
    assert result["Body"].read() == b"done\n"
    for _ in range(500):  # s3_remove_local: once the end is stored
        if not (rundir.root / "work" / "result.txt").exists():
            break
        await asyncio.sleep(0.02)
    else:
        raise AssertionError("the uploaded output is still here")
    assert (rundir.root / "logs" / "stdout").exists()  # logs stay
    manifest = json.loads((rundir.root / MANIFEST).read_text())
    assert manifest["files"]["work/result.txt"]["size"] == 5

    # a download is a redirect to a presigned URL that works without Spindle
    download = await client.get(f"{WES}/runs/{run_id}/files/work/result.txt")
    assert download.status_code == 307
    location = download.headers["location"]
    assert location.startswith(f"{s3_server.endpoint}/{bucket}/runs/here/{run_id}/work/")
    assert "X-Amz-Signature=" in location
    async with httpx.AsyncClient() as outside:
        fetched = await outside.get(location)
    assert (fetched.status_code, fetched.content) == (200, b"done\n")
    assert "result.txt" in fetched.headers["content-disposition"]

    # the listing shows the file where it is; the RunLog's outputs keep their WES shape
    files = (await client.get(f"{WES}/runs/{run_id}/files?group=outputs")).json()["files"]
    assert [(f["path"], f["stored"], f["size"]) for f in files] == [("work/result.txt", "s3", 5)]
    assert body["outputs"]["result"]["location"] == files[0]["url"]
    # a signed link to it redirects the same way
    link = (await client.get(f"{WES}/runs/{run_id}/links/work/result.txt")).json()["url"]
    shared = await client.get(link)
    assert shared.status_code == 307
    assert shared.headers["location"].startswith(s3_server.endpoint)


async def test_an_s3_input_is_staged_into_the_run(
    s3_app: tuple[FastAPI, httpx.AsyncClient, str], s3_server: S3Server
) -> None:
    app, client, bucket = s3_app
    data = os.urandom(1000)
    s3_server.client().put_object(Bucket=bucket, Key="in/sample 1.bin", Body=data)
    url = f"s3://{bucket}/in/sample 1.bin"
    r = await client.post(f"{WES}/runs", **form({"sleep": 0, "input": url}))
    assert r.status_code == 200, r.text
    run_id = r.json()["run_id"]
    body = await wait_for_log(client, run_id, "uploaded to")
    assert body["state"] == "COMPLETE"
    assert body["request"]["workflow_params"]["input"] == url  # as the client sent it
    rundir = RunDir.for_run(app.state.settings.data_dir, run_id)
    staged = rundir.attachments / "s3" / bucket / "in" / "sample 1.bin"
    assert staged.read_bytes() == data

    missing = await client.post(
        f"{WES}/runs", **form({"sleep": 0, "input": f"s3://{bucket}/in/none.bin"})
    )
    failed = await wait_for_log(client, missing.json()["run_id"], "could not be read")
    assert failed["state"] == "SYSTEM_ERROR"


async def test_a_failed_upload_is_said_and_the_run_keeps_its_state(
    fakes: None, s3_server: S3Server, aws: None, tmp_path: Path
) -> None:
    settings = s3_settings(s3_server, "spindle-no-such-bucket", s3_remove_local=True)
    app = make_app(fake_settings(tmp_path, **settings), await fake_catalog())
    async with app_client(app) as client:
        r = await client.post(f"{WES}/runs", **form({"sleep": 0}))
        run_id = r.json()["run_id"]
        body = await wait_for_log(client, run_id, "to S3 failed: NoSuchBucket")
        assert body["state"] == "COMPLETE"
        rundir = RunDir.for_run(app.state.settings.data_dir, run_id)
        assert (rundir.root / "work" / "result.txt").read_text() == "done\n"  # kept
        download = await client.get(f"{WES}/runs/{run_id}/files/work/result.txt")
        assert (download.status_code, download.content) == (200, b"done\n")


@pytest.mark.parametrize(
    "url",
    ["s3://", "s3://bucket-name/", "s3://Bad_Bucket/key", "s3://bucket-name/a/../b", "s3://b/k?x"],
)
async def test_a_malformed_s3_input_is_refused_at_submission(
    fakes: None, tmp_path: Path, url: str
) -> None:
    app = make_app(fake_settings(tmp_path), await fake_catalog(), worker=False)
    async with app_client(app) as client:
        r = await client.post(f"{WES}/runs", **form({"sleep": 0, "input": url}))
    assert (r.status_code, r.json()["status_code"]) == (400, 400), r.text
    assert "workflow_params" in r.json()["msg"]


SNAKEFILE = b"""\
rule all:
    input:
        "results/copy.txt",


rule copy:
    input:
        config["data"],
    output:
        "results/copy.txt",
    shell:
        "cp {input:q} {output:q}"
"""


@pytest.mark.engine
async def test_an_s3_input_reaches_a_snakemake_run(
    s3_server: S3Server, aws: None, settings: Settings, catalog: Catalog
) -> None:
    bucket = s3_server.bucket()
    s3_server.client().put_object(Bucket=bucket, Key="data/input.txt", Body=b"from S3\n")
    values = {**settings.model_dump(), **s3_settings(s3_server, "")}
    app = make_app(Settings(**values), catalog)
    async with app_client(app) as client:
        r = await client.post(
            f"{WES}/runs",
            data={
                "workflow_type": "SMK",
                "workflow_type_version": "9",
                "workflow_url": "Snakefile",
                "workflow_params": json.dumps({"data": f"s3://{bucket}/data/input.txt"}),
            },
            files=[("workflow_attachment", ("Snakefile", SNAKEFILE))],
        )
        assert r.status_code == 200, r.text
        run_id = r.json()["run_id"]
        for _ in range(1200):
            body = (await client.get(f"{WES}/runs/{run_id}")).json()
            if body["state"] in ENDED:
                break
            await asyncio.sleep(0.1)
        assert body["state"] == "COMPLETE", body["run_log"]
        copy = await client.get(f"{WES}/runs/{run_id}/files/work/results/copy.txt")
        assert copy.content == b"from S3\n"
