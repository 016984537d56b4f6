"""The run group extension over HTTP (in process, the real app and database): its shapes,
every refusal as a WES ErrorResponse naming the field, runs joining, leaving and being
cancelled with their group, and isolation between users on every database.

Without a worker the runs stay QUEUED, which is what moving runs and counting them needs;
the limits themselves are the scheduler's tests (tests/scheduler/)."""

from __future__ import annotations

import base64
import json
from typing import Any

import httpx
import pytest

from spindle.config import Settings
from spindle.engines.registry import Catalog
from spindle.models import groups as models
from spindle.runs import groups as service
from tests.api.conftest import WES, app_client, example_form, make_app
from tests.api.test_contract import check

GROUPS = f"{WES}/run-groups"
ALL_STATES = {
    "UNKNOWN", "QUEUED", "INITIALIZING", "RUNNING", "PAUSED", "COMPLETE", "EXECUTOR_ERROR",
    "SYSTEM_ERROR", "CANCELED", "CANCELING", "PREEMPTED",
}  # fmt: skip


def ok(response: httpx.Response) -> Any:
    assert response.status_code == 200, response.text
    return response.json()


def refused(response: httpx.Response, status: int, *fragments: str) -> str:
    """A WES ErrorResponse with ``status`` whose msg holds every fragment."""
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"msg", "status_code"}, body
    assert body["status_code"] == status
    for fragment in fragments:
        assert fragment in body["msg"], (fragment, body["msg"])
    msg: str = body["msg"]
    return msg


async def create(api: httpx.AsyncClient, headers: dict[str, str] | None = None, **body: Any) -> Any:
    return ok(await api.post(GROUPS, json=body, headers=headers))


async def submit(
    api: httpx.AsyncClient,
    *,
    group: str | None = None,
    tags: dict[str, str] | None = None,
    engine_parameters: dict[str, str] | None = None,
    headers: dict[str, str] | None = None,
) -> httpx.Response:
    data, files = example_form("cwl", "wordcount", tags=tags, engine_parameters=engine_parameters)
    if group is not None:
        data["run_group_id"] = group
    return await api.post(f"{WES}/runs", data=data, files=files, headers=headers)


async def submitted(api: httpx.AsyncClient, **kw: Any) -> str:
    run_id: str = ok(await submit(api, **kw))["run_id"]
    return run_id


def test_model_bounds_are_the_services() -> None:
    """The models repeat the service's bounds (so the client need not import it)."""
    assert models.MAX_NAME == service.MAX_NAME
    assert models.MAX_DESCRIPTION == service.MAX_DESCRIPTION
    assert models.MAX_LIMIT == service.MAX_LIMIT
    assert models.MAX_DURATION_MINUTES == service.MAX_DURATION_MINUTES


# --- create, read, update, delete ------------------------------------------------------------


async def test_create_get_update_delete(api_no_worker: httpx.AsyncClient) -> None:
    api = api_no_worker
    group = await create(
        api, name="  batch 7 ", description="sequencing run 7", max_runs=2, max_cpus=8,
        max_duration=90.5, compute_env="local",
    )  # fmt: skip
    assert group["name"] == "batch 7"
    assert group["description"] == "sequencing run 7"
    assert (group["max_runs"], group["max_cpus"], group["max_duration"]) == (2, 8, 90.5)
    assert group["compute_env"] == "local"
    assert group["run_counts"] == dict.fromkeys(ALL_STATES, 0)
    assert group["usage"] == {"running": 0, "cpus_in_use": 0}
    assert group["created_at"].endswith("Z")
    assert group["created_at"] == group["updated_at"]
    assert isinstance(group["owner_id"], int)

    got = ok(await api.get(f"{GROUPS}/{group['id']}"))
    assert got == group

    # only what is sent changes; null clears a limit
    patched = ok(
        await api.patch(
            f"{GROUPS}/{group['id']}", json={"max_runs": None, "max_cpus": 4, "description": ""}
        )
    )
    assert (patched["max_runs"], patched["max_cpus"], patched["max_duration"]) == (None, 4, 90.5)
    assert (patched["name"], patched["description"]) == ("batch 7", "")
    assert patched["updated_at"] >= group["updated_at"]
    cleared = ok(
        await api.patch(
            f"{GROUPS}/{group['id']}",
            json={"max_cpus": None, "max_duration": None, "compute_env": None, "name": "b7"},
        )
    )
    assert (cleared["max_cpus"], cleared["max_duration"], cleared["compute_env"]) == (
        None, None, None,
    )  # fmt: skip
    assert cleared["name"] == "b7"
    assert ok(await api.patch(f"{GROUPS}/{group['id']}", json={}))["name"] == "b7"

    deleted = ok(await api.delete(f"{GROUPS}/{group['id']}"))
    assert deleted == {"group_id": group["id"], "detached_runs": 0}
    refused(await api.get(f"{GROUPS}/{group['id']}"), 404, f"run group {group['id']!r}")


