"""Bad input gets a clear 4xx ErrorResponse naming the field, and loses nothing: no run row,
no run folder."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from spindle.config import Settings
from spindle.engines.registry import Catalog
from tests.api.conftest import (
    WES,
    example_form,
    make_app,
    open_client,
    runs_on_disk,
    submit_example,
)


def _form(**changes: str | None) -> dict[str, str]:
    data, _ = example_form("cwl", "wordcount")
    for key, value in changes.items():
        if value is None:
            data.pop(key, None)
        else:
            data[key] = value
    return data


def _files(*extra: tuple[str, bytes]) -> list[tuple[str, tuple[str, bytes]]]:
    _, files = example_form("cwl", "wordcount")
    return files + [("workflow_attachment", item) for item in extra]


BAD_SUBMISSIONS: list[tuple[str, dict[str, Any], list[Any] | None, str]] = [
    ("missing type", _form(workflow_type=None), None, "workflow_type: is required"),
    ("empty type", _form(workflow_type=""), None, "workflow_type: is required"),
    ("unknown type", _form(workflow_type="XYZ"), None, "workflow_type: 'XYZ' is not supported"),
    (
        "missing version",
        _form(workflow_type_version=None),
        None,
        "workflow_type_version: is required",
    ),
    ("unknown version", _form(workflow_type_version="v9.9"), None, "workflow_type_version: 'v9.9'"),
    ("missing url", _form(workflow_url=None), None, "workflow_url: is required"),
    ("params not json", _form(workflow_params="{nope"), None, "workflow_params: is not valid JSON"),
    ("params a list", _form(workflow_params="[1]"), None, "workflow_params: must be a JSON object"),
    ("tags not json", _form(tags="{"), None, "tags: is not valid JSON"),
    ("tag not a string", _form(tags='{"n": 1}'), None, "tags: value of 'n' must be a string"),
    (
        "engine params not json",
        _form(workflow_engine_parameters="x"),
        None,
        "workflow_engine_parameters: is not valid JSON",
    ),
    (
        "engine param not a string",
        _form(workflow_engine_parameters='{"parallel": [1]}'),
        None,
        "workflow_engine_parameters: value of 'parallel' must be a string, a number or a boolean",
    ),
    (
        "unknown engine param",
        _form(workflow_engine_parameters='{"turbo": "yes"}'),
        None,
        "workflow_engine_parameters: 'turbo' is not a parameter",
    ),
    (
        "unknown compute env",
        _form(workflow_engine_parameters='{"compute_env": "mars"}'),
        None,
        "compute_env 'mars' is not configured",
    ),
    (
        "unknown engine",
        _form(workflow_engine="toil"),
        None,
        "workflow_engine: 'toil' does not run CWL",
    ),
    (
        "engine version without engine",
        _form(workflow_engine_version="1"),
        None,
        "workflow_engine_version: is given without workflow_engine",
    ),
    (
        "wrong engine version",
        _form(workflow_engine="cwltool", workflow_engine_version="0.1"),
        None,
        "workflow_engine_version: '0.1' is not installed",
    ),
    (
        "url names no attachment",
        _form(workflow_url="other.cwl"),
        None,
        "workflow_url: 'other.cwl' names no workflow_attachment",
    ),
    (
        "absolute url path",
        _form(workflow_url="/etc/passwd"),
        None,
        "workflow_url: '/etc/passwd' must be a path relative",
    ),
    (
        "file url",
        _form(workflow_url="file:///etc/passwd"),
        None,
        "workflow_url: 'file:///etc/passwd'",
    ),
    ("dotdot url", _form(workflow_url="../x.cwl"), None, "workflow_url: '../x.cwl' contains '..'"),
    (
        "dotdot attachment",
        _form(),
        _files(("../evil.txt", b"x")),
        "workflow_attachment: '../evil.txt' contains '..'",
    ),
    (
        "absolute attachment",
        _form(),
        _files(("/etc/evil.txt", b"x")),
        "workflow_attachment: '/etc/evil.txt' is an absolute path",
    ),
    (
        "unknown field",
        {**_form(), "workflow_colour": "red"},
        None,
        "workflow_colour: is not a RunWorkflow form field",
    ),
]


@pytest.mark.parametrize(
    ("data", "files", "message"),
    [pytest.param(d, f, m, id=i) for i, d, f, m in BAD_SUBMISSIONS],
)
async def test_bad_submission_is_400_naming_the_field_and_leaves_nothing(
    api_no_worker: httpx.AsyncClient,
    settings: Settings,
    data: dict[str, str],
    files: list[Any] | None,
    message: str,
) -> None:
    r = await api_no_worker.post(f"{WES}/runs", data=data, files=files or _files())
    assert r.status_code == 400, r.text
    body = r.json()
    assert body["status_code"] == 400
    assert message in body["msg"]
    assert "Traceback" not in r.text
    assert (await api_no_worker.get(f"{WES}/runs")).json()["runs"] == []
    assert runs_on_disk(settings) == []


async def test_attachment_name_with_nul_is_400(
    api_no_worker: httpx.AsyncClient, settings: Settings
) -> None:
    """Built by hand: httpx would percent-encode the NUL byte in a filename."""
    boundary = b"spindleboundary"
    parts = [
        b'Content-Disposition: form-data; name="%s"\r\n\r\n%s' % (k.encode(), v.encode())
        for k, v in _form().items()
    ]
    parts.append(
        b'Content-Disposition: form-data; name="workflow_attachment"; filename="a\x00b"\r\n'
        b"Content-Type: application/octet-stream\r\n\r\nx"
    )
    body = b"".join(b"--" + boundary + b"\r\n" + p + b"\r\n" for p in parts)
    body += b"--" + boundary + b"--\r\n"
    r = await api_no_worker.post(
        f"{WES}/runs",
        content=body,
        headers={"content-type": "multipart/form-data; boundary=spindleboundary"},
    )
    assert r.status_code == 400, r.text
    assert r.json()["msg"].startswith("workflow_attachment:")
    assert runs_on_disk(settings) == []


async def test_not_multipart_is_400(api_no_worker: httpx.AsyncClient) -> None:
    """WES takes multipart/form-data only: JSON and urlencoded forms are a 400 naming the
    request body (a urlencoded form is what another site's page can make a browser send)."""
    r = await api_no_worker.post(f"{WES}/runs", json={"workflow_type": "CWL"})
    assert r.status_code == 400
    assert r.json()["msg"].startswith("request body: must be multipart/form-data")
    assert "application/json" in r.json()["msg"]
    r = await api_no_worker.post(f"{WES}/runs", data=_form())
    assert r.status_code == 400
    assert "application/x-www-form-urlencoded" in r.json()["msg"]


async def test_upload_over_the_limit_is_413_and_leaves_nothing(
    catalog: Catalog,
    settings: Settings,
) -> None:

    small = settings.model_copy(update={"max_upload_bytes": 1000})
    async for client in open_client(make_app(small, catalog, worker=False)):
        r = await client.post(f"{WES}/runs", data=_form(), files=_files(("big.bin", b"x" * 5000)))
        assert r.status_code == 413, r.text
        assert r.json()["status_code"] == 413
        assert "workflow_attachment" in r.json()["msg"]
        assert runs_on_disk(small) == []
        assert (await client.get(f"{WES}/runs")).json()["runs"] == []


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [
        ("GET", "/runs/nope", 404),
        ("GET", "/runs/nope/status", 404),
        ("POST", "/runs/nope/cancel", 404),
        ("GET", "/runs/nope/tasks", 404),
        ("GET", "/runs/nope/tasks/1", 404),
        ("GET", "/runs/nope/logs/stdout", 404),
        ("GET", "/nowhere", 404),
        ("DELETE", "/runs", 405),
        ("PUT", "/service-info", 405),
        ("GET", "/runs?page_size=0", 400),
        ("GET", "/runs?page_size=100000", 400),
        ("GET", "/runs?page_size=abc", 400),
        ("GET", "/runs?page_token=garbage", 400),
    ],
)
async def test_error_answers_are_error_responses(
    api_no_worker: httpx.AsyncClient, method: str, path: str, status: int
) -> None:
    r = await api_no_worker.request(method, f"{WES}{path}")
    assert r.status_code == status
    assert r.json()["status_code"] == status
    assert r.json()["msg"]
    if "page_" in path:
        assert path.split("?")[1].split("=")[0] in r.json()["msg"]


