"""The ``healthomics`` backend against a loopback fake of the HealthOmics API
(tests/omics_fake.py), through real boto3: every request is serialized by botocore from the
real service model, checked by the fake against that model, and every answer parsed by it.
S3 (the runs' outputs) and CloudWatch Logs (their logs) are a real moto server on loopback
(tests/s3.py), where the fake writes what HealthOmics would."""

from __future__ import annotations

import asyncio
import base64
import json
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path, PurePosixPath
from typing import Any

import boto3
import httpx
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError
from pydantic import ValidationError

from spindle.backends.base import Handle, Status
from spindle.backends.healthomics.backend import RUN_TAG, HealthOmicsBackend
from spindle.backends.healthomics.settings import HealthOmicsEnv
from spindle.config import Settings
from spindle.domain import RunRequest, State
from spindle.engines.registry import Catalog
from spindle.errors import BackendError, InvalidRequest, NotFound
from spindle.execution import Job
from spindle.storage.rundir import RunDir
from spindle.testing import run_record
from tests.api.conftest import WES, app_client, make_app, wait_state
from tests.omics_fake import OUTPUT, OmicsFake, serve
from tests.s3 import S3Server, s3_server

__all__ = ["s3_server"]  # the session fixture, imported for pytest

ROLE = "arn:aws:iam::123456789012:role/omics-runs"
WDL = "version 1.0\nworkflow hello { input { String who } }\n"


@pytest.fixture(autouse=True)
def aws_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Dummy credentials from the standard chain (the environment), nothing of this host's."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-credentials"))


#: the moto server's endpoint and this test's bucket, which env() configures
AWS: dict[str, str] = {}


@pytest.fixture
def fake(s3_server: S3Server, monkeypatch: pytest.MonkeyPatch) -> Iterator[OmicsFake]:
    bucket = f"omics-{uuid.uuid4().hex[:16]}"
    s3 = boto3.client(
        "s3",
        endpoint_url=s3_server.endpoint,
        region_name="us-east-1",
        config=Config(s3={"addressing_style": "path"}),
    )
    s3.create_bucket(Bucket=bucket)
    monkeypatch.setitem(AWS, "endpoint", s3_server.endpoint)
    monkeypatch.setitem(AWS, "bucket", bucket)
    fake = OmicsFake(tasks=3)
    fake.aws = s3_server.endpoint
    yield fake
    assert fake.model_errors == []


@pytest.fixture
def endpoint(fake: OmicsFake) -> Iterator[str]:
    with serve(fake) as url:
        yield url


def env(endpoint: str, **more: Any) -> HealthOmicsEnv:
    return HealthOmicsEnv(
        type="healthomics",
        region="us-east-1",
        role_arn=ROLE,
        output_uri=f"s3://{AWS.get('bucket', 'results')}/spindle",
        endpoint_url=endpoint,
        s3_endpoint_url=AWS.get("endpoint"),
        logs_endpoint_url=AWS.get("endpoint"),
        tags={"team": "genomics"},
        **more,
    )


def backend_for(endpoint: str, **more: Any) -> HealthOmicsBackend:
    return HealthOmicsBackend("omics", env(endpoint, **more), workflow_wait=5)


@pytest.fixture
def backend(endpoint: str) -> HealthOmicsBackend:
    return backend_for(endpoint)


def wdl_job(
    tmp_path: Path,
    run_id: str = "run-1",
    params: dict[str, Any] | None = None,
    url: str = "main.wdl",
) -> Job:
    rundir = RunDir.for_run(tmp_path, run_id)
    rundir.create()
    (rundir.attachments / "main.wdl").write_text(WDL)
    request = RunRequest("WDL", "1.0", url, params if params is not None else {"who": "world"})
    return Job(run_record(run_id, request=request, engine="", compute_env="omics"), rundir, None)


async def state(backend: HealthOmicsBackend, handle: Handle) -> Status:
    return (await backend.poll([handle]))[handle.run_id]


async def play(fake: OmicsFake, backend: HealthOmicsBackend, handle: Handle) -> list[State]:
    """The states the backend reports while the fake steps the run to its end."""
    seen = [(await state(backend, handle)).state]
    while not seen[-1].terminal:
        fake.step()
        seen.append((await state(backend, handle)).state)
    return seen