async def test_list_pages_searches_and_sorts(api_no_worker: httpx.AsyncClient) -> None:
    api = api_no_worker
    ids = [(await create(api, name=name))["id"] for name in ("beta", "alpha", "gamma")]

    first = ok(await api.get(GROUPS, params={"page_size": 2}))
    assert [g["id"] for g in first["run_groups"]] == [ids[2], ids[1]]  # newest first
    assert first["next_page_token"]
    second = ok(
        await api.get(GROUPS, params={"page_size": 2, "page_token": first["next_page_token"]})
    )
    assert [g["id"] for g in second["run_groups"]] == [ids[0]]
    assert second["next_page_token"] == ""

    by_name = ok(await api.get(GROUPS, params={"sort": "name", "order": "asc"}))
    assert [g["name"] for g in by_name["run_groups"]] == ["alpha", "beta", "gamma"]
    found = ok(await api.get(GROUPS, params={"q": "AMM"}))
    assert [g["id"] for g in found["run_groups"]] == [ids[2]]
    assert ok(await api.get(GROUPS, params={"q": "nothing like it"})) == {
        "run_groups": [],
        "next_page_token": "",
    }


# --- refusals ----------------------------------------------------------------------------------

BAD_BODIES: list[tuple[str, str, str]] = [
    ("not JSON", "{nope", "request body: is not valid JSON"),
    ("not an object", "[1]", "request body: Input should be a valid dictionary"),
    ("empty", "", "request body: Field required"),
    ("no name", '{"max_runs": 1}', "name: Field required"),
    ("empty name", '{"name": ""}', "name: String should have at least 1 character"),
    ("blank name", '{"name": "   "}', "name: is required"),
    ("long name", json.dumps({"name": "x" * 256}), "name: String should have at most 255"),
    ("unknown field", '{"name": "a", "max_jobs": 3}', "max_jobs: Extra inputs are not permitted"),
    ("max_runs 0", '{"name": "a", "max_runs": 0}', "max_runs: Input should be greater than or"),
    ("max_runs < 0", '{"name": "a", "max_runs": -2}', "max_runs: Input should be greater than or"),
    ("max_runs text", '{"name": "a", "max_runs": "5"}', "max_runs: Input should be a valid int"),
    ("max_runs 1.5", '{"name": "a", "max_runs": 1.5}', "max_runs: Input should be a valid int"),
    ("max_runs true", '{"name": "a", "max_runs": true}', "max_runs: Input should be a valid int"),
    ("max_runs huge", '{"name": "a", "max_runs": 1000001}', "max_runs: Input should be less"),
    ("max_cpus 0", '{"name": "a", "max_cpus": 0}', "max_cpus: Input should be greater than or"),
    ("max_cpus text", '{"name": "a", "max_cpus": "x"}', "max_cpus: Input should be a valid int"),
    ("duration 0", '{"name": "a", "max_duration": 0}', "max_duration: Input should be greater"),
    ("duration < 0", '{"name": "a", "max_duration": -1}', "max_duration: Input should be greater"),
    ("duration text", '{"name": "a", "max_duration": "1"}', "max_duration: Input should be a"),
    ("duration < 1 s", '{"name": "a", "max_duration": 0.001}', "max_duration: must be at least"),
    ("duration > 1 year", '{"name": "a", "max_duration": 1e9}', "max_duration: Input should be"),
    ("unknown env", '{"name": "a", "compute_env": "mars"}', "compute_env: 'mars' is not config"),
    ("description list", '{"name": "a", "description": []}', "description: Input should be a"),
]


