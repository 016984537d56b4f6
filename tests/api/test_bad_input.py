"""Bad input that used to answer 500 (issue 11): each is a 4xx ErrorResponse naming the field
now, and a refused submission leaves no run behind. No engine runs: the app has no worker."""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from spindle import limits
from spindle.config import Settings
from spindle.domain import LogSpan, RunRequest, State, Task
from spindle.engines.registry import Catalog
from spindle.runs import store
from spindle.runs.service import RunService
from tests.api.conftest import (
    WES,
    example_form,
    make_app,
    open_client,
    runs_on_disk,
    submit_example,
)
from tests.runs import local_user_id
from tests.support import REPO
from tests.web.conftest import basic_site

pytestmark = pytest.mark.usefixtures("snakemake_exe", "cwltool_exe")


@pytest.fixture
def app(settings: Settings, catalog: Catalog) -> FastAPI:
    """The app without a worker: nothing runs, submitted runs stay QUEUED."""
    return make_app(settings, catalog, worker=False)


@pytest.fixture
async def client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    async for c in open_client(app):
        yield c


CONTROLS = {
    "NUL": "\x00",
    "ESC": "\x1b[31m",
    "RLO": "\u202e",
    "LRE": "\u202a",
    "PDI": "\u2069",
    "FSI": "\u2068",
}


def nested(depth: int) -> dict[str, Any]:
    """``{"a": {"a": ... 1}}``, ``depth`` objects deep."""
    value: Any = 1
    for _ in range(depth - 1):
        value = {"a": value}
    return {"a": value}


def nested_json(depth: int) -> str:
    """The JSON text of :func:`nested` (built as text: json.dumps itself stops at ~1,000)."""
    return '{"a":' * depth + "1" + "}" * depth


def attachment_form(
    *extra: str, language: str = "cwl"
) -> tuple[dict[str, str], list[tuple[str, tuple[str, bytes]]]]:
    data, files = example_form(language, "wordcount")
    return data, files + [("workflow_attachment", (name, b"x")) for name in extra]


def assert_error(r: httpx.Response, status: int, field: str) -> str:
    assert r.status_code == status, r.text
    body = r.json()
    assert body["status_code"] == status
    msg: str = body["msg"]
    assert msg.startswith(f"{field}:"), msg
    return msg


async def assert_refused(
    client: httpx.AsyncClient,
    settings: Settings,
    data: dict[str, str],
    files: list[Any],
    field: str,
    status: int = 400,
) -> str:
    msg = assert_error(await client.post(f"{WES}/runs", data=data, files=files), status, field)
    assert (await client.get(f"{WES}/runs")).json()["runs"] == []
    assert runs_on_disk(settings) == []
    return msg


# --- attachments -----------------------------------------------------------------------------

LONG = "n" * 300


@pytest.mark.parametrize(
    ("names", "problem"),
    [
        pytest.param(
            ("a", "a/b"), "'a' is attached as a file and as the folder of 'a/b'", id="a+a/b"
        ),
        pytest.param(
            ("a/b/c", "a/b"), "'a/b' is attached as a file and as the folder", id="a/b/c+a/b"
        ),
        pytest.param((LONG,), "a file or folder name is longer than 255 bytes", id="300 chars"),
        pytest.param((f"d/{LONG}/f",), "longer than 255 bytes", id="300-char folder"),
        pytest.param(("é" * 130,), "longer than 255 bytes", id="260 bytes of UTF-8"),
        pytest.param(("d/" * 33 + "f",), "nested in 33 folders; at most 32", id="33 folders"),
        pytest.param(("abcdefgh/" * 114 + "f",), "longer than 1024 bytes", id="1027-byte path"),
        *(
            pytest.param((f"x{c}y.txt",), "must not hold control characters", id=name)
            for name, c in CONTROLS.items()
            if c != "\x00"  # (a NUL in a file name: test_errors.py)
        ),
    ],
)
async def test_bad_attachment_names_are_400(
    client: httpx.AsyncClient, settings: Settings, names: tuple[str, ...], problem: str
) -> None:
    data, files = attachment_form(*names)
    msg = await assert_refused(client, settings, data, files, "workflow_attachment")
    assert problem in msg


