"""Live logs as server-sent events (a documented extension, see docs/api.md): a run's engine
stdout or stderr, or one task's share of it, pushed as it is written, resumable from a
byte offset (``Last-Event-ID``), ending once the run has ended and the log is drained."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Annotated

import anyio
from fastapi import APIRouter, Header, Query, Request
from sse_starlette import EventSourceResponse, ServerSentEvent

from spindle.api.auth import CallerDep
from spindle.api.deps import Service
from spindle.api.errors import documented
from spindle.api.events import _recheck, sse_response, until
from spindle.errors import InvalidRequest
from spindle.limits import MAX_OFFSET
from spindle.runs.logfollow import LogEnd, LogPiece

router = APIRouter(prefix="/ga4gh/wes/v1", tags=["Spindle extensions"])

_STREAM: dict[int | str, dict[str, object]] = {
    200: {"content": {"text/event-stream": {}}, "description": "An SSE stream."}
}

Offset = Annotated[
    int,
    Query(
        ge=0,
        le=MAX_OFFSET,
        description="Byte offset to start from; a `Last-Event-ID` header (sent by a "
        "reconnecting EventSource: the offset after the last piece it got) takes precedence.",
    ),
]
LastEventId = Annotated[str | None, Header(include_in_schema=False)]


def _start(offset: int, last_event_id: str | None) -> int:
    if last_event_id:
        digits = last_event_id.isascii() and last_event_id.isdigit()
        if (
            not digits
            or len(last_event_id) > len(str(MAX_OFFSET))
            or (int(last_event_id) > MAX_OFFSET)
        ):
            shown = last_event_id[:40] + ("..." if len(last_event_id) > 40 else "")
            raise InvalidRequest(
                "Last-Event-ID", f"{shown!r} is not a byte offset (0 to {MAX_OFFSET})"
            )
        return int(last_event_id)
    return offset


def _sse(item: LogPiece | LogEnd) -> ServerSentEvent:
    if isinstance(item, LogPiece):
        data = {"offset": item.offset, "next_offset": item.next_offset, "text": item.text}
        return ServerSentEvent(data=json.dumps(data), event="log", id=str(item.next_offset))
    done = {"state": item.state.value if item.state else None, "next_offset": item.next_offset}
    return ServerSentEvent(data=json.dumps(done), event="done", id=str(item.next_offset))


def _respond(items: AsyncIterator[LogPiece | LogEnd]) -> EventSourceResponse:
    async def body(shutdown: anyio.Event) -> AsyncIterator[ServerSentEvent]:
        async for item in until(shutdown, items):
            yield _sse(item)

    return sse_response(body)


@router.get(
    "/runs/{run_id}/logs/{stream}/stream",
    summary="StreamRunLog",
    response_class=EventSourceResponse,
    responses={**documented(400, 401, 403, 404, 429, 500), **_STREAM},
)
async def stream_run_log(
    run_id: str,
    stream: str,
    request: Request,
    service: Service,
    caller: CallerDep,
    offset: Offset = 0,
    last_event_id: LastEventId = None,
) -> EventSourceResponse:
    """The run's engine stdout or stderr (`stream`) as server-sent events, from `offset`
    (or `Last-Event-ID`) as it is written.

    Each `log` event carries `{"offset", "next_offset", "text"}` (whole lines, UTF-8; bytes
    that are not UTF-8 read as U+FFFD) and has `next_offset` as its id, so a reconnecting
    EventSource resumes exactly where it stopped. Once the log is complete and drained, a
    `done` event (`{"state", "next_offset"}`) closes the stream. 429 when the caller, or the
    server, has as many streams open as it may."""
    items = await service.follow_log(
        run_id,
        stream,
        offset=_start(offset, last_event_id),
        caller=caller,
        check=_recheck(request),
    )
    return _respond(items)


@router.get(
    "/runs/{run_id}/tasks/{task_id}/logs/{stream}/stream",
    summary="StreamTaskLog",
    response_class=EventSourceResponse,
    responses={**documented(400, 401, 403, 404, 429, 500), **_STREAM},
)
async def stream_task_log(
    run_id: str,
    task_id: str,
    stream: str,
    request: Request,
    service: Service,
    caller: CallerDep,
    offset: Offset = 0,
    last_event_id: LastEventId = None,
) -> EventSourceResponse:
    """One task's share of the engine's output (`stream`) as server-sent events, from
    `offset` (or `Last-Event-ID`, relative to the task's share) as it is written; it ends
    once the task (or the run) has ended.

    Each `log` event carries `{"offset", "next_offset", "text"}` (whole lines, UTF-8; bytes
    that are not UTF-8 read as U+FFFD) and has `next_offset` as its id, so a reconnecting
    EventSource resumes exactly where it stopped. Once the log is complete and drained, a
    `done` event (`{"state", "next_offset"}`) closes the stream. 429 when the caller, or the
    server, has as many streams open as it may."""
    items = await service.follow_log(
        run_id,
        stream,
        task_id=task_id,
        offset=_start(offset, last_event_id),
        caller=caller,
        check=_recheck(request),
    )
    return _respond(items)