@pytest.mark.parametrize(
    ("body", "problem"), [(b, p) for _, b, p in BAD_BODIES], ids=[i for i, _, _ in BAD_BODIES]
)
async def test_bad_create_is_a_400_naming_the_field(
    api_no_worker: httpx.AsyncClient, body: str, problem: str
) -> None:
    r = await api_no_worker.post(GROUPS, content=body, headers={"Content-Type": "application/json"})
    assert refused(r, 400, problem).startswith(problem.split(":")[0] + ":")
    assert ok(await api_no_worker.get(GROUPS))["run_groups"] == []  # nothing was created


async def test_bad_update_is_a_400_and_changes_nothing(api_no_worker: httpx.AsyncClient) -> None:
    api = api_no_worker
    group = await create(api, name="g", max_runs=3)
    url = f"{GROUPS}/{group['id']}"
    for body, problem in [
        ({"max_runs": 0}, "max_runs: Input should be greater than or equal to 1"),
        ({"max_duration": 0}, "max_duration: Input should be greater than 0"),
        ({"max_cpus": "4"}, "max_cpus: Input should be a valid integer"),
        ({"name": None}, "name: is required"),
        ({"owner_id": 7}, "owner_id: Extra inputs are not permitted"),
        ({"compute_env": "mars"}, "compute_env: 'mars' is not configured"),
    ]:
        refused(await api.patch(url, json=body), 400, problem)
    refused(
        await api.patch(url, content="{", headers={"Content-Type": "application/json"}),
        400,
        "request body: is not valid JSON",
    )
    assert ok(await api.get(url)) == group


async def test_bad_list_parameters_are_400s(api_no_worker: httpx.AsyncClient) -> None:
    api = api_no_worker
    refused(await api.get(GROUPS, params={"sort": "size"}), 400, "sort: 'size' is not a sort")
    refused(await api.get(GROUPS, params={"order": "up"}), 400, "order: 'up' must be asc or desc")
    refused(await api.get(GROUPS, params={"page_size": 0}), 400, "page_size")
    refused(await api.get(GROUPS, params={"page_size": "many"}), 400, "page_size")
    refused(await api.get(GROUPS, params={"page_token": "forged"}), 400, "page_token")
    refused(await api.get(GROUPS, params={"q": "x" * 201}), 400, "q: is longer than 200")


async def test_an_unknown_group_is_a_404_everywhere(api_no_worker: httpx.AsyncClient) -> None:
    api = api_no_worker
    url = f"{GROUPS}/no-such-group"
    msg = "run group 'no-such-group' was not found"
    for r in [
        await api.get(url),
        await api.patch(url, json={"max_runs": 1}),
        await api.delete(url),
        await api.delete(url, params={"detach_runs": "true"}),
        await api.get(f"{url}/runs"),
        await api.post(f"{url}/cancel"),
    ]:
        assert refused(r, 404) == msg
    refused(await submit(api, group="no-such-group"), 400, "run_group_id: run group 'no-such")
    refused(
        await submit(api, tags={"run_group_id": "no-such-group"}), 400, "run_group_id: run group"
    )


# --- runs in groups ----------------------------------------------------------------------------


