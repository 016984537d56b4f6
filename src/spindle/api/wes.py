"""The WES 1.1.0 paths, exactly as the spec names them, and nothing more (extensions live in
``extensions.py``). Summaries and operation ids come from the spec."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from starlette.datastructures import FormData, UploadFile

import spindle
from spindle.api import notify_form
from spindle.api.auth import CallerDep, ServiceInfoCallerDep
from spindle.api.deps import LinksDep, Service
from spindle.api.errors import documented
from spindle.api.links import Links
from spindle.api.multipart import check_length, read_form
from spindle.domain import Run, State, Task
from spindle.errors import InvalidRequest
from spindle.limits import clip_depth
from spindle.models import wes
from spindle.models.extensions import (
    ComputeEnvironment,
    SpindleRunListResponse,
    SpindleServiceInfo,
)
from spindle.paging import DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE
from spindle.runs.query import RunQuery
from spindle.runs.submit import EXTENSION_FIELDS, TEXT_FIELDS, parse_form

router = APIRouter(prefix="/ga4gh/wes/v1")

_MULTIPART = {
    "requestBody": {
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "properties": {
                        **{name: {"type": "string"} for name in TEXT_FIELDS},
                        "run_group_id": {
                            "type": "string",
                            "description": "Spindle extension: the run group the run joins "
                            "(as a run_group_id tag does). See docs/groups.md.",
                        },
                        "notify": {
                            "type": "string",
                            "description": "Spindle extension: subscriptions to this run's "
                            "events, a JSON object or list of them, e.g. "
                            '{"url": "https://example.org/hook", "events": ["run.failed"]}. '
                            "See docs/notifications.md.",
                        },
                        "workflow_attachment": {
                            "type": "array",
                            "items": {"type": "string", "format": "binary"},
                        },
                    },
                    "required": ["workflow_type", "workflow_type_version", "workflow_url"],
                }
            }
        },
        "required": True,
    }
}


def wes_time(value: datetime | None) -> str | None:
    """ISO 8601 as the spec spells it: ``%Y-%m-%dT%H:%M:%SZ``."""
    return value.strftime("%Y-%m-%dT%H:%M:%SZ") if value else None


def _request_model(run: Run) -> wes.RunRequest:
    r = run.request
    return wes.RunRequest(
        # (clipped: a run stored before the depth limit may nest deeper than a response can)
        workflow_params=clip_depth(r.workflow_params),
        workflow_type=r.workflow_type,
        workflow_type_version=r.workflow_type_version,
        tags=r.tags,
        workflow_engine_parameters=r.workflow_engine_parameters,
        workflow_engine=r.workflow_engine,
        workflow_engine_version=r.workflow_engine_version,
        workflow_url=r.workflow_url,
    )


def task_log(run_id: str, task: Task, links: Links) -> wes.TaskLog:
    return wes.TaskLog(
        id=task.id,
        name=task.name,
        cmd=task.cmd,
        start_time=wes_time(task.start_time),
        end_time=wes_time(task.end_time),
        stdout=links.task_log(run_id, task.id, "stdout") if task.stdout else None,
        stderr=links.task_log(run_id, task.id, "stderr") if task.stderr else None,
        exit_code=task.exit_code,
        system_logs=task.system_logs or None,
    )


@router.get(
    "/service-info",
    summary="GetServiceInfo",
    operation_id="GetServiceInfo",
    tags=["Service Info"],
    response_model=SpindleServiceInfo,
    response_model_exclude_none=True,
    responses=documented(400, 401, 403, 500),
)
async def get_service_info(service: Service, caller: ServiceInfoCallerDep) -> SpindleServiceInfo:
    """May include information related (but not limited to) the workflow descriptor formats,
    versions supported, the WES API versions supported, and information about general
    service availability. `system_state_counts` counts the runs the caller may see (none
    without credentials)."""
    settings = service.settings
    catalog = service.catalog
    counts = await service.counts(caller=caller)
    # Spindle's own parameters, good for every engine (docs/api.md), then each engine's
    parameters = [
        wes.DefaultWorkflowEngineParameter(
            name="compute_env", type="string", default_value="local"
        ),
        wes.DefaultWorkflowEngineParameter(name="cpus", type="int", default_value="1"),
        wes.DefaultWorkflowEngineParameter(name="priority", type="int", default_value="0"),
    ]
    for engine in catalog.engines.values():
        parameters.extend(
            wes.DefaultWorkflowEngineParameter(
                name=p.name, type=p.type, default_value=p.default_value
            )
            for p in engine.parameters()
        )
    return SpindleServiceInfo(
        id=settings.service_id,
        name=settings.service_name,
        type=wes.ServiceType(group="org.ga4gh", artifact="wes", version="1.1.0"),
        description="Spindle runs Snakemake and CWL workflows through the GA4GH WES API.",
        organization=wes.Organization(
            name=settings.organization_name, url=settings.organization_url
        ),
        environment=settings.environment,
        version=spindle.__version__,
        workflow_type_versions={
            t: wes.WorkflowTypeVersion(workflow_type_version=v)
            for t, v in service.workflow_types.items()
        },
        supported_wes_versions=["1.1.0"],
        supported_filesystem_protocols=["file", "http", "https"],
        workflow_engine_versions={
            name: wes.WorkflowEngineVersion(workflow_engine_version=[info.version])
            for name, info in catalog.infos.items()
        },
        default_workflow_engine_parameters=parameters,
        system_state_counts={s.value: counts.get(s.value, 0) for s in State},
        auth_instructions_url=settings.auth_instructions_url,
        tags={
            "compute_environments": ",".join(service.compute_envs),
            # installed engines whose version check has not answered yet (docs/api.md)
            **(
                {"engines_checking": ",".join(sorted(catalog.checking))} if catalog.checking else {}
            ),
        },
        compute_environments=[
            ComputeEnvironment(
                name=e.name, type=e.type, description=e.description, containers=e.containers
            )
            for e in service.compute_envs.values()
        ],
    )


#: the query parameters of GET /runs (any other is a 400 naming it)
LIST_PARAMETERS = frozenset(
    {
        "page_size",
        "page_token",
        "state",
        "workflow_type",
        "tag",
        "q",
        "run_group_id",
        "include_deleted",
        "submitted_after",
        "submitted_before",
        "owner",
        "sort",
        "order",
        "include_total",
    }
)


@router.get(
    "/runs",
    summary="ListRuns",
    operation_id="ListRuns",
    tags=["Workflow Runs"],
    response_model=SpindleRunListResponse,
    response_model_exclude_none=True,
    responses=documented(400, 401, 403, 500),
)
async def list_runs(
    request: Request,
    service: Service,
    caller: CallerDep,
    page_size: Annotated[
        int | None,
        Query(
            ge=1,
            le=MAX_PAGE_SIZE,
            description="OPTIONAL The preferred number of workflow runs to return in a page "
            f"(1 to {MAX_PAGE_SIZE}; default {DEFAULT_PAGE_SIZE}).",
        ),
    ] = None,
    page_token: Annotated[
        str | None,
        Query(description="OPTIONAL Token to use to indicate where to start getting results."),
    ] = None,
    state: Annotated[
        list[str],
        Query(
            description="Spindle extension: only runs in this state (repeat, or separate "
            "with commas, for several)."
        ),
    ] = [],  # noqa: B006 (FastAPI copies a query parameter's default)
    workflow_type: Annotated[
        str, Query(description="Spindle extension: only runs of this workflow type.")
    ] = "",
    tag: Annotated[
        str,
        Query(description="Spindle extension: only runs with this tag (`key` or `key=value`)."),
    ] = "",
    q: Annotated[
        str,
        Query(
            description="Spindle extension: case-insensitive text in the run id, the workflow "
            "URL or the tags."
        ),
    ] = "",
    run_group_id: Annotated[
        str,
        Query(description="Spindle extension: only the runs of this run group (docs/groups.md)."),
    ] = "",
    submitted_after: Annotated[
        str,
        Query(
            description="Spindle extension: runs submitted at or after this ISO 8601 time "
            "(UTC unless it says)."
        ),
    ] = "",
    submitted_before: Annotated[
        str,
        Query(description="Spindle extension: runs submitted before this ISO 8601 time."),
    ] = "",
    owner: Annotated[
        str,
        Query(
            description="Spindle extension: only the runs of the user of this name (an "
            "admin's filter; others may name only themselves)."
        ),
    ] = "",
    sort: Annotated[
        str,
        Query(description="Spindle extension: `submitted` (default), `state`, `type`, `workflow`."),
    ] = "",
    order: Annotated[str, Query(description="Spindle extension: `desc` (default) or `asc`.")] = "",
    include_total: Annotated[
        bool,
        Query(description="Spindle extension: add `total_count`, the runs matching on every page."),
    ] = False,
    include_deleted: Annotated[
        bool,
        Query(description="Spindle extension: list deleted runs too (DELETE /runs/{run_id})."),
    ] = False,
) -> SpindleRunListResponse:
    """This list should be provided in a stable ordering. Spindle lists the newest run first
    and pages by key, so a page never repeats or skips a run while others are submitted. The
    filters are Spindle's extension (the web UI's); a page token is good only with the filters
    and order it was issued for. A query parameter Spindle does not know is a 400."""
    unknown = sorted(set(request.query_params) - LIST_PARAMETERS)
    if unknown:
        raise InvalidRequest(
            unknown[0],
            "is not a ListRuns query parameter; parameters are: "
            + ", ".join(sorted(LIST_PARAMETERS)),
        )
    query = RunQuery.parse(
        states=state,
        workflow_type=workflow_type,
        tag=tag,
        text=q,
        sort=sort,
        order=order,
        group_id=run_group_id,
        submitted_after=submitted_after,
        submitted_before=submitted_before,
        owner=owner,
        include_deleted=include_deleted,
    )
    page = await service.search(query, page_size=page_size, page_token=page_token, caller=caller)
    total = await service.count_matching(query, caller=caller) if include_total else None
    return SpindleRunListResponse(
        runs=[
            wes.RunSummary(
                run_id=r.id,
                state=r.state,
                start_time=wes_time(r.start_time),
                end_time=wes_time(r.end_time),
                tags=r.tags,
            )
            for r in page.items
        ],
        next_page_token=page.next_page_token,
        total_count=total,
    )


def _check_body(request: Request, max_bytes: int) -> None:
    check_length(request, max_bytes)
    content_type = request.headers.get("content-type", "")
    # only multipart, as WES says (what another site's page may send is the guard's matter)
    if content_type.split(";", 1)[0].strip().lower() != "multipart/form-data":
        # 400, not 415: the spec documents 400 for a malformed RunWorkflow request
        raise InvalidRequest(
            "request body",
            "must be multipart/form-data (RunWorkflow), not "
            f"{content_type[:100] or 'a body without a Content-Type'}",
        )


def _split_form(form: FormData) -> tuple[dict[str, str | None], list[UploadFile]]:
    fields: dict[str, str | None] = {}
    uploads: list[UploadFile] = []
    for key, value in form.multi_items():
        if key == "workflow_attachment":
            if not isinstance(value, UploadFile):
                raise InvalidRequest("workflow_attachment", "must be a file part, not a text field")
            uploads.append(value)
        elif key in TEXT_FIELDS or key in EXTENSION_FIELDS:
            if not isinstance(value, str):
                raise InvalidRequest(key, "must be a text field, not a file")
            if key in fields:
                raise InvalidRequest(key, "is given more than once")
            fields[key] = value
        else:
            raise InvalidRequest(
                key,
                "is not a RunWorkflow form field; fields are: "
                + ", ".join((*TEXT_FIELDS, "workflow_attachment", *EXTENSION_FIELDS)),
            )
    return fields, uploads


@router.post(
    "/runs",
    summary="RunWorkflow",
    operation_id="RunWorkflow",
    tags=["Workflow Runs"],
    response_model=wes.RunId,
    responses=documented(400, 401, 403, 413, 500),
    openapi_extra=_MULTIPART,
)
async def run_workflow(request: Request, service: Service, caller: CallerDep) -> wes.RunId:
    """This endpoint creates a new workflow run and returns a `RunId` to monitor its
    progress. `workflow_url` is a path relative to the attachments (which keep their
    folders) or an http(s) URL; `workflow_params`, `tags` and `workflow_engine_parameters`
    are JSON objects sent as strings."""
    _check_body(request, service.settings.max_upload_bytes)
    # the form's spooled upload files are closed on leaving the block, whatever happens
    async with read_form(request) as form:
        fields, uploads = _split_form(form)
        run_request, group_id = parse_form(fields)
        on_insert = await notify_form.subscriptions(
            request.app.state.notify, fields.get("notify"), caller
        )
        run = await service.submit(
            run_request, uploads, group_id=group_id, caller=caller, on_insert=on_insert
        )
    return wes.RunId(run_id=run.id)


@router.get(
    "/runs/{run_id}",
    summary="GetRunLog",
    operation_id="GetRunLog",
    tags=["Workflow Runs"],
    response_model=wes.RunLog,
    response_model_exclude_none=True,
    responses=documented(401, 403, 404, 500),
)
async def get_run_log(
    run_id: str, service: Service, caller: CallerDep, links: LinksDep
) -> wes.RunLog:
    """This endpoint provides detailed information about a given workflow run."""
    run = await service.get(run_id, caller=caller)
    outputs: dict[str, Any] = links.outputs(run.id, clip_depth(run.outputs))
    return wes.RunLog(
        run_id=run.id,
        request=_request_model(run),
        state=run.state,
        run_log=wes.Log(
            name=run.request.workflow_url,
            cmd=run.cmd or None,
            start_time=wes_time(run.start_time),
            end_time=wes_time(run.end_time),
            stdout=links.run_log(run.id, "stdout"),
            stderr=links.run_log(run.id, "stderr"),
            exit_code=run.exit_code,
            system_logs=run.system_logs,
        ),
        task_logs_url=links.run(run.id, "tasks"),
        outputs=outputs,
    )


@router.get(
    "/runs/{run_id}/status",
    summary="GetRunStatus",
    operation_id="GetRunStatus",
    tags=["Workflow Runs"],
    response_model=wes.RunStatus,
    response_model_exclude_none=True,
    responses=documented(401, 403, 404, 500),
)
async def get_run_status(run_id: str, service: Service, caller: CallerDep) -> wes.RunStatus:
    """This provides an abbreviated (and likely fast depending on implementation) status of
    the running workflow."""
    return wes.RunStatus(run_id=run_id, state=await service.state(run_id, caller=caller))


@router.get(
    "/runs/{run_id}/tasks",
    summary="ListTasks",
    operation_id="ListTasks",
    tags=["Workflow Runs"],
    response_model=wes.TaskListResponse,
    response_model_exclude_none=True,
    responses=documented(400, 401, 403, 404, 500),
)
async def list_tasks(
    run_id: str,
    service: Service,
    caller: CallerDep,
    links: LinksDep,
    page_size: Annotated[
        int | None,
        Query(
            ge=1,
            le=MAX_PAGE_SIZE,
            description="OPTIONAL The preferred number of task logs to return in a page "
            f"(1 to {MAX_PAGE_SIZE}; default {DEFAULT_PAGE_SIZE}).",
        ),
    ] = None,
    page_token: Annotated[
        str | None,
        Query(description="OPTIONAL Token to use to indicate where to start getting results."),
    ] = None,
) -> wes.TaskListResponse:
    """This endpoint provides a paginated list of tasks that were executed as part of a
    given workflow run, in the order the engine started them."""
    page = await service.tasks(run_id, page_size=page_size, page_token=page_token, caller=caller)
    return wes.TaskListResponse(
        task_logs=[task_log(run_id, t, links) for t in page.items],
        next_page_token=page.next_page_token,
    )


@router.get(
    "/runs/{run_id}/tasks/{task_id}",
    summary="GetTask",
    operation_id="GetTask",
    tags=["Workflow Runs"],
    response_model=wes.TaskLog,
    response_model_exclude_none=True,
    responses=documented(401, 403, 404, 500),
)
async def get_task(
    run_id: str, task_id: str, service: Service, caller: CallerDep, links: LinksDep
) -> wes.TaskLog:
    """This endpoint provides a mechanism to retrieve information on a specific task, if it
    exists."""
    return task_log(run_id, await service.task(run_id, task_id, caller=caller), links)


@router.post(
    "/runs/{run_id}/cancel",
    summary="CancelRun",
    operation_id="CancelRun",
    tags=["Workflow Runs"],
    response_model=wes.RunId,
    responses=documented(401, 403, 404, 500),
)
async def cancel_run(run_id: str, service: Service, caller: CallerDep) -> wes.RunId:
    """Cancel a running workflow. A QUEUED run is CANCELED at once; a running one goes
    through CANCELING to CANCELED once every process it started is gone. Cancelling a run
    that has already finished changes nothing and answers 200."""
    await service.cancel(run_id, caller=caller)
    return wes.RunId(run_id=run_id)
