"""The ``healthomics`` backend: runs start on AWS HealthOmics, which runs WDL, CWL and
Nextflow workflows itself (no local engine, the job comes without a launch).

- submit: ``workflow_url`` ``omics:<id>`` (a private workflow) or ``omics:ready2run:<id>``
  names a workflow there; otherwise the run's attachments are zipped and registered with
  ``CreateWorkflow`` under a name made of their digest, found again by ``ListWorkflows`` so
  an identical definition is registered once; then ``StartRun`` with ``requestId`` =
  Spindle's run id (idempotent) and the tag ``spindle:run-id``. The handle holds the
  HealthOmics run id.
- poll: one ``ListRuns`` (paged) for every run, ``GetRun`` only for a run whose status
  changed to one that needs its detail (FAILED, DELETED) or that the list does not show.
- cancel: ``CancelRun``; report: ``ListRunTasks`` (paged) as WES tasks, the engine's and
  each task's CloudWatch Logs stream (``/aws/omics/WorkflowLog``) written into the run
  folder's ``logs/`` (served by the log routes), and once the run COMPLETED its outputs:
  every object under its ``runOutputUri``, as ``run:omics-outputs/<path>`` files that a
  download answers with a presigned S3 URL (:meth:`HealthOmicsBackend.link`).

boto3 is synchronous: every call runs in a thread (``asyncio.to_thread``); throttling and
transient errors are retried by botocore's ``standard`` retry mode.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import threading
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar
from urllib.parse import urlsplit

import boto3
from botocore.config import Config
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    ParamValidationError,
)
from botocore.exceptions import (
    ConnectionError as BotoConnectionError,
)

from spindle.backends.base import Backend, Capabilities, Handle, Status
from spindle.backends.healthomics.bundle import definition
from spindle.backends.healthomics.settings import HealthOmicsEnv
from spindle.compute import EnvSettings
from spindle.domain import LogSpan, State, Task
from spindle.errors import BackendError, InvalidRequest, NotFound, Unreachable
from spindle.execution import Job, Report
from spindle.storage.access import SignedURL
from spindle.storage.rundir import RunDir
from spindle.storage.s3 import presigned_get

if TYPE_CHECKING:
    from spindle.config import Settings

T = TypeVar("T")

#: The tag that carries Spindle's run id on every HealthOmics run it starts.
RUN_TAG = "spindle:run-id"
#: The tag that carries a registered definition's digest.
DIGEST_TAG = "spindle:digest"
#: Spindle's workflow types and the HealthOmics engine that runs each.
ENGINES = {"WDL": "WDL", "CWL": "CWL", "NEXTFLOW": "NEXTFLOW"}
#: The run folder path under which a run's HealthOmics outputs are named (``run:`` refs);
#: nothing is there locally: a download is a presigned URL to the object.
OUTPUTS = "omics-outputs"
#: HealthOmics' CloudWatch Logs group of every run's engine and task logs.
LOG_GROUP = "/aws/omics/WorkflowLog"
#: The run folder's copies of the task logs (the engine's is ``logs/stdout``).
TASK_LOGS = "omics-tasks"

_STATES = {
    "PENDING": State.QUEUED,
    "STARTING": State.QUEUED,
    "RUNNING": State.RUNNING,
    "STOPPING": State.CANCELING,
    "COMPLETED": State.COMPLETE,
    "CANCELLED": State.CANCELED,
}
_TASK_STATES = {
    "PENDING": State.QUEUED,
    "STARTING": State.INITIALIZING,
    "RUNNING": State.RUNNING,
    "STOPPING": State.CANCELING,
    "COMPLETED": State.COMPLETE,
    "CANCELLED": State.CANCELED,
    "FAILED": State.EXECUTOR_ERROR,
}
#: failureReason words that say the service failed, not the workflow: SYSTEM_ERROR
_SYSTEM_WORDS = ("SERVICE", "INTERNAL", "CAPACITY", "QUOTA", "UNAVAILABLE", "THROTTL")
#: statuses whose detail (failureReason, statusMessage) only GetRun has
_DETAILED = ("FAILED", "DELETED")


def failed_state(reason: str) -> State:
    """A FAILED run's state by its ``failureReason``."""
    upper = reason.upper()
    return State.SYSTEM_ERROR if any(w in upper for w in _SYSTEM_WORDS) else State.EXECUTOR_ERROR


