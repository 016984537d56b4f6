"""The UI's pages (GET only): dashboard, runs, run detail, task, and the fragments the
pages refresh themselves with. Each handler asks the run service and renders; nothing else."""

from __future__ import annotations

import contextlib
from datetime import timedelta
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse

from spindle.db.types import utcnow
from spindle.domain import Caller
from spindle.errors import GroupNotFound, InvalidRequest
from spindle.runs import lineage
from spindle.runs.query import RunQuery, SortKey
from spindle.runs.service import RunService
from spindle.web import views
from spindle.web.deps import Groups, PageCaller, Service
from spindle.web.render import render

router = APIRouter(include_in_schema=False, default_response_class=HTMLResponse)

#: runs per page of the runs table
PAGE_SIZE = 50
#: tasks a run page lists (the API pages through all of them)
MAX_TASKS = 1000
#: how much of each log a run page shows at first (it follows the rest live)
RUN_LOG_TAIL = 64 << 10
TASK_LOG_TAIL = 256 << 10
FAILURES_SHOWN = 5


@router.get("/")
async def dashboard(request: Request, service: Service, caller: PageCaller) -> HTMLResponse:
    now = utcnow()
    counts = await service.counts(caller=caller)
    day = await service.counts_since(now - timedelta(hours=24), caller=caller)
    failures = await service.recent_failures(FAILURES_SHOWN, caller=caller)
    return render(
        request,
        "dashboard.html",
        {
            "counts": counts,
            "total": sum(counts.values()),
            "day": day,
            "day_total": sum(day.values()),
            "failures": failures,
            "states": views.FILTER_STATES,
        },
        nav="dashboard",
    )


class ListLinks:
    """URLs of the runs table that keep the current filters: sort headers and pages."""

    def __init__(self, params: dict[str, Any]) -> None:
        self.params = {k: v for k, v in params.items() if v}

    def url(self, **changes: Any) -> str:
        params = {**self.params, **changes}
        params = {k: v for k, v in params.items() if v}
        return "/runs" + ("?" + urlencode(params, doseq=True) if params else "")

    def sort(self, key: str, current: RunQuery) -> str:
        """Sorting by the column shown; a second click turns the order around."""
        order = "asc" if current.sort == key and current.descending else "desc"
        return self.url(sort=key, order=order, page="")


@router.get("/runs")
async def runs_page(
    request: Request,
    service: Service,
    caller: PageCaller,
    state: Annotated[list[str], Query()] = [],  # noqa: B006 (FastAPI copies query defaults)
    type: str = "",
    tag: str = "",
    q: str = "",
    sort: str = "",
    order: str = "",
    page: str = "",
    deleted: str = "",
) -> HTMLResponse:
    params = {
        "state": state,
        "type": type,
        "tag": tag,
        "q": q,
        "sort": sort,
        "order": order,
        "deleted": deleted,
    }
    links = ListLinks(params)
    error = ""
    status = 200
    query = RunQuery()
    result = None
    # before the runs are read: the page follows every event after it, so no change made
    # while it loads is missed (one made in between is shown and sent again: harmless)
    last_event_id = await service.last_event_id()
    try:
        query = RunQuery.parse(
            states=state,
            workflow_type=type,
            tag=tag,
            text=q,
            sort=sort,
            order=order,
            include_deleted=bool(deleted),  # (DELETE /runs/{id}: tombstones, hidden)
        )
        result = await service.search(
            query, page_size=PAGE_SIZE, page_token=page or None, caller=caller
        )
    except InvalidRequest as exc:
        error, status = exc.message, 400
    return render(
        request,
        "runs.html",
        {
            "query": query,
            "params": params,
            "result": result,
            "error": error,
            "links": links,
            "first_page": not page,
            "last_event_id": last_event_id,
            "sort_keys": SortKey,
            "states": views.FILTER_STATES,
            "types": sorted(service.catalog.workflow_types),
        },
        status=status,
        nav="runs",
    )


@router.get("/runs/{run_id}/row")
async def run_row(
    request: Request, run_id: str, service: Service, caller: PageCaller
) -> HTMLResponse:
    """One row of the runs table, for pages that update it live."""
    return render(request, "_row.html", {"run": await service.summary(run_id, caller=caller)})


async def _live(service: RunService, run_id: str, caller: Caller) -> dict[str, Any]:
    """What changes while a run goes on: state, progress, timeline, tasks, outputs."""
    # events before the run: a change made in between shows in the run and comes again
    # through the page's event stream (which starts after the last event read here)
    events = await service.events(run_id, caller=caller)
    run = await service.get(run_id, caller=caller)
    tasks = await service.tasks(run_id, page_size=MAX_TASKS, page_token=None, caller=caller)
    return {
        "run": run,
        "events": [e for e in events if e.kind == "state"],
        "last_event_id": events[-1].id if events else 0,
        "tasks": tasks.items,
        "more_tasks": bool(tasks.next_page_token),
        "files": views.output_files(run.id, run.outputs),
    }


@router.get("/runs/{run_id}")
async def run_page(
    request: Request, run_id: str, service: Service, groups: Groups, caller: PageCaller
) -> HTMLResponse:
    live = await _live(service, run_id, caller)
    logs = {
        stream: await service.tail_log(run_id, stream, max_bytes=RUN_LOG_TAIL, caller=caller)
        for stream in ("stdout", "stderr")
    }
    group = None
    if live["run"].group_id is not None:
        # a group the caller cannot see (an admin moved the run into theirs) shows as its id
        with contextlib.suppress(GroupNotFound):
            group = await groups.get(live["run"].group_id, caller=caller)
    family = await lineage.lineage(service, run_id, caller=caller)
    return render(
        request, "run.html", {**live, "logs": logs, "group": group, "lineage": family}, nav="runs"
    )


@router.get("/runs/{run_id}/live")
async def run_live(
    request: Request, run_id: str, service: Service, caller: PageCaller
) -> HTMLResponse:
    """The parts of a run page that change, for the page to refresh without reloading."""
    return render(request, "_live.html", await _live(service, run_id, caller))


@router.get("/runs/{run_id}/tasks/{task_id}")
async def task_page(
    request: Request, run_id: str, task_id: str, service: Service, caller: PageCaller
) -> HTMLResponse:
    run = await service.summary(run_id, caller=caller)
    task = await service.task(run_id, task_id, caller=caller)
    logs = {}
    for stream, span in (("stdout", task.stdout), ("stderr", task.stderr)):
        if span is not None:
            logs[stream] = await service.tail_task_log(
                run_id, task_id, stream, max_bytes=TASK_LOG_TAIL, caller=caller
            )
    return render(request, "task.html", {"run": run, "task": task, "logs": logs}, nav="runs")