async def test_unknown_task_of_known_run_is_404(api_no_worker: httpx.AsyncClient) -> None:
    run_id = await submit_example(api_no_worker, "cwl", "wordcount")
    r = await api_no_worker.get(f"{WES}/runs/{run_id}/tasks/nope")
    assert r.status_code == 404
    assert "task 'nope'" in r.json()["msg"]


async def test_download_refuses_paths_outside_the_run(api_no_worker: httpx.AsyncClient) -> None:
    run_id = await submit_example(api_no_worker, "cwl", "wordcount")
    ok = await api_no_worker.get(f"{WES}/runs/{run_id}/files/attachments/poem.txt")
    assert ok.status_code == 200
    for bad in ("..%2F..%2Fspindle.db", "attachments/..%2F..%2F..%2Fspindle.db"):
        r = await api_no_worker.get(f"{WES}/runs/{run_id}/files/{bad}")
        assert r.status_code in (400, 404), r.text
        assert "spindle.db" not in r.text or r.json()["status_code"] in (400, 404)


async def test_run_list_pages_are_stable_and_complete(api_no_worker: httpx.AsyncClient) -> None:
    ids = [await submit_example(api_no_worker, "cwl", "wordcount") for _ in range(5)]
    seen: list[str] = []
    token = ""
    pages = 0
    while True:
        r = await api_no_worker.get(f"{WES}/runs", params={"page_size": 2, "page_token": token})
        body = r.json()
        seen += [run["run_id"] for run in body["runs"]]
        assert all(run["tags"] == {} for run in body["runs"])
        pages += 1
        token = body["next_page_token"]
        if not token:
            break
        # a run submitted mid-listing does not shift later pages
        if pages == 1:
            await submit_example(api_no_worker, "cwl", "wordcount")
    assert seen == list(reversed(ids))
    assert pages == 3


async def test_submitted_request_is_echoed(api_no_worker: httpx.AsyncClient) -> None:
    data, files = example_form("cwl", "wordcount", tags={"batch": "7"})
    run_id = (await api_no_worker.post(f"{WES}/runs", data=data, files=files)).json()["run_id"]
    log = (await api_no_worker.get(f"{WES}/runs/{run_id}")).json()
    assert log["request"]["workflow_params"] == json.loads(data["workflow_params"])
    assert log["request"]["tags"] == {"batch": "7"}
    assert log["state"] == "QUEUED"
