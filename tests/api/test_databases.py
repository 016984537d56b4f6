"""The core run life cycle over HTTP on every database: a real run completes with its tasks,
a failing one is EXECUTOR_ERROR, a running one is cancelled, and pages list them all."""

from __future__ import annotations

import pytest

from spindle.config import Settings
from spindle.engines.registry import Catalog
from tests.api.conftest import WES, make_app, open_client, submit_example, wait_state

pytestmark = pytest.mark.engine

FINAL = ["COMPLETE", "EXECUTOR_ERROR", "SYSTEM_ERROR", "CANCELED"]


async def test_life_cycle_on_each_database(
    catalog: Catalog, settings: Settings, database_url: str, snakemake_exe: str, cwltool_exe: str
) -> None:
    on_db = settings.model_copy(update={"database_url": database_url})
    async for api in open_client(make_app(on_db, catalog, migrate=False)):
        ok = await submit_example(api, "snakemake", "wordcount")
        failing = await submit_example(api, "cwl", "fail")
        long = await submit_example(api, "cwl", "sleep")
        assert await wait_state(api, ok, FINAL) == "COMPLETE"
        assert await wait_state(api, failing, FINAL) == "EXECUTOR_ERROR"
        await wait_state(api, long, ["RUNNING"])
        await api.post(f"{WES}/runs/{long}/cancel")
        assert await wait_state(api, long, FINAL) == "CANCELED"

        tasks = (await api.get(f"{WES}/runs/{ok}/tasks", params={"page_size": 2})).json()
        assert len(tasks["task_logs"]) == 2
        rest = await api.get(
            f"{WES}/runs/{ok}/tasks", params={"page_token": tasks["next_page_token"]}
        )
        assert len(tasks["task_logs"]) + len(rest.json()["task_logs"]) == 5

        page = (await api.get(f"{WES}/runs", params={"page_size": 2})).json()
        second = await api.get(f"{WES}/runs", params={"page_token": page["next_page_token"]})
        listed = [r["run_id"] for r in page["runs"] + second.json()["runs"]]
        assert listed == [long, failing, ok]
        info = (await api.get(f"{WES}/service-info")).json()
        counts = info["system_state_counts"]
        assert (counts["COMPLETE"], counts["EXECUTOR_ERROR"], counts["CANCELED"]) == (1, 1, 1)
