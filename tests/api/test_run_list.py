"""GET /runs filters as the web UI's run list does (Spindle's extension to ListRuns): state,
workflow type, tag, free text, run group, submission time and, for admins, owner; an unknown
query parameter is a 400 naming it; ``include_total`` adds the count of every match."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from spindle.config import Settings
from spindle.engines.registry import Catalog
from tests.api.conftest import WES, app_client, example_form, make_app

PASSWORD = "a long enough secret"
USERS = ("alice", "bob", "root")


def as_user(name: str) -> dict[str, str]:
    raw = f"{name}:{PASSWORD}".encode()
    return {"Authorization": "Basic " + base64.b64encode(raw).decode()}


@pytest.fixture
async def api(settings: Settings, catalog: Catalog) -> AsyncIterator[httpx.AsyncClient]:
    """Basic sign-in, no worker: submitted runs stay QUEUED until cancelled."""
    app = make_app(Settings(**{**settings.model_dump(), "auth": "basic"}), catalog, worker=False)
    async with app_client(app) as client:
        for name in USERS:
            await app.state.accounts.add_user(name, password=PASSWORD, admin=name == "root")
        yield client


async def submit(
    api: httpx.AsyncClient, user: str, language: str, tags: dict[str, str] | None = None
) -> str:
    data, files = example_form(language, "wordcount", tags=tags)
    r = await api.post(f"{WES}/runs", data=data, files=files, headers=as_user(user))
    assert r.status_code == 200, r.text
    run_id: str = r.json()["run_id"]
    return run_id


async def listed(api: httpx.AsyncClient, user: str, **params: Any) -> list[str]:
    r = await api.get(f"{WES}/runs", params=params, headers=as_user(user))
    assert r.status_code == 200, r.text
    return [run["run_id"] for run in r.json()["runs"]]


def refused(r: httpx.Response, status: int, msg: str) -> None:
    assert r.status_code == status, r.text
    assert r.json()["status_code"] == status
    assert r.json()["msg"].startswith(msg), r.text


async def test_the_run_list_filters_as_the_ui_does(api: httpx.AsyncClient) -> None:
    tagged = await submit(api, "alice", "cwl", tags={"batch": "7"})
    canceled = await submit(api, "alice", "cwl")
    assert (await api.post(f"{WES}/runs/{canceled}/cancel", headers=as_user("alice"))).is_success
    between = datetime.now(UTC).isoformat()
    bobs = await submit(api, "bob", "snakemake", tags={"batch": "8"})

    assert await listed(api, "alice") == [canceled, tagged]
    assert await listed(api, "alice", state="CANCELED") == [canceled]
    assert await listed(api, "alice", state="queued,canceled") == [canceled, tagged]
    assert await listed(api, "alice", state=["QUEUED", "CANCELED"]) == [canceled, tagged]
    assert await listed(api, "root", state="QUEUED") == [bobs, tagged]
    assert await listed(api, "root", workflow_type="SMK") == [bobs]
    assert await listed(api, "root", tag="batch") == [bobs, tagged]
    assert await listed(api, "root", tag="batch=7") == [tagged]
    assert await listed(api, "root", q=bobs[:13].upper()) == [bobs]
    assert await listed(api, "root", q="workflow.cwl") == [canceled, tagged]
    assert await listed(api, "root", submitted_after=between) == [bobs]
    assert await listed(api, "root", submitted_before=between) == [canceled, tagged]
    assert await listed(api, "root", submitted_after="2000-01-01") == [bobs, canceled, tagged]
    assert await listed(api, "root", submitted_before="2000-01-01T00:00:00+02:00") == []
    assert await listed(api, "root", sort="submitted", order="asc") == [tagged, canceled, bobs]
    # another's runs stay invisible, whatever the filter
    assert await listed(api, "bob", tag="batch=7") == []

    # owner: an admin's filter; anyone may name themselves
    assert await listed(api, "root", owner="bob") == [bobs]
    assert await listed(api, "root", owner="nobody") == []
    assert await listed(api, "bob", owner="bob") == [bobs]
    refused(
        await api.get(f"{WES}/runs", params={"owner": "bob"}, headers=as_user("alice")),
        403,
        "owner: only an admin",
    )

    # the optional total: every match, on every page; absent unless asked for
    page = (
        await api.get(
            f"{WES}/runs",
            params={"state": "QUEUED", "page_size": 1, "include_total": "true"},
            headers=as_user("root"),
        )
    ).json()
    assert (len(page["runs"]), page["total_count"]) == (1, 2)
    plain = (await api.get(f"{WES}/runs", headers=as_user("root"))).json()
    assert set(plain) == {"runs", "next_page_token"}
    assert plain["runs"][0] == {"run_id": bobs, "state": "QUEUED", "tags": {"batch": "8"}}

    # a filtered page's token is good for that filter only
    token = page["next_page_token"]
    second = await api.get(
        f"{WES}/runs", params={"state": "QUEUED", "page_token": token}, headers=as_user("root")
    )
    assert [r["run_id"] for r in second.json()["runs"]] == [tagged]
    refused(
        await api.get(f"{WES}/runs", params={"page_token": token}, headers=as_user("root")),
        400,
        "page_token:",
    )


BAD_PARAMETERS = [
    ({"status": "COMPLETE"}, "status: is not a ListRuns query parameter"),
    ({"state": "COMPLETE", "tags": "x"}, "tags: is not a ListRuns query parameter"),
    ({"state": "DONE"}, "state: 'DONE' is not a state"),
    ({"submitted_after": "yesterday"}, "submitted_after: 'yesterday' is not an ISO 8601"),
    ({"submitted_before": "2026-13-01"}, "submitted_before:"),
    ({"tag": "=x"}, "tag:"),
    ({"sort": "size"}, "sort:"),
    ({"page_size": "0"}, "page_size:"),
    ({"page_size": "1001"}, "page_size:"),
    ({"include_total": "maybe"}, "include_total:"),
]


async def test_a_bad_or_unknown_list_parameter_is_a_400_naming_it(
    api_no_worker: httpx.AsyncClient,
) -> None:
    for params, msg in BAD_PARAMETERS:
        refused(await api_no_worker.get(f"{WES}/runs", params=params), 400, msg)