async def test_a_wdl_run_completes_with_its_tasks(
    fake: OmicsFake, backend: HealthOmicsBackend, tmp_path: Path
) -> None:
    handle = await backend.submit(wdl_job(tmp_path))

    started = fake.runs[handle.data["omics_run"]].data
    assert started["parameters"] == {"who": "world"}
    assert started["roleArn"] == ROLE
    assert started["workflowType"] == "PRIVATE"
    assert started["storageType"] == "DYNAMIC"
    assert started["tags"] == {"team": "genomics", RUN_TAG: "run-1"}
    workflow = fake.workflows[started["workflowId"]]
    assert (workflow["engine"], workflow["main"], workflow["status"]) == (
        "WDL",
        "main.wdl",
        "ACTIVE",
    )
    assert workflow["parameterTemplate"] == {"who": {"description": "who", "optional": False}}

    states = await play(fake, backend, handle)
    assert states == [State.QUEUED, State.QUEUED, State.RUNNING, State.COMPLETE]
    report = await backend.report(handle, RunDir.for_run(tmp_path, "run-1"))
    assert report is not None
    assert [(t.name, t.state) for t in report.tasks] == [
        (f"task-{n}", State.COMPLETE) for n in (1, 2, 3)
    ]
    assert all(t.start_time and t.end_time for t in report.tasks)
    assert "cpus=2" in report.tasks[0].system_logs[0]
    # the list said it all: GetRun is never needed for these states
    assert fake.calls["GetRun"] == 0


async def get(url: str) -> httpx.Response:
    """A GET of a presigned URL from S3 (the moto server), as a client would send it."""
    async with httpx.AsyncClient() as client:
        return await client.get(url)


async def test_a_completed_run_reports_its_outputs_and_links_them(
    fake: OmicsFake, backend: HealthOmicsBackend, tmp_path: Path
) -> None:
    """The outputs are the objects under the run's runOutputUri (written by HealthOmics, here
    the fake, in moto's S3); a download of one is a presigned URL whose content is it."""
    handle = await backend.submit(wdl_job(tmp_path))
    rundir = RunDir.for_run(tmp_path, "run-1")
    fake.step()
    fake.step()
    assert (await state(backend, handle)).state is State.RUNNING
    running = await backend.report(handle, rundir)
    assert running is not None
    assert running.outputs is None  # none until it completed
    await play(fake, backend, handle)
    report = await backend.report(handle, rundir)
    assert report is not None
    path, content = OUTPUT
    assert report.outputs == {
        path: {
            "class": "File",
            "basename": "result.txt",
            "location": f"run:omics-outputs/{path}",
            "size": len(content),
        }
    }
    signed = await backend.link(handle.to_json(), PurePosixPath(f"omics-outputs/{path}"))
    assert signed is not None
    assert signed.name == "result.txt"
    assert (await get(signed.url)).content == content
    with pytest.raises(NotFound):
        await backend.link(handle.to_json(), PurePosixPath("omics-outputs/out/none.txt"))
    assert await backend.link(handle.to_json(), PurePosixPath("logs/stdout")) is None
    with pytest.raises(NotFound):  # the seam resolves paths first; the backend checks too
        await backend.link(handle.to_json(), PurePosixPath("omics-outputs/../x/out/result.txt"))


async def test_engine_and_task_logs_come_from_cloudwatch_logs(
    fake: OmicsFake, backend: HealthOmicsBackend, tmp_path: Path
) -> None:
    handle = await backend.submit(wdl_job(tmp_path))
    rundir = RunDir.for_run(tmp_path, "run-1")
    rid = handle.data["omics_run"]
    report = await backend.report(handle, rundir)  # nothing logged yet: no streams, no error
    assert report is not None
    assert report.tasks == []
    assert not (rundir.logs / "stdout").exists()
    await play(fake, backend, handle)
    report = await backend.report(handle, rundir)
    assert report is not None
    assert (rundir.logs / "stdout").read_text() == (
        f"engine: run {rid} started\nengine: run {rid} completed\n"
    )
    for n, task in enumerate(report.tasks, 1):
        assert task.stdout is not None
        assert (rundir.root / task.stdout.path).read_text() == f"task-{n}: hello\n"
    # an ended task's log is read twice more (late lines), then no more: the copy is served
    reads = []
    for _ in range(3):
        (rundir.logs / "omics-tasks" / f"{rid}1").write_text("copied\n")
        report = await backend.report(handle, rundir)
        assert report is not None
        assert report.tasks[0].stdout is not None
        reads.append((rundir.logs / "omics-tasks" / f"{rid}1").read_text())
    assert reads == ["task-1: hello\n", "copied\n", "copied\n"]