@pytest.mark.usefixtures("cwltool_exe")
async def test_runs_join_are_listed_move_and_leave(api_no_worker: httpx.AsyncClient) -> None:
    api = api_no_worker
    a = await create(api, name="a", max_cpus=4)
    b = await create(api, name="b")
    by_field = await submitted(api, group=a["id"], engine_parameters={"cpus": "2"})
    by_tag = await submitted(api, tags={"run_group_id": a["id"], "k": "v"})
    outside = await submitted(api)

    group = ok(await api.get(f"{GROUPS}/{a['id']}"))
    assert group["run_counts"]["QUEUED"] == 2
    assert sum(group["run_counts"].values()) == 2
    assert group["usage"] == {"running": 0, "cpus_in_use": 0}  # nothing runs without a worker

    listed = ok(await api.get(f"{GROUPS}/{a['id']}/runs"))
    assert [r["run_id"] for r in listed["runs"]] == [by_tag, by_field]
    assert listed["runs"][0] == {
        "run_id": by_tag,
        "state": "QUEUED",
        "tags": {"run_group_id": a["id"], "k": "v"},
    }
    assert listed["next_page_token"] == ""
    paged = ok(await api.get(f"{GROUPS}/{a['id']}/runs", params={"page_size": 1}))
    assert [r["run_id"] for r in paged["runs"]] == [by_tag]
    rest = ok(
        await api.get(f"{GROUPS}/{a['id']}/runs", params={"page_token": paged["next_page_token"]})
    )
    assert [r["run_id"] for r in rest["runs"]] == [by_field]
    none_done = ok(await api.get(f"{GROUPS}/{a['id']}/runs", params={"state": "COMPLETE"}))
    assert none_done["runs"] == []
    queued = ok(await api.get(f"{GROUPS}/{a['id']}/runs", params={"state": ["complete", "QUEUED"]}))
    assert len(queued["runs"]) == 2
    refused(await api.get(f"{GROUPS}/{a['id']}/runs", params={"state": "DONE"}), 400, "state:")

    # GET /runs?run_group_id= : the WES list, filtered; still the spec's shape
    filtered = await api.get(f"{WES}/runs", params={"run_group_id": a["id"]})
    check(filtered)
    assert [r["run_id"] for r in filtered.json()["runs"]] == [by_tag, by_field]
    one = ok(await api.get(f"{WES}/runs", params={"run_group_id": a["id"], "page_size": 1}))
    refused(
        await api.get(f"{WES}/runs", params={"page_token": one["next_page_token"]}),
        400,
        "page_token",
    )  # a filtered page's token is not good for the unfiltered list
    everything = ok(await api.get(f"{WES}/runs"))
    assert {r["run_id"] for r in everything["runs"]} == {by_field, by_tag, outside}
    assert ok(await api.get(f"{WES}/runs", params={"run_group_id": b["id"]}))["runs"] == []

    # a run over the group's max_cpus is refused, and max_cpus cannot drop below a queued run
    refused(
        await submit(api, group=a["id"], engine_parameters={"cpus": "5"}),
        400,
        "workflow_engine_parameters: the run asks for 5 CPUs",
    )
    refused(
        await api.patch(f"{GROUPS}/{a['id']}", json={"max_cpus": 1}),
        400,
        "max_cpus: 1 is less than the 2 CPUs",
    )
    refused(
        await submit(api, group=b["id"], tags={"run_group_id": a["id"]}),
        400,
        "run_group_id: the form field says",
    )

    # moving queued runs between groups, and out of any
    moved = ok(await api.put(f"{WES}/runs/{by_field}/run-group", json={"run_group_id": b["id"]}))
    assert moved == {"run_id": by_field, "run_group_id": b["id"]}
    assert [r["run_id"] for r in ok(await api.get(f"{GROUPS}/{b['id']}/runs"))["runs"]] == [
        by_field
    ]
    out = ok(await api.put(f"{WES}/runs/{outside}/run-group", json={"run_group_id": None}))
    assert out == {"run_id": outside, "run_group_id": None}
    into = ok(await api.put(f"{WES}/runs/{outside}/run-group", json={"run_group_id": a["id"]}))
    assert into["run_group_id"] == a["id"]
    refused(
        await api.put(f"{WES}/runs/{outside}/run-group", json={"run_group_id": "nope"}),
        400,
        "run_group_id: run group 'nope' was not found",
    )
    refused(
        await api.put(f"{WES}/runs/no-such-run/run-group", json={"run_group_id": None}),
        404,
        "run 'no-such-run' was not found",
    )
    refused(
        await api.put(f"{WES}/runs/{outside}/run-group", json={}),
        400,
        "run_group_id: Field required",
    )
    refused(
        await api.put(f"{WES}/runs/{outside}/run-group", json={"run_group_id": 3}),
        400,
        "run_group_id: Input should be a valid string",
    )

    # a group with runs is deleted only with detach_runs; its runs stay
    refused(
        await api.delete(f"{GROUPS}/{b['id']}"),
        409,
        f"run group {b['id']!r} has 1 run;",
        "detach_runs=true",
    )
    refused(await api.delete(f"{GROUPS}/{b['id']}", params={"detach_runs": "maybe"}), 400)
    detached = ok(await api.delete(f"{GROUPS}/{b['id']}", params={"detach_runs": "true"}))
    assert detached == {"group_id": b["id"], "detached_runs": 1}
    assert ok(await api.get(f"{WES}/runs/{by_field}/status"))["state"] == "QUEUED"
    refused(await api.get(f"{GROUPS}/{b['id']}"), 404)

    # cancel every unfinished run of a group at once; then they can no longer move
    canceled = ok(await api.post(f"{GROUPS}/{a['id']}/cancel"))
    assert canceled["group_id"] == a["id"]
    assert set(canceled["canceled_runs"]) == {by_tag, outside}
    for run_id in (by_tag, outside):
        assert ok(await api.get(f"{WES}/runs/{run_id}/status"))["state"] == "CANCELED"
    assert ok(await api.get(f"{WES}/runs/{by_field}/status"))["state"] == "QUEUED"
    group = ok(await api.get(f"{GROUPS}/{a['id']}"))
    assert (group["run_counts"]["CANCELED"], group["run_counts"]["QUEUED"]) == (2, 0)
    assert ok(await api.post(f"{GROUPS}/{a['id']}/cancel"))["canceled_runs"] == []
    refused(
        await api.put(f"{WES}/runs/{by_tag}/run-group", json={"run_group_id": None}),
        409,
        f"run {by_tag!r} is CANCELED; only a QUEUED run can change groups",
    )


