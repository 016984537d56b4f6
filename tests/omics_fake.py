"""A loopback fake of the AWS HealthOmics REST API (there is no emulator: moto has no
``omics`` backend), for real boto3 to talk to.

Every request is parsed from the REST call by botocore's own ``omics`` service model (the
operation found by its HTTP method and URI template, members read from their ``uri``,
``querystring`` or body locations) and checked by botocore's ``ParamValidator`` against the
operation's input shape; every answer is checked against its output shape before it is sent,
so the fake cannot drift from what the real service accepts and returns. A request the model
refuses is answered ``400 ValidationException`` with the validator's message.

Runs are played by steps: :meth:`OmicsFake.step` moves every live run one state on
(PENDING → STARTING → RUNNING → COMPLETED, or FAILED with the ``failureReason`` set in
:attr:`OmicsFake.failures` for its ``requestId``); ``auto_step`` does a step on every
``ListRuns``, for tests through the whole service. ``start_calls`` counts ``StartRun`` per
``requestId``.

With :attr:`OmicsFake.aws` (a moto server's endpoint) the fake also does what HealthOmics
does outside its API: a run that starts writes its engine and task log events to CloudWatch
Logs (``/aws/omics/WorkflowLog``, streams ``run/<id>`` and ``run/<id>/task/<task>``), and a
run that completes writes :data:`OUTPUT` under its ``runOutputUri`` in S3.
"""

from __future__ import annotations

import base64
import itertools
import json
import re
import threading
import uuid
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import boto3
import botocore.session
from botocore.config import Config
from botocore.model import OperationModel, Shape
from botocore.validate import ParamValidator

ACCOUNT = "123456789012"
REGION = "us-east-1"
OPERATIONS = (
    "CreateWorkflow",
    "GetWorkflow",
    "ListWorkflows",
    "StartRun",
    "GetRun",
    "ListRuns",
    "CancelRun",
    "ListRunTasks",
)
_NEXT = {"PENDING": "STARTING", "STARTING": "RUNNING", "RUNNING": "COMPLETED"}
#: The object a completed run writes under its runOutputUri: its path there, its content.
OUTPUT = ("out/result.txt", b"hello from HealthOmics\n")
LOG_GROUP = "/aws/omics/WorkflowLog"
_IDS = itertools.count(1000001)


class ApiError(Exception):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


@dataclass
class FakeRun:
    data: dict[str, Any]
    tasks: list[dict[str, Any]] = field(default_factory=list)