class HealthOmicsBackend(Backend):
    name = "healthomics"
    settings_model = HealthOmicsEnv
    docs = "healthomics.md"
    # PENDING/STARTING are HealthOmics' own queue; nothing of the run is in a local folder
    capabilities = Capabilities(local_files=False, waits=False, queues=True)
    workflow_types: ClassVar[Mapping[str, tuple[str, ...]]] = {
        "WDL": ("1.0", "1.1", "draft-2"),
        "CWL": ("v1.0", "v1.1", "v1.2"),
        "NEXTFLOW": ("22.04", "23.10", "24.10"),
    }

    def __init__(
        self,
        env_name: str,
        env: HealthOmicsEnv,
        *,
        workflow_wait: float = 300,
        presign_seconds: int = 3600,
    ) -> None:
        self.env_name = env_name
        self.env = env
        self.poll_interval = env.poll_interval
        #: seconds to wait for a new workflow to be ACTIVE
        self.workflow_wait = workflow_wait
        #: seconds a presigned download of an output is valid
        self.presign_seconds = presign_seconds
        self._client: Any = None
        self._aws: dict[str, Any] = {}
        self._lock = threading.Lock()
        #: the last HealthOmics status polled of each run (HealthOmics run id → status)
        self._status_of: dict[str, str] = {}
        #: tasks whose log was copied after they ended (run id → task id → how often): twice
        #: (CloudWatch Logs may take a moment to have the last lines), then not read again
        self._logged: dict[str, dict[str, int]] = {}
        #: the status GetRun gave of a FAILED or DELETED run, not to ask again while it is
        #: polled (HealthOmics run id → status)
        self._seen: dict[str, Status] = {}

    @classmethod
    def from_settings(
        cls, env_name: str, env: EnvSettings, settings: Settings
    ) -> HealthOmicsBackend:
        assert isinstance(env, HealthOmicsEnv)
        return cls(env_name, env, presign_seconds=settings.s3_presign_seconds)

    @property
    def client(self) -> Any:
        """The boto3 ``omics`` client (thread-safe, made on first use)."""
        with self._lock:
            if self._client is None:
                self._client = boto3.session.Session().client(
                    "omics",
                    region_name=self.env.region,
                    endpoint_url=self.env.endpoint_url,
                    config=Config(
                        # a custom endpoint serves every operation on one host
                        inject_host_prefix=self.env.endpoint_url is None,
                        retries={"mode": "standard", "max_attempts": 5},
                    ),
                )
            return self._client

    def aws(self, service: str) -> Any:
        """The boto3 ``s3`` or ``logs`` client of the environment's region (made once)."""
        with self._lock:
            if service not in self._aws:
                env = self.env
                endpoint = env.s3_endpoint_url if service == "s3" else env.logs_endpoint_url
                more: dict[str, Any] = {}
                if service == "s3":
                    # an S3-compatible endpoint (moto) serves buckets by path
                    style = "path" if endpoint else "auto"
                    more = {"signature_version": "s3v4", "s3": {"addressing_style": style}}
                self._aws[service] = boto3.session.Session().client(
                    service,  # type: ignore[call-overload]
                    region_name=self.env.region,
                    endpoint_url=endpoint,
                    config=Config(retries={"mode": "standard", "max_attempts": 5}, **more),
                )
            return self._aws[service]

    async def _aws_call(self, service: str, op: str, **params: Any) -> Any:
        method: Callable[..., Any] = getattr(self.aws(service), op)
        return await asyncio.to_thread(_translated, f"{service} {op}", lambda: method(**params))

    async def _call(self, op: str, **params: Any) -> Any:
        """One API call in a thread; errors as Spindle's."""
        method: Callable[..., Any] = getattr(self.client, op)
        return await asyncio.to_thread(_translated, op, lambda: method(**params))

    # --- submit --------------------------------------------------------------------------

    async def submit(self, job: Job) -> Handle:
        request = job.run.request
        try:
            workflow_id, workflow_type = await self._workflow(job)
        except _WorkflowFailed as exc:
            # the workflow itself is wrong: the run ends EXECUTOR_ERROR (poll says so)
            return Handle(job.run_id, {"env": self.env_name, "workflow_failed": exc.message})
        params: dict[str, Any] = {
            "requestId": job.run_id,
            "name": f"spindle-{job.run_id}"[:128],
            "roleArn": self.env.role_arn,
            "outputUri": self.env.output_uri,
            "workflowId": workflow_id,
            "workflowType": workflow_type,
            "parameters": request.workflow_params,
            "storageType": self.env.storage_type,
            "tags": {**self.env.tags, RUN_TAG: job.run_id},
        }
        optional = {
            "storageCapacity": self.env.storage_capacity,
            "logLevel": self.env.log_level,
            "cacheId": self.env.cache_id,
            "cacheBehavior": self.env.cache_behavior,
            "retentionMode": self.env.retention_mode,
        }
        params.update({k: v for k, v in optional.items() if v is not None})
        started = await self._call("start_run", **params)
        data = {"env": self.env_name, "omics_run": started["id"]}
        if started.get("runOutputUri"):
            data["output_uri"] = started["runOutputUri"]
        return Handle(job.run_id, data)

    async def _workflow(self, job: Job) -> tuple[str, str]:
        """The HealthOmics workflow id and type the run starts, registered if need be."""
        url = job.run.request.workflow_url
        if url.startswith("omics:ready2run:"):
            return url.removeprefix("omics:ready2run:"), "READY2RUN"
        if url.startswith("omics:"):
            return url.removeprefix("omics:"), "PRIVATE"
        engine = ENGINES.get(job.run.request.workflow_type)
        if engine is None:
            raise InvalidRequest("workflow_type", "HealthOmics runs WDL, CWL and NEXTFLOW")
        d = await asyncio.to_thread(
            definition,
            job.rundir.attachments,
            url,
            engine,
            job.run.request.workflow_params,
        )
        found = await self._call("list_workflows", type="PRIVATE", name=d.name)
        usable = [w for w in found.get("items", []) if w.get("status") in ("ACTIVE", "CREATING")]
        if usable:
            workflow_id: str = usable[0]["id"]
        else:
            created = await self._call(
                "create_workflow",
                name=d.name,
                engine=d.engine,
                main=d.main,
                definitionZip=d.zip,
                parameterTemplate=d.parameter_template,
                requestId=d.name,  # one registration of a definition, however many ask
                tags={**self.env.tags, DIGEST_TAG: d.digest},
            )
            workflow_id = created["id"]
        await self._until_active(workflow_id)
        return workflow_id, "PRIVATE"

    async def _until_active(self, workflow_id: str) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.workflow_wait
        delay = 0.05  # looks at it back off to one every 5 s
        while True:
            w = await self._call("get_workflow", id=workflow_id)
            if w["status"] == "ACTIVE":
                return
            if w["status"] in ("FAILED", "DELETED", "INACTIVE"):
                raise _WorkflowFailed(
                    f"HealthOmics workflow {workflow_id} is {w['status']}: "
                    f"{w.get('statusMessage', 'no reason given')}"
                )
            if loop.time() > deadline:
                raise Unreachable(f"HealthOmics workflow {workflow_id} is still {w['status']}")
            await asyncio.sleep(delay)
            delay = min(5.0, delay * 2)

    # --- poll ----------------------------------------------------------------------------

    async def poll(self, handles: Sequence[Handle]) -> dict[str, Status]:
        if all("workflow_failed" in h.data for h in handles):  # nothing to ask HealthOmics
            return {h.run_id: _workflow_failed(h) for h in handles}
        listed: dict[str, str] = {}
        token: str | None = None
        while True:
            page = await self._call("list_runs", **({"startingToken": token} if token else {}))
            listed.update({r["id"]: r["status"] for r in page.get("items", [])})
            token = page.get("nextToken")
            if not token:
                break
        out: dict[str, Status] = {}
        for h in handles:
            if "workflow_failed" in h.data:
                out[h.run_id] = _workflow_failed(h)
                continue
            rid = h.data["omics_run"]
            status = listed.get(rid)
            if status is not None:
                self._status_of[rid] = status
            if status is not None and status not in _DETAILED:
                out[h.run_id] = Status(_STATES[status])
            elif status is not None and rid in self._seen:
                out[h.run_id] = self._seen[rid]  # its detail did not change since
            else:
                run = await self._call("get_run", id=rid)
                self._status_of[rid] = run["status"]
                out[h.run_id] = self._seen[rid] = _status(run)
        # only the runs still asked about (the worker stops asking once a run ended)
        asked = {h.data.get("omics_run") for h in handles}
        self._seen = {rid: s for rid, s in self._seen.items() if rid in asked}
        self._status_of = {rid: s for rid, s in self._status_of.items() if rid in asked}
        self._logged = {rid: t for rid, t in self._logged.items() if rid in asked}
        return out

    async def cancel(self, handle: Handle) -> None:
        if "workflow_failed" in handle.data:
            return  # nothing started
        with contextlib.suppress(_Conflict):  # it ended already
            await self._call("cancel_run", id=handle.data["omics_run"])

    async def report(self, handle: Handle, rundir: RunDir) -> Report | None:
        tasks: list[Task] = []
        if "workflow_failed" in handle.data:
            return Report(tasks=tasks)
        token: str | None = None
        while True:
            page = await self._call(
                "list_run_tasks",
                id=handle.data["omics_run"],
                **({"startingToken": token} if token else {}),
            )
            tasks += [_task(t) for t in page.get("items", [])]
            token = page.get("nextToken")
            if not token:
                break
        rid = handle.data["omics_run"]
        tasks = await self._logs(rid, tasks, rundir)
        outputs = None
        if self._status_of.get(rid) == "COMPLETED":
            outputs = await self._outputs(handle.data)
        return Report(tasks=tasks, planned=None, outputs=outputs)

    # --- logs ----------------------------------------------------------------------------

    async def _logs(self, rid: str, tasks: list[Task], rundir: RunDir) -> list[Task]:
        """The engine's log into ``logs/stdout`` and each task's into ``logs/omics-tasks/``,
        whole each time (CloudWatch Logs streams ``run/<id>`` and ``run/<id>/task/<task>``),
        a task's no more once it was copied twice after the task ended; the tasks with their stdout
        there. A stream not there yet is left out; logs out of
        reach are left as they were (the tasks are reported all the same)."""
        try:
            engine = await self._stream(f"run/{rid}")
            if engine is not None:
                await asyncio.to_thread(_write, rundir.logs / "stdout", engine)
            out = []
            logged = self._logged.setdefault(rid, {})
            for t in tasks:
                rel = f"{TASK_LOGS}/{t.id}"
                if logged.get(t.id, 0) >= 2:  # ended, and its whole log is here already
                    out.append(_with_log(t, LogSpan(f"logs/{rel}")))
                    continue
                text = await self._stream(f"run/{rid}/task/{t.id}")
                if text is None:
                    out.append(t)
                    continue
                await asyncio.to_thread(_write, rundir.logs / rel, text)
                out.append(_with_log(t, LogSpan(f"logs/{rel}")))
                if t.state.terminal:
                    logged[t.id] = logged.get(t.id, 0) + 1
            return out
        except BackendError:  # also Unreachable: the logs come with a later report
            return tasks

    async def _stream(self, stream: str) -> str | None:
        """The text of one log stream, or None if there is none (yet)."""
        lines: list[str] = []
        token: str | None = None
        while True:
            params: dict[str, Any] = {
                "logGroupName": LOG_GROUP,
                "logStreamName": stream,
                "startFromHead": True,
            }
            if token:
                params["nextToken"] = token
            try:
                page = await self._aws_call("logs", "get_log_events", **params)
            except _NotFound:
                return None
            lines += [e["message"].rstrip("\n") + "\n" for e in page.get("events", [])]
            if not page.get("events") or page.get("nextForwardToken") == token:
                return "".join(lines)
            token = page.get("nextForwardToken")

    # --- outputs -------------------------------------------------------------------------

    def _output_prefix(self, data: Mapping[str, Any]) -> tuple[str, str]:
        """Bucket and key prefix (ending ``/``) of a run's outputs."""
        uri = data.get("output_uri") or f"{self.env.output_uri.rstrip('/')}/{data['omics_run']}"
        parts = urlsplit(uri)
        return parts.netloc, parts.path.strip("/") + "/"

    async def _outputs(self, data: Mapping[str, Any]) -> dict[str, Any]:
        """Every object under the run's output URI, by its path there, as a File."""
        bucket, prefix = self._output_prefix(data)
        outputs: dict[str, Any] = {}
        token: str | None = None
        while True:
            params: dict[str, Any] = {"Bucket": bucket, "Prefix": prefix}
            if token:
                params["ContinuationToken"] = token
            page = await self._aws_call("s3", "list_objects_v2", **params)
            for obj in page.get("Contents", []):
                rel = obj["Key"][len(prefix) :]
                if not rel or rel.endswith("/"):
                    continue
                outputs[rel] = {
                    "class": "File",
                    "basename": rel.rsplit("/", 1)[-1],
                    "location": f"run:{OUTPUTS}/{rel}",
                    "size": obj["Size"],
                }
            token = page.get("NextContinuationToken")
            if not token:
                return outputs

    async def link(self, handle: Mapping[str, Any], rel: PurePosixPath) -> SignedURL | None:
        """A presigned GET of the output ``rel`` (``omics-outputs/<path>``) of the run, or
        None for any other file of its folder (the storage seam's ``URLSource``; ``handle``
        is the saved handle, ``Handle.to_json``)."""
        data = Handle.from_json(dict(handle)).data
        if "omics_run" not in data or rel.parts[:1] != (OUTPUTS,) or len(rel.parts) < 2:
            return None
        if ".." in rel.parts:  # never a key outside the run's prefix, however S3 reads it
            raise NotFound(f"the run has no output {rel.as_posix()!r}")
        bucket, prefix = self._output_prefix(data)
        key = prefix + "/".join(rel.parts[1:])
        try:
            await self._aws_call("s3", "head_object", Bucket=bucket, Key=key)
        except _NotFound:
            raise NotFound(f"the run has no output {rel.as_posix()!r}") from None
        return await asyncio.to_thread(
            presigned_get, self.aws("s3"), bucket, key, rel.name, self.presign_seconds
        )


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def _with_log(t: Task, span: LogSpan) -> Task:
    return dataclasses.replace(t, stdout=span)