async def test_served_openapi_documents_the_extension(api_no_worker: httpx.AsyncClient) -> None:
    paths = ok(await api_no_worker.get("/openapi.json"))["paths"]
    expected = {
        "/run-groups": {"get", "post"},
        "/run-groups/{group_id}": {"get", "patch", "delete"},
        "/run-groups/{group_id}/runs": {"get"},
        "/run-groups/{group_id}/cancel": {"post"},
        "/runs/{run_id}/run-group": {"put"},
    }
    for path, methods in expected.items():
        ops = paths[WES + path]
        assert set(ops) == methods, path
        for op in ops.values():
            assert op["tags"] == ["Spindle run groups"]
            assert "400" in op["responses"] or "404" in op["responses"]
    assert "409" in paths[f"{WES}/run-groups/{{group_id}}"]["delete"]["responses"]
    listed = paths[f"{WES}/runs"]["get"]
    assert "run_group_id" in {p["name"] for p in listed["parameters"]}
    create_schema = paths[f"{WES}/run-groups"]["post"]["requestBody"]["content"]
    assert "application/json" in create_schema


# --- isolation ---------------------------------------------------------------------------------

PASSWORDS = {"alice": "alice's secret", "bob": "bob's secret", "root": "root's secret"}


def as_user(name: str) -> dict[str, str]:
    raw = f"{name}:{PASSWORDS[name]}".encode()
    return {"Authorization": "Basic " + base64.b64encode(raw).decode()}


