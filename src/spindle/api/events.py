"""Server-sent event streams over the events table (a documented extension, see
docs/api.md): one run's events and progress until it ends, or every run's events."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Annotated, Any, TypeVar

import anyio
from fastapi import APIRouter, Header, Query, Request
from sse_starlette import EventSourceResponse, ServerSentEvent

from spindle.api.auth import CallerDep, read_credentials
from spindle.api.deps import Service
from spindle.api.errors import documented
from spindle.auth.authenticator import Authenticator
from spindle.domain import Event, Progress, State
from spindle.errors import InvalidRequest, SpindleError
from spindle.limits import MAX_ID
from spindle.models.extensions import ProgressUpdate, RunDone, RunEvent

router = APIRouter(prefix="/ga4gh/wes/v1", tags=["Spindle extensions"])

#: seconds between keep-alive comments on an idle stream
PING_SECONDS = 15
#: seconds a stream has, once the server shuts down, to end its body before it is cut
SHUTDOWN_GRACE_SECONDS = 2.0
T = TypeVar("T")
_STREAM: dict[int | str, dict[str, Any]] = {
    200: {"content": {"text/event-stream": {}}, "description": "An SSE stream."}
}

After = Annotated[
    int | None,
    Query(
        ge=0,
        le=MAX_ID,
        description="Send the events after this event id; a `Last-Event-ID` header (sent "
        "by a reconnecting EventSource) takes precedence.",
    ),
]
LastEventId = Annotated[str | None, Header(include_in_schema=False)]


def _position(after: int | None, last_event_id: str | None) -> int | None:
    """Where a stream starts: after ``Last-Event-ID`` when a reconnecting EventSource sends
    it (it is further on than the URL's ``after``), else after ``after``."""
    if last_event_id:
        # (ASCII digits only: str.isdigit() takes "²", which int() does not)
        digits = last_event_id.isascii() and last_event_id.isdigit()
        if not digits or len(last_event_id) > len(str(MAX_ID)) or int(last_event_id) > MAX_ID:
            shown = last_event_id[:40] + ("..." if len(last_event_id) > 40 else "")
            raise InvalidRequest("Last-Event-ID", f"{shown!r} is not an event id (0 to {MAX_ID})")
        return int(last_event_id)
    return after


def run_event(event: Event) -> RunEvent:
    to = event.data.get("to") if event.kind == "state" else None
    return RunEvent(
        id=event.id,
        run_id=event.run_id,
        at=event.at.isoformat().replace("+00:00", "Z"),
        kind=event.kind,
        state=State(to) if to else None,
        reason=event.data.get("reason"),
        data=event.data,
    )


def _sse(item: Event | Progress, run_id: str) -> ServerSentEvent:
    if isinstance(item, Event):
        return ServerSentEvent(
            data=run_event(item).model_dump_json(), event=item.kind, id=str(item.id)
        )
    update = ProgressUpdate(run_id=run_id, done=item.done, total=item.total, current=item.current)
    return ServerSentEvent(data=update.model_dump_json(), event="progress")


def _recheck(request: Request) -> Callable[[], Awaitable[bool]]:
    """Whether the credentials a stream was opened with still hold (a revoked token or an
    ended session stops the stream: ``RunService.follow``'s ``check``)."""
    authenticator: Authenticator = request.app.state.authenticator
    creds = read_credentials(request, request.app.state.settings)

    async def still_valid() -> bool:
        return await authenticator.still_valid(creds)

    return still_valid


async def until(stop: anyio.Event, items: AsyncIterator[T]) -> AsyncIterator[T]:
    """``items`` until ``stop`` is set: then the iteration ends at once (``items`` closed)
    rather than after its next item, which may be a long way off."""
    waiter = asyncio.ensure_future(stop.wait())
    following: asyncio.Future[T] | None = None
    try:
        while True:
            following = asyncio.ensure_future(anext(items))
            await asyncio.wait({following, waiter}, return_when=asyncio.FIRST_COMPLETED)
            if not following.done():
                following.cancel()
                with contextlib.suppress(asyncio.CancelledError, StopAsyncIteration):
                    await following
                return
            try:
                item = following.result()
            except StopAsyncIteration:
                return
            yield item
    finally:
        waiter.cancel()
        if following is not None and not following.done():  # this stream was cancelled
            following.cancel()
            with contextlib.suppress(asyncio.CancelledError, StopAsyncIteration):
                await following
        aclose = getattr(items, "aclose", None)
        if aclose is not None:
            await aclose()


def sse_response(
    events: Callable[[anyio.Event], AsyncIterator[ServerSentEvent]],
) -> EventSourceResponse:
    """Server-sent ``events`` (made from the shutdown event they must stop at) with the
    keep-alive ping and no caching. sse-starlette sets the shutdown event when the server
    shuts down: the body then ends properly (its last chunk sent) instead of being cut
    mid-body by the cancellation."""
    shutdown = anyio.Event()
    return EventSourceResponse(
        events(shutdown),
        ping=PING_SECONDS,
        headers={"Cache-Control": "no-store"},
        shutdown_event=shutdown,
        shutdown_grace_period=SHUTDOWN_GRACE_SECONDS,
    )


def _stream(
    items: AsyncIterator[Any],
    run_id: str = "",
    final: Callable[[State | None], Awaitable[State | None]] | None = None,
) -> EventSourceResponse:
    """``items`` as SSE; with ``final`` (one run's stream), once ``items`` has run out (not
    cut by a shutdown), a ``done`` event with the run's final state, which ``final`` gives
    from the last state seen (None: no ``done``)."""

    async def body(shutdown: anyio.Event) -> AsyncIterator[ServerSentEvent]:
        last: State | None = None
        async for item in until(shutdown, items):
            if isinstance(item, Event) and item.kind == "state" and item.data.get("to"):
                last = State(item.data["to"])
            yield _sse(item, item.run_id if isinstance(item, Event) else run_id)
        if final is not None and not shutdown.is_set():
            state = await final(last)
            if state is not None:
                done = RunDone(run_id=run_id, state=state)
                yield ServerSentEvent(data=done.model_dump_json(), event="done")

    return sse_response(body)


@router.get(
    "/runs/{run_id}/events",
    summary="StreamRunEvents",
    response_class=EventSourceResponse,
    responses={**documented(400, 401, 403, 404, 429, 500), **_STREAM},
)
async def stream_run_events(
    run_id: str,
    request: Request,
    service: Service,
    caller: CallerDep,
    after: After = None,
    last_event_id: LastEventId = None,
) -> EventSourceResponse:
    """The run's events as server-sent events, from its first (or after `after` /
    `Last-Event-ID`), each named by its kind (`state`, `adopted`) with a `RunEvent` as data;
    and a `progress` event whenever the tasks done or running change. The stream ends once
    the run has ended and its final state event was sent, with a last `done` event whose
    data (`{"run_id", "state"}`) carries the final state; or, without `done`, once the
    credentials it was opened with no longer hold (checked before each batch of events and
    every minute).
    429 when the caller, or the server, has as many streams open as it may."""
    position = _position(after, last_event_id) or 0
    check = _recheck(request)
    updates = await service.follow(run_id, after_id=position, caller=caller, check=check)

    async def final(last: State | None) -> State | None:
        """The run's final state, once its stream ran out: the last state event's, else
        (resumed after it) read once; None if the stream stopped for another reason."""
        if last is not None and last.terminal:
            return last
        if not await check():
            return None
        with contextlib.suppress(SpindleError):
            state = await service.state(run_id, caller=caller)
            return state if state.terminal else None
        return None

    return _stream(updates, run_id, final)


@router.get(
    "/events",
    summary="StreamEvents",
    response_class=EventSourceResponse,
    responses={**documented(400, 401, 403, 429, 500), **_STREAM},
)
async def stream_events(
    request: Request,
    service: Service,
    caller: CallerDep,
    after: After = None,
    last_event_id: LastEventId = None,
) -> EventSourceResponse:
    """The events of every run the caller may see (an admin: every run) as server-sent
    events, from now on (or after `after` / `Last-Event-ID`), each named by its kind with a
    `RunEvent` as data. The stream stays open; an idle one carries a keep-alive comment
    every 15 s. It ends once the credentials it was opened with no longer hold; 429 when
    the caller, or the server, has as many streams open as it may."""
    updates = await service.follow_all(
        after_id=_position(after, last_event_id), caller=caller, check=_recheck(request)
    )
    return _stream(updates)