def _workflow_failed(handle: Handle) -> Status:
    return Status(State.EXECUTOR_ERROR, reason=handle.data["workflow_failed"])


def _status(run: Mapping[str, Any]) -> Status:
    status = run["status"]
    message = run.get("statusMessage")
    if status == "FAILED":
        reason = run.get("failureReason", "")
        text = ": ".join(s for s in (reason, message) if s) or "HealthOmics gave no reason"
        return Status(failed_state(reason), reason=f"HealthOmics run failed: {text}")
    if status == "DELETED":
        return Status(State.SYSTEM_ERROR, reason=f"HealthOmics run was deleted: {message or ''}")
    return Status(_STATES[status], reason=message)


def _task(t: Mapping[str, Any]) -> Task:
    start: datetime | None = t.get("startTime")
    stop: datetime | None = t.get("stopTime")
    detail = [
        f"{k}={t[k]}" for k in ("cpus", "memory", "gpus", "instanceType") if t.get(k) is not None
    ]
    return Task(
        id=t["taskId"],
        name=t.get("name", t["taskId"]),
        state=_TASK_STATES.get(t.get("status", ""), State.UNKNOWN),
        start_time=start,
        end_time=stop,
        system_logs=[f"HealthOmics task {t['taskId']}: " + " ".join(detail)],
    )


