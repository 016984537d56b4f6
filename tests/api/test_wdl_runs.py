"""A WDL run through the API, end to end on the embedded worker: service-info lists WDL,
the scatter example completes with a task per call and its File output downloadable, and a
File input outside the run folder fails with the input named in system_logs."""

from __future__ import annotations

import httpx

from tests.api.conftest import FINAL_STATES, WES, submit_example, wait_state


async def test_a_wdl_scatter_run_completes_with_tasks_and_downloadable_outputs(
    api: httpx.AsyncClient, miniwdl_exe: str
) -> None:
    info = (await api.get(f"{WES}/service-info")).json()
    assert {"1.0", "1.1"} <= set(info["workflow_type_versions"]["WDL"]["workflow_type_version"])
    run_id = await submit_example(api, "wdl", "scatter")
    assert await wait_state(api, run_id, FINAL_STATES) == "COMPLETE"
    log = (await api.get(f"{WES}/runs/{run_id}")).json()
    assert log["outputs"]["words"] == 9
    report = log["outputs"]["report"]
    assert report["location"].startswith(f"http://spindle.test{WES}/runs/{run_id}/")
    r = await api.get(report["location"])
    assert (r.status_code, r.text.strip()) == (200, "9")
    tasks = (await api.get(f"{WES}/runs/{run_id}/tasks")).json()["task_logs"]
    assert sorted(t["name"] for t in tasks) == ["count", "count", "count", "split_lines", "total"]
    assert all(t["exit_code"] == 0 for t in tasks)


async def test_a_wdl_input_outside_the_run_folder_is_named(
    api: httpx.AsyncClient, miniwdl_exe: str
) -> None:
    run_id = await submit_example(api, "wdl", "scatter", params={"text": "/etc/passwd"})
    assert await wait_state(api, run_id, FINAL_STATES) == "EXECUTOR_ERROR"
    logs = (await api.get(f"{WES}/runs/{run_id}")).json()["run_log"]["system_logs"]
    assert any(line.startswith("input 'text' of workflow_params") for line in logs), logs