@pytest.mark.usefixtures("cwltool_exe")
async def test_isolation_between_users(
    catalog: Catalog, settings: Settings, database_url: str
) -> None:
    """Someone else's group is "not found" on every path, as a missing one is; nobody can
    submit or move runs into it; an admin sees and acts on every group."""
    on_db = Settings(**{**settings.model_dump(), "database_url": database_url, "auth": "basic"})
    app = make_app(on_db, catalog, migrate=False, worker=False)
    async with app_client(app) as api:
        for name, password in PASSWORDS.items():
            await app.state.accounts.add_user(name, password=password, admin=name == "root")
        alice, bob, root = as_user("alice"), as_user("bob"), as_user("root")
        refused(await api.get(GROUPS), 401)

        a_group = await create(api, alice, name="alice's batch", max_runs=1)
        b_group = await create(api, bob, name="bob's batch")
        a_run = await submitted(api, group=a_group["id"], headers=alice)
        b_run = await submitted(api, group=b_group["id"], headers=bob)

        def ids(body: Any) -> set[str]:
            return {g["id"] for g in body["run_groups"]}

        assert ids(ok(await api.get(GROUPS, headers=alice))) == {a_group["id"]}
        assert ids(ok(await api.get(GROUPS, headers=bob))) == {b_group["id"]}
        assert ids(ok(await api.get(GROUPS, headers=root))) == {a_group["id"], b_group["id"]}
        assert ok(await api.get(GROUPS, params={"q": "bob"}, headers=alice))["run_groups"] == []

        # every operation of bob's on alice's group: the same 404 as a group that does not exist
        url = f"{GROUPS}/{a_group['id']}"
        msg = f"run group {a_group['id']!r} was not found"
        for r in [
            await api.get(url, headers=bob),
            await api.patch(url, json={"max_runs": 5}, headers=bob),
            await api.delete(url, params={"detach_runs": "true"}, headers=bob),
            await api.get(f"{url}/runs", headers=bob),
            await api.post(f"{url}/cancel", headers=bob),
        ]:
            assert refused(r, 404) == msg
        refused(
            await submit(api, group=a_group["id"], headers=bob),
            400,
            f"run_group_id: run group {a_group['id']!r} was not found",
        )
        refused(
            await submit(api, tags={"run_group_id": a_group["id"]}, headers=bob),
            400,
            "run_group_id:",
        )
        refused(
            await api.put(
                f"{WES}/runs/{b_run}/run-group", json={"run_group_id": a_group["id"]}, headers=bob
            ),
            400,
            "run_group_id:",
        )
        refused(
            await api.put(
                f"{WES}/runs/{a_run}/run-group", json={"run_group_id": None}, headers=bob
            ),
            404,
            f"run {a_run!r} was not found",
        )
        # the group filter of GET /runs shows bob nothing of alice's
        filtered = ok(
            await api.get(f"{WES}/runs", params={"run_group_id": a_group["id"]}, headers=bob)
        )
        assert filtered["runs"] == []

        # nothing bob tried changed alice's group or its run
        mine = ok(await api.get(url, headers=alice))
        assert (mine["max_runs"], mine["run_counts"]["QUEUED"]) == (1, 1)
        assert ok(await api.get(f"{WES}/runs/{a_run}/status", headers=alice))["state"] == "QUEUED"
        runs = ok(await api.get(f"{url}/runs", headers=alice))["runs"]
        assert [r["run_id"] for r in runs] == [a_run]

        # the admin sees and acts on alice's group
        assert ok(await api.get(url, headers=root))["id"] == a_group["id"]
        assert [r["run_id"] for r in ok(await api.get(f"{url}/runs", headers=root))["runs"]] == [
            a_run
        ]
        assert ok(await api.patch(url, json={"max_runs": 2}, headers=root))["max_runs"] == 2
        assert ok(await api.post(f"{url}/cancel", headers=root))["canceled_runs"] == [a_run]
        deleted = ok(await api.delete(url, params={"detach_runs": "true"}, headers=root))
        assert deleted == {"group_id": a_group["id"], "detached_runs": 1}
        # bob's group and run were never touched
        assert ok(await api.get(f"{WES}/runs/{b_run}/status", headers=bob))["state"] == "QUEUED"
        theirs = ok(await api.get(f"{GROUPS}/{b_group['id']}", headers=bob))
        assert theirs["run_counts"]["QUEUED"] == 1