async def test_attachment_names_at_the_limits_are_accepted(
    client: httpx.AsyncClient,
) -> None:
    names = ("n" * 255, "d/" * 32 + "f", "a/b", "a/c", "ü" * 127)
    data, files = attachment_form(*names)
    r = await client.post(f"{WES}/runs", data=data, files=files)
    assert r.status_code == 200, r.text


# --- workflow_params nesting -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("language", "depth"),
    [("cwl", 5000), ("cwl", 900), ("snakemake", 900), ("snakemake", limits.MAX_PARAMS_DEPTH + 1)],
)
async def test_params_nested_too_deep_are_400(
    client: httpx.AsyncClient, settings: Settings, language: str, depth: int
) -> None:
    data, files = example_form(language, "wordcount")
    data["workflow_params"] = nested_json(depth)
    msg = await assert_refused(client, settings, data, files, "workflow_params")
    assert f"at most {limits.MAX_PARAMS_DEPTH} levels" in msg


@pytest.mark.parametrize("language", ["cwl", "snakemake"])
async def test_params_at_the_depth_limit_are_accepted_and_read_back(
    client: httpx.AsyncClient, language: str
) -> None:
    params = {**nested(limits.MAX_PARAMS_DEPTH - 1), "n": 1}
    run_id = await submit_example(client, language, "wordcount", params=params)
    r = await client.get(f"{WES}/runs/{run_id}")
    assert r.status_code == 200, r.text
    assert r.json()["request"]["workflow_params"] == params


async def insert_run(
    app: FastAPI, *, params: dict[str, Any] | None = None, outputs: Any = None
) -> str:
    """A run written straight into the store, as a run stored before today's checks was."""
    service: RunService = app.state.service
    run_id = str(uuid.uuid4())
    request = RunRequest(
        workflow_type="SMK",
        workflow_type_version="9",
        workflow_url="Snakefile",
        workflow_params=params or {},
        tags={},
    )
    async with service.db.begin() as conn:
        await store.insert_run(
            conn,
            run_id=run_id,
            request=request,
            engine="snakemake",
            compute_env="local",
            owner_id=await local_user_id(conn),
        )
        if outputs is not None:
            await store.update_run(conn, run_id, outputs=outputs)
    service.rundir(run_id).create()
    return run_id