async def test_an_identical_definition_is_registered_once(
    fake: OmicsFake, backend: HealthOmicsBackend, tmp_path: Path
) -> None:
    a = await backend.submit(wdl_job(tmp_path, "run-a"))
    b = await backend.submit(wdl_job(tmp_path, "run-b", {"who": "you"}))
    assert fake.calls["CreateWorkflow"] == 1
    assert (
        fake.runs[a.data["omics_run"]].data["workflowId"]
        == (fake.runs[b.data["omics_run"]].data["workflowId"])
    )
    c = await backend.submit(wdl_job(tmp_path, "run-c", {"other": 1}))  # another template
    assert fake.calls["CreateWorkflow"] == 2

    # one poll for all three: the fake lists two a page, so the pages are followed
    fake.step()
    fake.step()
    statuses = await backend.poll([a, b, c])
    assert {k: s.state for k, s in statuses.items()} == dict.fromkeys(
        ("run-a", "run-b", "run-c"), State.RUNNING
    )
    assert (fake.calls["ListRuns"], fake.calls["GetRun"]) == (2, 0)


async def test_a_named_workflow_is_started_without_an_upload(
    fake: OmicsFake, endpoint: str, backend: HealthOmicsBackend, tmp_path: Path
) -> None:
    client = boto3.client(
        "omics",
        region_name="us-east-1",
        endpoint_url=endpoint,
        config=Config(inject_host_prefix=False),
    )
    wid = client.create_workflow(name="mine", engine="CWL", requestId="r1")["id"]
    client.get_workflow(id=wid)
    handle = await backend.submit(wdl_job(tmp_path, url=f"omics:{wid}"))
    assert fake.calls["CreateWorkflow"] == 1
    assert fake.runs[handle.data["omics_run"]].data["workflowId"] == wid
    ready = await backend.submit(wdl_job(tmp_path, "run-2", url="omics:ready2run:9876543"))
    assert fake.runs[ready.data["omics_run"]].data["workflowType"] == "READY2RUN"


@pytest.mark.parametrize(
    ("reason", "expected"),
    [("WORKFLOW_TASK_FAILED", State.EXECUTOR_ERROR), ("SERVICE_ERROR", State.SYSTEM_ERROR)],
)
async def test_a_failure_carries_its_failure_reason(
    fake: OmicsFake, backend: HealthOmicsBackend, tmp_path: Path, reason: str, expected: State
) -> None:
    fake.failures["run-1"] = reason
    handle = await backend.submit(wdl_job(tmp_path))
    states = await play(fake, backend, handle)
    assert states[-1] is expected
    status = await state(backend, handle)
    assert status.state is expected
    assert status.reason is not None
    assert reason in status.reason
    assert fake.calls["GetRun"] == 1  # once, when it failed; not on every poll after
    report = await backend.report(handle, RunDir.for_run(tmp_path, "run-1"))
    assert report is not None
    assert {t.state for t in report.tasks} == {State.EXECUTOR_ERROR}


async def test_a_failed_workflow_is_a_clear_error(
    fake: OmicsFake, backend: HealthOmicsBackend, tmp_path: Path
) -> None:
    job = wdl_job(tmp_path)
    name = f"spindle-{_digest(job)[:32]}"
    fake.workflow_failures[name] = "main.wdl line 2: unknown type Strin"
    handle = await backend.submit(job)
    status = await state(backend, handle)
    assert status.state is State.EXECUTOR_ERROR
    assert status.reason is not None
    assert status.reason.endswith("is FAILED: main.wdl line 2: unknown type Strin")
    await backend.cancel(handle)  # nothing to stop
    assert fake.calls["StartRun"] == 0
    assert fake.calls["CancelRun"] == 0


