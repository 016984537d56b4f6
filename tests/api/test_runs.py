"""Real Snakemake and CWL workflows submitted over HTTP, followed to their end."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
import pytest

from spindle.config import Settings
from spindle.engines.registry import Catalog
from tests.api.conftest import WES, make_app, open_client, submit_example, wait_state

pytestmark = pytest.mark.engine


async def _outputs_by_name(client: httpx.AsyncClient, run_id: str) -> dict[str, bytes]:
    log = (await client.get(f"{WES}/runs/{run_id}")).json()
    urls: dict[str, str] = {}

    def walk(value: object) -> None:
        if isinstance(value, dict):
            if value.get("class") == "File":
                urls[str(value["basename"])] = str(value["location"])
            for v in value.values():
                walk(v)
        elif isinstance(value, list):
            for v in value:
                walk(v)

    walk(log["outputs"])
    out = {}
    for name, url in urls.items():
        r = await client.get(url)
        assert r.status_code == 200, (url, r.text)
        out[name] = r.content
    return out


async def test_snakemake_run_completes_with_tasks_logs_and_outputs(
    api: httpx.AsyncClient, snakemake_exe: str
) -> None:
    run_id = await submit_example(api, "snakemake", "wordcount", tags={"project": "demo"})
    assert (
        await wait_state(api, run_id, ["COMPLETE", "EXECUTOR_ERROR", "SYSTEM_ERROR"]) == "COMPLETE"
    )

    log = (await api.get(f"{WES}/runs/{run_id}")).json()
    assert log["request"]["tags"] == {"project": "demo"}
    assert log["run_log"]["exit_code"] == 0
    assert log["run_log"]["cmd"][0].endswith("snakemake")
    assert log["run_log"]["start_time"] <= log["run_log"]["end_time"]
    stderr = await api.get(log["run_log"]["stderr"])
    assert "steps (100%) done" in stderr.text

    outputs = await _outputs_by_name(api, run_id)
    assert outputs["alpha.count"] == b"4\n"
    assert b"results/gamma.count:3" in outputs["summary.txt"]

    tasks = (await api.get(log["task_logs_url"])).json()
    names = [t["name"] for t in tasks["task_logs"]]
    # Snakemake picks the order of independent jobs; the summary comes after all counts
    counts = ["count[sample=alpha]", "count[sample=beta]", "count[sample=gamma]"]
    assert sorted(names[:3]) == counts
    assert names[3] == "summary"
    assert all(t["exit_code"] == 0 for t in tasks["task_logs"])
    first = tasks["task_logs"][0]
    sample = first["name"].removeprefix("count[sample=").rstrip("]")
    assert (await api.get(first["stdout"])).text.strip().endswith(f"counting {sample}")
    one = await api.get(f"{WES}/runs/{run_id}/tasks/{first['id']}")
    assert one.json() == first

    progress = (await api.get(f"{WES}/runs/{run_id}/progress")).json()
    assert progress["done"] == progress["total"] == len(names)


async def test_cwl_run_completes_with_output_object(
    api: httpx.AsyncClient, cwltool_exe: str
) -> None:
    run_id = await submit_example(api, "cwl", "wordcount")
    assert (
        await wait_state(api, run_id, ["COMPLETE", "EXECUTOR_ERROR", "SYSTEM_ERROR"]) == "COMPLETE"
    )
    log = (await api.get(f"{WES}/runs/{run_id}")).json()
    assert set(log["outputs"]) == {"counts", "shouted"}
    assert log["outputs"]["shouted"]["location"].startswith(f"http://spindle.test{WES}/runs/")
    assert "path" not in log["outputs"]["shouted"]
    outputs = await _outputs_by_name(api, run_id)
    poem = (Path(__file__).parents[2] / "examples/cwl/wordcount/poem.txt").read_text()
    assert outputs["shouted.txt"].decode() == poem.upper()
    tasks = (await api.get(f"{WES}/runs/{run_id}/tasks")).json()["task_logs"]
    assert [t["name"] for t in tasks] == ["shout", "count"]


@pytest.mark.parametrize("language", ["snakemake", "cwl"])
async def test_failing_workflow_is_executor_error(
    api: httpx.AsyncClient, language: str, snakemake_exe: str, cwltool_exe: str
) -> None:
    run_id = await submit_example(api, language, "fail")
    state = await wait_state(api, run_id, ["COMPLETE", "EXECUTOR_ERROR", "SYSTEM_ERROR"])
    assert state == "EXECUTOR_ERROR"
    log = (await api.get(f"{WES}/runs/{run_id}")).json()
    assert log["run_log"]["exit_code"] != 0
    tasks = (await api.get(f"{WES}/runs/{run_id}/tasks")).json()["task_logs"]
    assert any(t.get("exit_code") not in (0, None) for t in tasks)


def _processes_mentioning(text: str) -> list[int]:
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes()
            stat = (proc / "stat").read_text()
        except OSError:
            continue
        if text.encode() in cmdline and ") Z " not in stat:
            found.append(int(proc.name))
    return found


@pytest.mark.parametrize("language", ["snakemake", "cwl"])
async def test_cancel_running_run_leaves_no_process(
    api: httpx.AsyncClient,
    settings: Settings,
    language: str,
    snakemake_exe: str,
    cwltool_exe: str,
) -> None:
    run_id = await submit_example(api, language, "sleep")
    await wait_state(api, run_id, ["RUNNING"])
    # wait until the engine has started the sleeping task
    for _ in range(200):
        tasks = (await api.get(f"{WES}/runs/{run_id}/tasks")).json()["task_logs"]
        if tasks:
            break
        await asyncio.sleep(0.1)
    assert _processes_mentioning(run_id), "the engine should be running"
    r = await api.post(f"{WES}/runs/{run_id}/cancel")
    assert r.status_code == 200
    assert r.json() == {"run_id": run_id}
    assert await wait_state(api, run_id, ["CANCELED"], seconds=30) == "CANCELED"
    assert _processes_mentioning(run_id) == []
    tasks = (await api.get(f"{WES}/runs/{run_id}/tasks")).json()["task_logs"]
    assert tasks
    assert all(t.get("end_time") for t in tasks)
    # cancelling again changes nothing and answers 200
    again = await api.post(f"{WES}/runs/{run_id}/cancel")
    assert again.status_code == 200
    assert (await api.get(f"{WES}/runs/{run_id}/status")).json()["state"] == "CANCELED"


async def test_queued_run_is_canceled_at_once(api_no_worker: httpx.AsyncClient) -> None:
    run_id = await submit_example(api_no_worker, "snakemake", "wordcount")
    assert (await api_no_worker.get(f"{WES}/runs/{run_id}/status")).json()["state"] == "QUEUED"
    await api_no_worker.post(f"{WES}/runs/{run_id}/cancel")
    assert (await api_no_worker.get(f"{WES}/runs/{run_id}/status")).json()["state"] == "CANCELED"


async def test_service_info_counts_are_real(
    api_no_worker: httpx.AsyncClient,
) -> None:
    for _ in range(3):
        await submit_example(api_no_worker, "cwl", "wordcount")
    info = (await api_no_worker.get(f"{WES}/service-info")).json()
    assert info["system_state_counts"]["QUEUED"] == 3
    assert info["system_state_counts"]["COMPLETE"] == 0
    assert set(info["workflow_type_versions"]) == {"SMK", "CWL", "WDL"}
    assert info["workflow_engine_versions"]["cwltool"]["workflow_engine_version"]


async def test_worker_runs_at_most_its_capacity(
    catalog: Catalog, settings: Settings, snakemake_exe: str
) -> None:

    one = settings.model_copy(update={"max_concurrent_runs": 1})
    async for client in open_client(make_app(one, catalog)):
        first = await submit_example(client, "snakemake", "sleep", params={"seconds": 300})
        second = await submit_example(client, "snakemake", "sleep", params={"seconds": 300})
        await wait_state(client, first, ["RUNNING"])
        await asyncio.sleep(1.5)
        assert (await client.get(f"{WES}/runs/{second}/status")).json()["state"] == "QUEUED"
        await client.post(f"{WES}/runs/{first}/cancel")
        assert await wait_state(client, second, ["RUNNING"], seconds=30) == "RUNNING"
        await client.post(f"{WES}/runs/{second}/cancel")
        await wait_state(client, second, ["CANCELED"], seconds=30)


async def test_submission_wakes_the_worker_without_polling(
    catalog: Catalog, settings: Settings, cwltool_exe: str
) -> None:
    """With the fallback poll an hour away, only the wake-up can start the run."""

    slow_poll = settings.model_copy(update={"poll_interval": 3600})
    async for client in open_client(make_app(slow_poll, catalog)):
        await asyncio.sleep(0.5)  # the worker is idle, waiting
        run_id = await submit_example(client, "cwl", "wordcount")
        assert await wait_state(client, run_id, ["RUNNING", "COMPLETE"], seconds=10)