class OmicsFake:
    """The service's state and its operations (thread-safe: the server is threaded)."""

    def __init__(self, *, tasks: int = 2, auto_step: bool = False) -> None:
        self.model = model = botocore.session.get_session().get_service_model("omics")
        self.ops: list[tuple[str, re.Pattern[str], OperationModel]] = []
        for name in OPERATIONS:
            op = model.operation_model(name)
            path = op.http["requestUri"].split("?")[0]
            pattern = re.sub(r"\\{(\w+)\\}", r"(?P<\1>[^/]+)", re.escape(path))
            self.ops.append((op.http["method"], re.compile(f"^{pattern}$"), op))
        self.validator = ParamValidator()
        self.lock = threading.Lock()
        self.workflows: dict[str, dict[str, Any]] = {}
        self.runs: dict[str, FakeRun] = {}
        self.by_request: dict[str, str] = {}
        #: StartRun calls per requestId
        self.start_calls: Counter[str] = Counter()
        #: calls per operation
        self.calls: Counter[str] = Counter()
        #: requestId (or ``*``: every run) → failureReason: that run ends FAILED with it
        self.failures: dict[str, str] = {}
        #: workflow name → status message: that workflow ends FAILED with it
        self.workflow_failures: dict[str, str] = {}
        self.tasks = tasks
        #: answers the output shapes refused (a bug of the fake)
        self.model_errors: list[str] = []
        #: how many of the next requests are answered ThrottlingException
        self.throttle = 0
        self.auto_step = auto_step
        self._ids = _IDS  # unique in the session: the moto server's log streams are shared
        #: run id → its requestId
        self._request_of: dict[str, str] = {}
        #: a moto server's endpoint for S3 and CloudWatch Logs (None: no outputs, no logs)
        self.aws: str | None = None

    # --- outside the API: S3 and CloudWatch Logs ----------------------------------------------

    def _client(self, service: str) -> Any:
        return boto3.client(
            service,  # type: ignore[call-overload]
            endpoint_url=self.aws,
            region_name=REGION,
            config=Config(s3={"addressing_style": "path"}),
        )

    def _log(self, stream: str, *lines: str) -> None:
        if self.aws is None:
            return
        logs = self._client("logs")
        with suppress(logs.exceptions.ResourceAlreadyExistsException):
            logs.create_log_group(logGroupName=LOG_GROUP)
        with suppress(logs.exceptions.ResourceAlreadyExistsException):
            logs.create_log_stream(logGroupName=LOG_GROUP, logStreamName=stream)
        stamp = int(_now().timestamp() * 1000)
        logs.put_log_events(
            logGroupName=LOG_GROUP,
            logStreamName=stream,
            logEvents=[{"timestamp": stamp, "message": line} for line in lines],
        )

    def _write_output(self, run: dict[str, Any]) -> None:
        if self.aws is None:
            return
        bucket, _, prefix = run["runOutputUri"].removeprefix("s3://").partition("/")
        key = f"{prefix.strip('/')}/{OUTPUT[0]}".lstrip("/")
        self._client("s3").put_object(Bucket=bucket, Key=key, Body=OUTPUT[1])

    # --- the REST layer --------------------------------------------------------------------

    def route(self, method: str, url: str, body: bytes) -> tuple[OperationModel, dict[str, Any]]:
        parts = urlsplit(url)
        for m, pattern, op in self.ops:
            match = pattern.match(parts.path)
            if m != method or not match:
                continue
            params: dict[str, Any] = {}
            shape = op.input_shape
            query = parse_qs(parts.query)
            members = shape.members if shape else {}
            for name, member in members.items():
                loc = member.serialization.get("location")
                wire = member.serialization.get("name", name)
                if loc == "uri":
                    params[name] = unquote(match.group(wire))
                elif loc == "querystring" and wire in query:
                    values = query[wire]
                    params[name] = (
                        _scalar(member, values[0]) if member.type_name != "list" else values
                    )
            if body:
                for name, value in json.loads(body).items():
                    member = members.get(name)
                    if member is not None and member.type_name == "blob":
                        value = base64.b64decode(value)
                    params[name] = value
            if shape is not None:
                report = self.validator.validate(params, shape)
                if report.has_errors():
                    raise ApiError(400, "ValidationException", report.generate_report())
            return op, params
        raise ApiError(404, "ResourceNotFoundException", f"no operation for {method} {parts.path}")

    def answer(self, op: OperationModel, params: dict[str, Any]) -> dict[str, Any]:
        with self.lock:
            self.calls[op.name] += 1
            out: dict[str, Any] = getattr(self, "_" + op.name)(params)
        if op.output_shape is not None:
            report = self.validator.validate(out, op.output_shape)
            if report.has_errors():  # the fake's own bug: tests check model_errors is empty
                self.model_errors.append(f"{op.name}: {report.generate_report()}")
                raise ApiError(500, "InternalServerException", self.model_errors[-1])
        return out

    # --- the operations (called under the lock) ----------------------------------------------

    def _CreateWorkflow(self, p: dict[str, Any]) -> dict[str, Any]:
        wid = str(next(self._ids))
        self.workflows[wid] = {
            "id": wid,
            "arn": f"arn:aws:omics:{REGION}:{ACCOUNT}:workflow/{wid}",
            "status": "CREATING",
            "type": "PRIVATE",
            "name": p.get("name", ""),
            "engine": p.get("engine", "WDL"),
            "tags": p.get("tags", {}),
            **{k: p[k] for k in ("main", "parameterTemplate") if k in p},
            "creationTime": _now(),
            "definitionZipSize": len(p.get("definitionZip", b"")),
        }
        w = self.workflows[wid]
        return {k: w[k] for k in ("arn", "id", "status", "tags")}

    def _GetWorkflow(self, p: dict[str, Any]) -> dict[str, Any]:
        w = self._workflow(p["id"])
        if w["status"] == "CREATING":  # ready on the second look
            failure = self.workflow_failures.get(w["name"])
            w["status"] = "FAILED" if failure else "ACTIVE"
            if failure:
                w["statusMessage"] = failure
        return self._shaped("GetWorkflow", w)

    def _shaped(self, op: str, data: dict[str, Any]) -> dict[str, Any]:
        """What of ``data`` the operation's output shape has (the fake keeps more)."""
        members = self.model.operation_model(op).output_shape.members
        return {k: v for k, v in data.items() if k in members}

    def _ListWorkflows(self, p: dict[str, Any]) -> dict[str, Any]:
        items = [
            {k: w[k] for k in ("arn", "id", "name", "status", "type", "creationTime")}
            for w in self.workflows.values()
            if w["name"] == p.get("name", w["name"]) and w["type"] == p.get("type", w["type"])
        ]
        return {"items": items}

    def _workflow(self, wid: str) -> dict[str, Any]:
        if wid not in self.workflows:
            raise ApiError(404, "ResourceNotFoundException", f"workflow {wid} not found")
        return self.workflows[wid]

    def _StartRun(self, p: dict[str, Any]) -> dict[str, Any]:
        self.start_calls[p["requestId"]] += 1
        if p["requestId"] in self.by_request:
            run = self.runs[self.by_request[p["requestId"]]].data
        else:
            if p.get("workflowType", "PRIVATE") == "PRIVATE":
                w = self._workflow(p.get("workflowId", ""))
                if w["status"] != "ACTIVE":
                    raise ApiError(409, "ConflictException", f"workflow {w['id']} is not ACTIVE")
            rid = str(next(self._ids))
            run = {
                "id": rid,
                "arn": f"arn:aws:omics:{REGION}:{ACCOUNT}:run/{rid}",
                "status": "PENDING",
                "creationTime": _now(),
                "runOutputUri": f"{p['outputUri'].rstrip('/')}/{rid}",
                "uuid": str(uuid.uuid4()),
                **{k: v for k, v in p.items() if k != "requestId"},
            }
            self.runs[rid] = FakeRun(run)
            self.by_request[p["requestId"]] = rid
            self._request_of[rid] = p["requestId"]
        keys = ("arn", "id", "status", "tags", "uuid", "runOutputUri")
        return {k: run[k] for k in keys if k in run}

    def _GetRun(self, p: dict[str, Any]) -> dict[str, Any]:
        run = self._run(p["id"]).data
        return self._shaped("GetRun", run)

    def _ListRuns(self, p: dict[str, Any]) -> dict[str, Any]:
        if self.auto_step:
            self._step()
        keys = (
            "arn",
            "id",
            "status",
            "workflowId",
            "name",
            "creationTime",
            "startTime",
            "stopTime",
        )
        items = [
            {k: r.data[k] for k in keys if k in r.data}
            for r in self.runs.values()
            if r.data["status"] != "DELETED"
            and r.data.get("name") == p.get("name", r.data.get("name"))
            and r.data["status"] == p.get("status", r.data["status"])
        ]
        # pages of maxResults (default 2 here, so paging is always exercised)
        size = p.get("maxResults", 2)
        start = int(p.get("startingToken", "0"))
        page: dict[str, Any] = {"items": items[start : start + size]}
        if start + size < len(items):
            page["nextToken"] = str(start + size)
        return page

    def _CancelRun(self, p: dict[str, Any]) -> dict[str, Any]:
        run = self._run(p["id"]).data
        if run["status"] in ("COMPLETED", "FAILED", "CANCELLED", "DELETED"):
            raise ApiError(409, "ConflictException", f"run {run['id']} is {run['status']}")
        run["status"] = "STOPPING"
        return {}

    def _ListRunTasks(self, p: dict[str, Any]) -> dict[str, Any]:
        return {"items": [dict(t) for t in self._run(p["id"]).tasks]}

    def _run(self, rid: str) -> FakeRun:
        if rid not in self.runs:
            raise ApiError(404, "ResourceNotFoundException", f"run {rid} not found")
        return self.runs[rid]

    # --- the clock -------------------------------------------------------------------------

    def step(self) -> None:
        """Every live run one state on."""
        with self.lock:
            self._step()

    def _step(self) -> None:
        for run in self.runs.values():
            data = run.data
            status = data["status"]
            if status == "STOPPING":
                data.update(status="CANCELLED", stopTime=_now())
                for t in run.tasks:
                    if t["status"] == "RUNNING":
                        t.update(status="CANCELLED", stopTime=_now())
            elif status == "STARTING":
                data.update(status="RUNNING", startTime=_now())
                run.tasks = [
                    {
                        "taskId": f"{data['id']}{n}",
                        "name": f"task-{n}",
                        "status": "RUNNING",
                        "cpus": 2,
                        "memory": 4,
                        "gpus": 0,
                        "creationTime": _now(),
                        "startTime": _now(),
                    }
                    for n in range(1, self.tasks + 1)
                ]
                self._log(f"run/{data['id']}", f"engine: run {data['id']} started")
                for t in run.tasks:
                    self._log(f"run/{data['id']}/task/{t['taskId']}", f"{t['name']}: hello")
            elif status == "RUNNING":
                reason = self.failures.get(self._request_of[data["id"]], self.failures.get("*"))
                if reason:
                    data.update(
                        status="FAILED",
                        failureReason=reason,
                        statusMessage=f"run failed: {reason}",
                        stopTime=_now(),
                    )
                else:
                    self._write_output(data)
                    self._log(f"run/{data['id']}", f"engine: run {data['id']} completed")
                    data.update(status="COMPLETED", stopTime=_now())
                for t in run.tasks:
                    t.update(status="FAILED" if reason else "COMPLETED", stopTime=_now())
            elif status in _NEXT:
                data["status"] = _NEXT[status]