def _digest(job: Job) -> str:
    from spindle.backends.healthomics.bundle import definition

    r = job.run.request
    return definition(job.rundir.attachments, r.workflow_url, "WDL", r.workflow_params).digest


async def test_cancel(fake: OmicsFake, backend: HealthOmicsBackend, tmp_path: Path) -> None:
    handle = await backend.submit(wdl_job(tmp_path))
    fake.step()
    fake.step()
    assert (await state(backend, handle)).state is State.RUNNING
    await backend.cancel(handle)
    assert (await state(backend, handle)).state is State.CANCELING
    fake.step()
    assert (await state(backend, handle)).state is State.CANCELED
    await backend.cancel(handle)  # once more, after it ended: nothing to do, no error


async def test_a_deleted_run_is_a_system_error_with_the_message(
    fake: OmicsFake, backend: HealthOmicsBackend, tmp_path: Path
) -> None:
    handle = await backend.submit(wdl_job(tmp_path))
    run = fake.runs[handle.data["omics_run"]].data
    run.update(status="DELETED", statusMessage="deleted by admin@example.org")
    status = await state(backend, handle)  # not listed any more: GetRun says why
    assert status.state is State.SYSTEM_ERROR
    assert status.reason is not None
    assert "deleted by admin@example.org" in status.reason
    assert fake.calls["GetRun"] == 1


async def test_reattach_after_a_restart_starts_nothing_again(
    fake: OmicsFake, endpoint: str, backend: HealthOmicsBackend, tmp_path: Path
) -> None:
    handle = await backend.submit(wdl_job(tmp_path))
    fake.step()
    fake.step()
    saved = handle.to_json()

    restarted = backend_for(endpoint)  # a new worker: nothing in memory
    again = Handle.from_json(saved)
    assert (await restarted.attach(again)).state is State.RUNNING
    fake.step()
    assert (await restarted.attach(again)).state is State.COMPLETE
    assert fake.start_calls["run-1"] == 1

    # a worker that died before saving the handle submits again: the same run
    resubmitted = await restarted.submit(wdl_job(tmp_path))
    assert resubmitted.data["omics_run"] == handle.data["omics_run"]
    assert len(fake.runs) == 1


async def test_a_request_the_api_model_refuses_is_a_clear_error(
    fake: OmicsFake, endpoint: str, backend: HealthOmicsBackend, tmp_path: Path
) -> None:
    # refused by botocore before it is sent: a workflowId is at least 1 character
    with pytest.raises(BackendError, match=r"start_run refused by its API model.*workflowId"):
        await backend.submit(wdl_job(tmp_path, url="omics:"))
    # and by the service (the fake, from the same model) when a client does not check
    unchecked = backend_for(endpoint, storage_type="STATIC", storage_capacity=1)
    unchecked._client = boto3.client(
        "omics",
        region_name="us-east-1",
        endpoint_url=endpoint,
        config=Config(inject_host_prefix=False, parameter_validation=False),
    )
    with pytest.raises(BackendError, match=r"ValidationException.*workflowId"):
        await unchecked.submit(wdl_job(tmp_path, url="omics:"))
    assert fake.calls["StartRun"] == 0


def test_the_fake_refuses_what_the_model_refuses(fake: OmicsFake, endpoint: str) -> None:
    client = boto3.client(
        "omics",
        region_name="us-east-1",
        endpoint_url=endpoint,
        config=Config(inject_host_prefix=False, parameter_validation=False),
    )
    with pytest.raises(ClientError) as caught:
        client.start_run(roleArn=ROLE, outputUri="s3://b", requestId="x", storageCapacity=-5)
    assert caught.value.response["Error"]["Code"] == "ValidationException"
    assert "storageCapacity" in caught.value.response["Error"]["Message"]


async def test_throttling_is_retried(
    fake: OmicsFake, backend: HealthOmicsBackend, tmp_path: Path
) -> None:
    handle = await backend.submit(wdl_job(tmp_path))
    fake.throttle = 1
    assert (await state(backend, handle)).state is State.QUEUED
    assert fake.throttle == 0  # answered ThrottlingException once, then retried


