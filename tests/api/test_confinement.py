"""Files a run names or produces are served only from inside its folder: a log the workflow
replaced with a link out of it (API and run page), and CWL inputs naming host files. No
engine runs: the run stays QUEUED while the files are planted."""

from __future__ import annotations

import json

import httpx

from spindle.config import Settings
from tests.api.conftest import WES, submit_example

PASSWD_LINE = "root:x:0:0"


async def test_a_log_turned_link_out_of_the_run_is_served_by_neither_api_nor_page(
    api_no_worker: httpx.AsyncClient, settings: Settings
) -> None:
    run_id = await submit_example(api_no_worker, "snakemake", "wordcount")
    logs = settings.data_dir / "runs" / run_id / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    (logs / "stdout").symlink_to("/etc/passwd")

    r = await api_no_worker.get(f"{WES}/runs/{run_id}/logs/stdout")
    assert r.status_code == 200
    assert PASSWD_LINE not in r.text
    page = await api_no_worker.get(f"/runs/{run_id}")
    assert page.status_code == 200
    assert PASSWD_LINE not in page.text


async def test_a_cwl_input_naming_a_host_file_is_a_400_naming_it(
    api_no_worker: httpx.AsyncClient,
) -> None:
    for ref in ({"location": "file:///etc/hostname"}, {"path": "/etc/passwd"}):
        r = await api_no_worker.post(
            f"{WES}/runs",
            data={
                "workflow_type": "CWL",
                "workflow_type_version": "v1.2",
                "workflow_url": "workflow.cwl",
                "workflow_params": json.dumps({"reads": {"class": "File", **ref}}),
            },
            files=[("workflow_attachment", ("workflow.cwl", b"cwlVersion: v1.2\n"))],
        )
        assert r.status_code == 400, r.text
        body = r.json()
        assert body["status_code"] == 400
        assert "workflow_params" in body["msg"]
        assert "'reads'" in body["msg"]