class _WorkflowFailed(BackendError):
    """The workflow did not become ACTIVE in HealthOmics (its definition is wrong)."""


class _Conflict(BackendError):
    """HealthOmics' ConflictException (e.g. cancelling a run that ended)."""


class _NotFound(BackendError):
    """There is no such resource (a log stream not made yet, an S3 object)."""


def _translated(op: str, call: Callable[[], T]) -> T:
    try:
        return call()
    except ParamValidationError as exc:
        text = "; ".join(str(exc).splitlines())
        raise BackendError(f"HealthOmics {op} refused by its API model: {text}") from None
    except ClientError as exc:
        err = exc.response.get("Error", {})
        code, message = err.get("Code", "Error"), err.get("Message", str(exc))
        text = f"HealthOmics {op}: {code}: {message}"
        if code == "ConflictException":
            raise _Conflict(text) from None
        if code in ("ResourceNotFoundException", "NoSuchKey", "404"):
            raise _NotFound(text) from None
        if code in ("ThrottlingException", "ServiceQuotaExceededException") or (
            exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) >= 500
        ):
            raise Unreachable(text) from None
        raise BackendError(text) from None
    except (BotoConnectionError, BotoCoreError) as exc:
        raise Unreachable(f"HealthOmics {op}: {exc}") from None