async def test_a_workflow_url_that_is_not_an_attachment_is_refused(
    backend: HealthOmicsBackend, tmp_path: Path
) -> None:
    with pytest.raises(InvalidRequest, match="workflow_url"):
        await backend.submit(wdl_job(tmp_path, url="other.wdl"))


def test_settings_check_storage_and_cache() -> None:
    with pytest.raises(ValidationError, match="storage_capacity is required"):
        env("http://x", storage_type="STATIC")
    with pytest.raises(ValidationError, match="cache_behavior needs a cache_id"):
        env("http://x", cache_behavior="CACHE_ALWAYS")
    with pytest.raises(ValidationError, match="role_arn"):
        HealthOmicsEnv(type="healthomics", region="r", role_arn="x", output_uri="s3://b")


async def test_static_storage_and_cache_settings_reach_start_run(
    fake: OmicsFake, endpoint: str, tmp_path: Path
) -> None:
    backend = backend_for(
        endpoint,
        storage_type="STATIC",
        storage_capacity=1200,
        cache_id="1234567",
        cache_behavior="CACHE_ALWAYS",
        log_level="ALL",
        retention_mode="REMOVE",
    )
    handle = await backend.submit(wdl_job(tmp_path))
    run = fake.runs[handle.data["omics_run"]].data
    assert (run["storageType"], run["storageCapacity"]) == ("STATIC", 1200)
    assert (run["cacheId"], run["cacheBehavior"]) == ("1234567", "CACHE_ALWAYS")
    assert (run["logLevel"], run["retentionMode"]) == ("ALL", "REMOVE")


def wes_settings(endpoint: str, tmp_path: Path, **more: Any) -> Settings:
    return Settings(
        data_dir=tmp_path / "data",
        lease_seconds=5,
        poll_interval=0.2,
        monitor_interval=0.02,
        allowed_hosts=["spindle.test"],
        compute_envs={"omics": env(endpoint, poll_interval=0.05).model_dump()},
        **more,
    )


CWL = "cwlVersion: v1.2\nclass: CommandLineTool\nbaseCommand: echo\ninputs: []\noutputs: []\n"
#: the workflow type, its version, main file and text of each language run through the API
LANGUAGES = {"WDL": ("1.0", "main.wdl", WDL), "CWL": ("v1.2", "main.cwl", CWL)}


async def wes_submit(client: httpx.AsyncClient, language: str = "WDL") -> str:
    version, main, text = LANGUAGES[language]
    r = await client.post(
        f"{WES}/runs",
        data={
            "workflow_type": language,
            "workflow_type_version": version,
            "workflow_url": main,
            "workflow_params": json.dumps({"who": "world"}),
            "workflow_engine_parameters": json.dumps({"compute_env": "omics"}),
        },
        files=[("workflow_attachment", (main, text.encode()))],
    )
    assert r.status_code == 200, r.text
    run_id: str = r.json()["run_id"]
    return run_id


ENDED = {"COMPLETE", "EXECUTOR_ERROR", "SYSTEM_ERROR", "CANCELED"}


@pytest.mark.parametrize("language", ["WDL", "CWL"])
async def test_a_run_through_the_wes_api(
    fake: OmicsFake, endpoint: str, tmp_path: Path, language: str
) -> None:
    """The installed plugin, configured as any compute environment: a WDL or CWL run needs
    no local engine, goes to COMPLETE as the fake plays it, with its tasks."""
    fake.auto_step = True  # every ListRuns moves the runs on
    async with app_client(make_app(wes_settings(endpoint, tmp_path), Catalog())) as client:
        info = (await client.get(f"{WES}/service-info")).json()
        assert "v1.2" in info["workflow_type_versions"]["CWL"]["workflow_type_version"]
        run_id = await wes_submit(client, language)
        ended = await wait_state(client, run_id, ENDED)
        assert ended == "COMPLETE", (await client.get(f"{WES}/runs/{run_id}")).text
        tasks = (await client.get(f"{WES}/runs/{run_id}/tasks")).json()["task_logs"]
        assert [t["name"] for t in tasks] == ["task-1", "task-2", "task-3"]
        task_log = await client.get(tasks[0]["stdout"])
        assert task_log.text == "task-1: hello\n", task_log.text
        log = (await client.get(f"{WES}/runs/{run_id}")).json()
        assert "completed" in (await client.get(log["run_log"]["stdout"])).text
        # the output, downloaded: a 307 to a presigned S3 URL with its content
        download = await client.get(log["outputs"][OUTPUT[0]]["location"])
        assert download.status_code == 307, download.text
        assert (await get(download.headers["location"])).content == OUTPUT[1]
    assert fake.start_calls == {run_id: 1}
    (started,) = (r.data for r in fake.runs.values())
    assert started["tags"][RUN_TAG] == run_id
    assert started["parameters"] == {"who": "world"}
    (workflow,) = fake.workflows.values()
    assert (workflow["engine"], workflow["main"]) == (language, LANGUAGES[language][1])