def _scalar(member: Shape, raw: str) -> Any:
    if member.type_name == "integer":
        return int(raw)
    if member.type_name == "boolean":
        return raw == "true"
    return raw


def _now() -> datetime:
    return datetime.now(UTC)


def _json(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, bytes):
        return base64.b64encode(value).decode()
    if isinstance(value, dict):
        return {k: _json(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_json(v) for v in value]
    return value


def _handler(fake: OmicsFake) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def _serve(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            try:
                with fake.lock:
                    throttled, fake.throttle = fake.throttle > 0, max(0, fake.throttle - 1)
                if throttled:
                    raise ApiError(429, "ThrottlingException", "Rate exceeded")
                op, params = fake.route(self.command, self.path, body)
                status, out = op.http.get("responseCode", 200), fake.answer(op, params)
                payload = json.dumps(_json(out)).encode()
                headers = {"Content-Type": "application/json"}
            except ApiError as e:
                status, payload = e.status, json.dumps({"message": e.message}).encode()
                headers = {"Content-Type": "application/json", "x-amzn-ErrorType": e.code}
            self.send_response(status)
            for k, v in headers.items():
                self.send_header(k, v)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        do_GET = do_POST = do_DELETE = do_PUT = _serve

        def log_message(self, format: str, *args: Any) -> None:
            pass

    return Handler


@contextmanager
def serve(fake: OmicsFake) -> Iterator[str]:
    """The fake on a free loopback port; yields its endpoint URL."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(fake))
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