async def test_a_stored_run_nested_too_deep_still_reads_back(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    """A 900-deep Snakemake run stored before the limit: GET /runs/{id} answered 500."""
    run_id = await insert_run(app, params=nested(900), outputs={"o": nested(900)})
    r = await client.get(f"{WES}/runs/{run_id}")
    assert r.status_code == 200, r.text
    body = r.json()
    shown = body["request"]["workflow_params"]
    for _ in range(limits.MAX_PARAMS_DEPTH):
        shown = shown["a"]
    assert "nested deeper than" in shown
    assert "nested deeper than" in json.dumps(body["outputs"])


# --- log offsets -----------------------------------------------------------------------------


@pytest.fixture
async def logged_run(app: FastAPI, client: httpx.AsyncClient) -> str:
    """A run with a stdout log and a task whose share of it is bytes 6 to 11 (written once
    the client has the app started)."""
    run_id = await insert_run(app)
    service: RunService = app.state.service
    service.rundir(run_id).stdout.write_bytes(b"hello world\n")
    async with service.db.begin() as conn:
        await store.save_tasks(
            conn,
            run_id,
            [Task(id="1", name="t", state=State.COMPLETE, stdout=LogSpan("logs/stdout", 6, 11))],
        )
    return run_id


@pytest.mark.parametrize("path", ["logs/stdout", "tasks/1/logs/stdout"])
@pytest.mark.parametrize("offset", ["9223372036854775807", "9223372036854775808"])
async def test_log_offsets_out_of_range_are_400(
    client: httpx.AsyncClient, logged_run: str, path: str, offset: str
) -> None:
    r = await client.get(f"{WES}/runs/{logged_run}/{path}", params={"offset": offset})
    assert_error(r, 400, "offset")


@pytest.mark.parametrize(
    ("path", "offset", "data"),
    [
        ("logs/stdout", "6", b"world\n"),
        ("logs/stdout", str(limits.MAX_OFFSET), b""),
        ("tasks/1/logs/stdout", "2", b"rld"),
        ("tasks/1/logs/stdout", str(limits.MAX_OFFSET), b""),
    ],
)
async def test_log_offsets_past_the_end_read_nothing(
    client: httpx.AsyncClient, logged_run: str, path: str, offset: str, data: bytes
) -> None:
    r = await client.get(f"{WES}/runs/{logged_run}/{path}", params={"offset": offset})
    assert r.status_code == 200, r.text
    assert r.content == data
    assert int(r.headers["X-Spindle-Next-Offset"]) == int(offset) + len(data)


# --- event positions -------------------------------------------------------------------------


@pytest.mark.parametrize("stream", ["events", "runs/{run}/events"])
@pytest.mark.parametrize(
    ("params", "headers", "field"),
    [
        pytest.param({}, {"Last-Event-ID": b"\xb2"}, "Last-Event-ID", id="byte B2"),
        pytest.param({}, {"Last-Event-ID": "9" * 5000}, "Last-Event-ID", id="5000 digits"),
        pytest.param({}, {"Last-Event-ID": "9223372036854775808"}, "Last-Event-ID", id="2^63"),
        pytest.param({"after": "9223372036854775808"}, {}, "after", id="after 2^63"),
    ],
)
async def test_event_positions_out_of_range_are_400(
    app: FastAPI,
    client: httpx.AsyncClient,
    stream: str,
    params: dict[str, str],
    headers: dict[str, Any],
    field: str,
) -> None:
    run_id = await insert_run(app)
    r = await client.get(f"{WES}/{stream.format(run=run_id)}", params=params, headers=headers)
    msg = assert_error(r, 400, field)
    assert len(msg) < 300


# --- credentials and token ids ---------------------------------------------------------------


async def test_bad_credentials_and_token_ids_are_4xx(settings: Settings, catalog: Catalog) -> None:
    """In basic mode (one app for both: its users' passwords take seconds to hash)."""
    async with basic_site(settings, catalog) as site:
        r = await site.client.get(f"{WES}/me", headers={"Authorization": b"Basic \xff\xfe"})
        assert r.status_code == 401, r.text
        assert r.json() == {
            "msg": "the Basic credentials are not base64 of UTF-8 'user:password'",
            "status_code": 401,
        }
        alice = {"Authorization": "Basic " + base64.b64encode(b"alice:alice's secret").decode()}
        for token_id in ("200162502140582985728", "9223372036854775808", "-1"):
            r = await site.client.post(f"{WES}/tokens/{token_id}/revoke", headers=alice)
            assert_error(r, 400, "token_id")


# --- control characters and tags -------------------------------------------------------------


@pytest.mark.parametrize("field", ["name", "description"])
async def test_run_group_text_with_control_characters_is_400(
    client: httpx.AsyncClient, field: str
) -> None:
    made = await client.post(f"{WES}/run-groups", json={"name": "batch"})
    group_id = made.json()["id"]
    for c in CONTROLS.values():  # (one app for all: each costs a start-up)
        body = {"name": "batch", field: f"flow{c}cell"}
        assert_error(await client.post(f"{WES}/run-groups", json=body), 400, field)
        r = await client.patch(f"{WES}/run-groups/{group_id}", json={field: f"x{c}"})
        assert_error(r, 400, field)
    assert (await client.get(f"{WES}/run-groups/{group_id}")).json()["name"] == "batch"
    assert len((await client.get(f"{WES}/run-groups")).json()["run_groups"]) == 1


async def test_run_group_description_keeps_its_lines(client: httpx.AsyncClient) -> None:
    body = {"name": "batch", "description": "line one\r\n\tline two\n"}
    r = await client.post(f"{WES}/run-groups", json=body)
    assert r.status_code == 200, r.text
    assert r.json()["description"] == body["description"]


BAD_TAGS = [
    pytest.param({f"t{i}": "v" for i in range(limits.MAX_TAGS + 1)}, "at most 100", id="101 tags"),
    pytest.param({f"t{i}": "v" for i in range(30_000)}, "has 30000 tags", id="30000 tags"),
    pytest.param({"k" * (limits.MAX_TAG_KEY + 1): "v"}, "1 to 255 characters", id="long key"),
    pytest.param({"": "v"}, "1 to 255 characters", id="empty key"),
    pytest.param({"k": "v" * (limits.MAX_TAG_VALUE + 1)}, "longer than 1024", id="long value"),
]


@pytest.mark.parametrize(("tags", "problem"), BAD_TAGS)
async def test_bad_tags_are_400(
    client: httpx.AsyncClient, settings: Settings, tags: dict[str, str], problem: str
) -> None:
    data, files = example_form("cwl", "wordcount", tags=tags)
    msg = await assert_refused(client, settings, data, files, "tags")
    assert problem in msg


async def test_tags_with_control_characters_are_400(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    for c in CONTROLS.values():  # (one app for all: each costs a start-up)
        for tags, problem in (({f"k{c}": "v"}, "key"), ({"k": f"v{c}"}, "must not hold control")):
            data, files = example_form("cwl", "wordcount", tags=tags)
            msg = await assert_refused(client, settings, data, files, "tags")
            assert problem in msg


async def test_tags_at_the_limits_are_accepted(client: httpx.AsyncClient) -> None:
    tags = {f"t{i}": "v" for i in range(limits.MAX_TAGS - 1)}
    tags["k" * limits.MAX_TAG_KEY] = "v" * limits.MAX_TAG_VALUE
    run_id = await submit_example(client, "cwl", "wordcount", tags=tags)
    assert (await client.get(f"{WES}/runs/{run_id}")).json()["request"]["tags"] == tags


@pytest.mark.parametrize("field", ["workflow_url", "run_group_id"])
async def test_other_fields_with_control_characters_are_400(
    client: httpx.AsyncClient, settings: Settings, field: str
) -> None:
    for c in CONTROLS.values():
        data, files = example_form("cwl", "wordcount")
        data[field] = f"https://example.org/x{c}.cwl" if field == "workflow_url" else f"g{c}"
        msg = await assert_refused(client, settings, data, files, field)
        assert "control characters" in msg


async def test_bad_input_on_each_database(
    catalog: Catalog, settings: Settings, database_url: str
) -> None:
    """Where the database itself refuses the value (a NUL in PostgreSQL text, an id past
    BIGINT), the check comes first."""
    on_db = settings.model_copy(update={"database_url": database_url})
    async for client in open_client(make_app(on_db, catalog, worker=False, migrate=False)):
        for field, value in [
            ("tags", json.dumps({"k": "v\x00"})),
            ("tags", json.dumps({"k\x00": "v"})),
            ("workflow_url", "https://example.org/\x00.cwl"),
            ("run_group_id", "g\x00"),
        ]:
            data, files = example_form("cwl", "wordcount")
            data[field] = value
            await assert_refused(client, on_db, data, files, field)
        r = await client.post(f"{WES}/run-groups", json={"name": "a\x00b"})
        assert_error(r, 400, "name")
        r = await client.get(f"{WES}/events", params={"after": str(limits.MAX_ID + 1)})
        assert_error(r, 400, "after")
        r = await client.get(f"{WES}/events", headers={"Last-Event-ID": str(limits.MAX_ID + 1)})
        assert_error(r, 400, "Last-Event-ID")
        # a NUL in an id or a search, which PostgreSQL refused with an error
        for path in ("/runs/a%00b", "/runs/a%00b/tasks/1", "/run-groups/a%00b"):
            assert_error(await client.get(f"{WES}{path}"), 400, "path")
        assert_error(await client.get(f"{WES}/run-groups", params={"q": "a\x00"}), 400, "q")
        page = await client.get("/runs/a%00b")
        assert page.status_code == 400
        assert "NUL" in page.text
        assert (await client.get("/runs", params={"q": "a\x00"})).status_code == 400


# --- sizes name the field --------------------------------------------------------------------


@pytest.mark.parametrize("field", ["workflow_params", "tags", "workflow_url"])
async def test_a_text_field_over_its_size_is_413_naming_it(
    client: httpx.AsyncClient, settings: Settings, field: str
) -> None:
    data, files = example_form("cwl", "wordcount")
    data[field] = '{"k": "' + "x" * limits.MAX_FIELD_BYTES + '"}'
    msg = await assert_refused(client, settings, data, files, field, status=413)
    assert "larger than 1024 KiB" in msg


def test_every_limit_is_documented() -> None:
    """docs/security.md's "Input limits" names each constant of spindle.limits."""
    section = (REPO / "docs" / "security.md").read_text().split("## Input limits")[1]
    names = [n for n in vars(limits) if n.startswith("MAX_")]
    assert names
    assert [n for n in names if n not in section] == []