async def test_a_failed_run_through_the_wes_api_says_why(
    fake: OmicsFake, endpoint: str, tmp_path: Path
) -> None:
    fake.auto_step = True
    fake.failures["*"] = "WORKFLOW_TASK_FAILED"
    async with app_client(make_app(wes_settings(endpoint, tmp_path), Catalog())) as client:
        run_id = await wes_submit(client)
        assert await wait_state(client, run_id, ENDED) == "EXECUTOR_ERROR"
        body = (await client.get(f"{WES}/runs/{run_id}")).json()
        assert any("WORKFLOW_TASK_FAILED" in line for line in body["run_log"]["system_logs"])


async def until(condition: Callable[[], bool], seconds: float = 20) -> None:
    for _ in range(int(seconds / 0.02)):
        if condition():
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"not so within {seconds} s")


async def test_cancel_through_the_wes_api(fake: OmicsFake, endpoint: str, tmp_path: Path) -> None:
    async with app_client(make_app(wes_settings(endpoint, tmp_path), Catalog())) as client:
        run_id = await wes_submit(client)
        await wait_state(client, run_id, {"INITIALIZING"})
        await until(lambda: bool(fake.start_calls))  # StartRun done, the handle saved next
        r = await client.post(f"{WES}/runs/{run_id}/cancel")
        assert r.status_code == 200, r.text
        await until(lambda: fake.calls["CancelRun"] == 1)
        fake.step()  # STOPPING → CANCELLED
        assert await wait_state(client, run_id, ENDED) == "CANCELED"
    (run,) = (r.data for r in fake.runs.values())
    assert run["status"] == "CANCELLED"


def as_user(name: str) -> dict[str, str]:
    raw = f"{name}:{name}'s secret".encode()
    return {"Authorization": "Basic " + base64.b64encode(raw).decode()}


async def test_bob_cannot_see_alices_healthomics_run(
    fake: OmicsFake, endpoint: str, tmp_path: Path
) -> None:
    """Someone else's HealthOmics run is a 404 like one that does not exist: its state,
    tasks, logs, output download and cancel."""
    fake.auto_step = True
    app = make_app(wes_settings(endpoint, tmp_path, auth="basic"), Catalog())
    async with app_client(app) as client:
        for name in ("alice", "bob"):
            await app.state.accounts.add_user(name, password=f"{name}'s secret")
        client.headers.update(as_user("alice"))
        run_id = await wes_submit(client)
        assert await wait_state(client, run_id, ENDED) == "COMPLETE"
        log = (await client.get(f"{WES}/runs/{run_id}")).json()
        task = (await client.get(f"{WES}/runs/{run_id}/tasks")).json()["task_logs"][0]
        urls = [
            f"{WES}/runs/{run_id}",
            f"{WES}/runs/{run_id}/status",
            f"{WES}/runs/{run_id}/tasks",
            log["run_log"]["stdout"],
            task["stdout"],
            log["outputs"][OUTPUT[0]]["location"],
        ]
        assert (await client.get(urls[-1])).status_code == 307  # alice's own: hers
        bob = as_user("bob")
        for url in urls:
            r = await client.get(url, headers=bob)
            assert r.status_code == 404, (url, r.status_code, r.text)
        cancel = await client.post(f"{WES}/runs/{run_id}/cancel", headers=bob)
        assert cancel.status_code == 404
        listed = (await client.get(f"{WES}/runs", headers=bob)).json()["runs"]
        assert listed == []
