"""What WES clients and new users trip over (issue 12): engine parameters sent as JSON
numbers, the parameters service-info declares, tokens without sign-in, attachments listed
twice."""

from __future__ import annotations

import json

import httpx
import pytest

from tests.api.conftest import FINAL_STATES, WES, example_form, wait_state


async def test_engine_parameters_may_be_json_numbers_and_booleans(
    api_no_worker: httpx.AsyncClient,
) -> None:
    data, files = example_form("snakemake", "wordcount")
    data["workflow_engine_parameters"] = json.dumps({"cores": 1, "cpus": 1, "priority": -2})
    r = await api_no_worker.post(f"{WES}/runs", data=data, files=files)
    assert r.status_code == 200, r.text
    log = (await api_no_worker.get(f"{WES}/runs/{r.json()['run_id']}")).json()
    # used (and echoed) in their string form, as the spec's clients send them
    assert log["request"]["workflow_engine_parameters"] == {
        "cores": "1",
        "cpus": "1",
        "priority": "-2",
    }
    # a boolean is its JSON text; the engine then judges the value as it judges any string
    data["workflow_engine_parameters"] = json.dumps({"cores": True})
    r = await api_no_worker.post(f"{WES}/runs", data=data, files=files)
    assert r.status_code == 400, r.text
    msg = r.json()["msg"]
    assert msg.startswith("workflow_engine_parameters: cores must be an integer from 1 to ")
    assert msg.endswith(", got 'true'")


async def test_service_info_declares_every_accepted_engine_parameter(
    api_no_worker: httpx.AsyncClient,
) -> None:
    info = (await api_no_worker.get(f"{WES}/service-info")).json()
    declared = {p["name"]: p for p in info["default_workflow_engine_parameters"]}
    assert declared["compute_env"] == {
        "name": "compute_env",
        "type": "string",
        "default_value": "local",
    }
    assert declared["cpus"] == {"name": "cpus", "type": "int", "default_value": "1"}
    assert declared["priority"] == {"name": "priority", "type": "int", "default_value": "0"}
    assert {"cores", "executor", "jobs"} <= set(declared)


async def test_no_tokens_without_sign_in(api_no_worker: httpx.AsyncClient) -> None:
    r = await api_no_worker.post(f"{WES}/tokens", json={"name": "laptop"})
    assert r.status_code == 403, r.text
    assert r.json()["msg"].startswith("tokens: this service signs nobody in (SPINDLE_AUTH=none")
    assert (await api_no_worker.get(f"{WES}/tokens")).json() == {"tokens": []}


async def test_a_file_attached_twice_with_the_same_bytes_is_one_attachment(
    api_no_worker: httpx.AsyncClient,
) -> None:
    """wes-client attaches the workflow file again when it is also in --attachments."""
    data, files = example_form("cwl", "wordcount")
    workflow = next(part for part in files if part[1][0] == "workflow.cwl")
    r = await api_no_worker.post(f"{WES}/runs", data=data, files=[*files, workflow])
    assert r.status_code == 200, r.text
    served = await api_no_worker.get(
        f"{WES}/runs/{r.json()['run_id']}/files/attachments/workflow.cwl"
    )
    assert served.content == workflow[1][1]

    other = ("workflow_attachment", ("workflow.cwl", workflow[1][1] + b"\n# changed\n"))
    shorter = ("workflow_attachment", ("workflow.cwl", workflow[1][1][:-1]))
    for conflicting in (other, shorter):
        r = await api_no_worker.post(f"{WES}/runs", data=data, files=[*files, conflicting])
        assert r.status_code == 400, r.text
        assert r.json()["msg"] == (
            "workflow_attachment: 'workflow.cwl' is attached twice, with other bytes"
        )


@pytest.mark.engine
async def test_a_container_tool_fails_saying_this_service_runs_no_containers(
    api: httpx.AsyncClient, cwltool_exe: str
) -> None:
    tool = (
        "cwlVersion: v1.2\nclass: CommandLineTool\n"
        "requirements:\n  DockerRequirement:\n    dockerPull: alpine:3\n"
        "baseCommand: [echo, hi]\ninputs: []\noutputs: []\n"
    )
    data = {"workflow_type": "CWL", "workflow_type_version": "v1.2", "workflow_url": "tool.cwl"}
    files = [("workflow_attachment", ("tool.cwl", tool.encode()))]
    r = await api.post(f"{WES}/runs", data=data, files=files)
    assert r.status_code == 200, r.text
    run_id = r.json()["run_id"]
    assert await wait_state(api, run_id, FINAL_STATES) == "EXECUTOR_ERROR"
    system_logs = (await api.get(f"{WES}/runs/{run_id}")).json()["run_log"]["system_logs"]
    assert any("this compute environment runs no containers" in line for line in system_logs)


async def test_options_and_405_name_every_method_of_the_path(
    api_no_worker: httpx.AsyncClient,
) -> None:
    r = await api_no_worker.options(f"{WES}/runs")
    assert (r.status_code, r.headers["allow"]) == (204, "GET, OPTIONS, POST")
    r = await api_no_worker.options(f"{WES}/run-groups/some-id")
    assert r.headers["allow"] == "DELETE, GET, OPTIONS, PATCH"
    r = await api_no_worker.put(f"{WES}/runs")
    assert (r.status_code, r.headers["allow"]) == (405, "GET, OPTIONS, POST")
    assert r.json() == {"msg": f"method PUT is not allowed on {WES}/runs", "status_code": 405}
    assert (await api_no_worker.options(f"{WES}/nothing-here")).status_code == 404


async def test_the_served_schema_states_the_limits_spindle_enforces(
    api_no_worker: httpx.AsyncClient,
) -> None:
    doc = (await api_no_worker.get("/openapi.json")).json()
    paths = doc["paths"]

    def parameter(path: str, name: str) -> dict[str, object]:
        found = [p for p in paths[path]["get"]["parameters"] if p["name"] == name]
        schema: dict[str, object] = found[0]["schema"]
        return schema

    for path in (f"{WES}/runs", f"{WES}/runs/{{run_id}}/tasks", f"{WES}/run-groups"):
        page_size = parameter(path, "page_size")
        assert str(page_size).count("'minimum': 1") == 1, page_size
        assert "'maximum': 1000" in str(page_size), page_size
    body = paths[f"{WES}/runs"]["post"]["requestBody"]
    assert body["required"] is True
    form = body["content"]["multipart/form-data"]["schema"]
    assert form["required"] == ["workflow_type", "workflow_type_version", "workflow_url"]
    schemas = doc["components"]["schemas"]
    duration = str(schemas["RunGroupCreate"]["properties"]["max_duration"])
    assert "'minimum': 0.0166" in duration
    name = schemas["NewTokenRequest"]["properties"]["name"]
    assert (name["minLength"], name["maxLength"]) == (1, 255)
    assert name["pattern"].startswith("^[^\\s")
    # validation errors are answered 400 ErrorResponse, and documented so
    for methods in paths.values():
        for operation in methods.values():
            assert "422" not in operation["responses"]
    assert "HTTPValidationError" not in schemas
    revoke = paths[f"{WES}/tokens/{{token_id}}/revoke"]["post"]["responses"]
    assert revoke["400"]["content"]["application/json"]["schema"]["$ref"].endswith("/ErrorResponse")
