"""Spindle's documented extensions beside the WES paths: the log files and downloads that
WES responses link to, and run progress. See docs/api.md."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query
from fastapi.responses import FileResponse, RedirectResponse, Response

from spindle.api.auth import CallerDep
from spindle.api.deps import Service
from spindle.api.errors import documented
from spindle.api.health import check_ready
from spindle.domain import LogChunk
from spindle.limits import MAX_OFFSET
from spindle.models.extensions import RunProgress
from spindle.runs.logs import MAX_CHUNK
from spindle.storage.access import SignedURL

router = APIRouter(prefix="/ga4gh/wes/v1", tags=["Spindle extensions"])

NEXT_OFFSET = "X-Spindle-Next-Offset"


def _log_response(chunk: LogChunk) -> Response:
    return Response(
        chunk.data,
        media_type="text/plain; charset=utf-8",
        headers={NEXT_OFFSET: str(chunk.next_offset)},
    )


Offset = Annotated[
    int,
    Query(
        ge=0,
        le=MAX_OFFSET,
        description="Byte offset to start from; follow a live log with the "
        f"`{NEXT_OFFSET}` header of the previous answer.",
    ),
]

Limit = Annotated[
    int,
    Query(
        ge=1,
        le=MAX_CHUNK,
        description=f"Most bytes to answer (1 to {MAX_CHUNK}, the default).",
    ),
]


@router.get(
    "/ready",
    summary="GetReadiness",
    responses={**documented(503), 200: {"description": 'Ready: `{"ready": true}`.'}},
)
async def get_readiness(service: Service) -> dict[str, bool]:
    """Whether this Spindle can take runs now: the database answers and every installed
    engine has been checked; else 503 saying what is missing (no credentials needed)."""
    await check_ready(service, schema=False)  # the database answers; engines are checked
    return {"ready": True}


@router.get(
    "/runs/{run_id}/logs/{stream}",
    summary="GetRunLogStream",
    response_class=Response,
    responses={**documented(400, 401, 403, 404, 500), 200: {"content": {"text/plain": {}}}},
)
async def get_run_log_stream(
    run_id: str,
    stream: str,
    service: Service,
    caller: CallerDep,
    offset: Offset = 0,
    limit: Limit = MAX_CHUNK,
) -> Response:
    """The run's engine stdout or stderr (``stream``), from ``offset``; at most ``limit``
    bytes (4 MiB) per answer."""
    chunk = await service.read_log(run_id, stream, offset=offset, limit=limit, caller=caller)
    return _log_response(chunk)


@router.get(
    "/runs/{run_id}/tasks/{task_id}/logs/{stream}",
    summary="GetTaskLogStream",
    response_class=Response,
    responses={**documented(400, 401, 403, 404, 500), 200: {"content": {"text/plain": {}}}},
)
async def get_task_log_stream(
    run_id: str,
    task_id: str,
    stream: str,
    service: Service,
    caller: CallerDep,
    offset: Offset = 0,
    limit: Limit = MAX_CHUNK,
) -> Response:
    """One task's share of the engine's output: the bytes the engine wrote while that task
    ran (exact when tasks run one at a time), from ``offset``, at most ``limit`` bytes."""
    chunk = await service.read_task_log(
        run_id, task_id, stream, offset=offset, limit=limit, caller=caller
    )
    return _log_response(chunk)


@router.get(
    "/runs/{run_id}/files/{path:path}",
    summary="DownloadRunFile",
    response_class=FileResponse,
    responses={
        **documented(400, 401, 403, 404, 500, 503),
        200: {"content": {"application/octet-stream": {}}},
    },
)
async def download_run_file(
    run_id: str, path: str, service: Service, caller: CallerDep
) -> Response:
    """Download a file of the run (an output, or any file inside its folder) by the path
    that output ``location`` URLs carry. A run in a remote compute environment has the file
    fetched from there when asked for (503 if it cannot be reached now); storage that serves
    files by URL answers a redirect to a time-limited one."""
    found = await service.run_file(run_id, path, caller=caller)
    if isinstance(found, SignedURL):
        return RedirectResponse(found.url, status_code=307)
    return FileResponse(found.path, filename=found.name)


@router.get(
    "/runs/{run_id}/progress",
    summary="GetRunProgress",
    response_model=RunProgress,
    responses=documented(401, 403, 404, 500),
)
async def get_run_progress(run_id: str, service: Service, caller: CallerDep) -> RunProgress:
    """Tasks done out of the total the engine planned (``total`` is null when the engine
    does not say), and the tasks running now."""
    run = await service.get(run_id, caller=caller)
    p = run.progress
    return RunProgress(
        run_id=run.id,
        state=run.state,
        done=p.done if p else 0,
        total=p.total if p else None,
        current=p.current if p else [],
    )
