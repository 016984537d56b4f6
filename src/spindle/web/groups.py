"""The UI's run group pages and forms: the table of groups, a group's page (details, limits,
usage now and its runs, which follow their state without a reload), the create/edit form,
delete, cancel one run or all unfinished runs of the group. Everything goes through the
group service, as the API's run group extension does."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any
from urllib.parse import quote, urlencode

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from starlette.datastructures import FormData

from spindle.domain import Caller, RunGroup, RunSummary, State
from spindle.errors import InvalidRequest, RunNotFound
from spindle.runs.groups import FIELDS, GroupService
from spindle.runs.query import RunQuery
from spindle.runs.service import RunService
from spindle.web import views
from spindle.web.csrf import FIELD
from spindle.web.deps import Groups, PageCaller, Service
from spindle.web.render import render, web_of

router = APIRouter(include_in_schema=False, default_response_class=HTMLResponse)

#: groups per page of the groups table
PAGE_SIZE = 50
#: runs per page of a group's page
RUNS_PAGE_SIZE = 50
#: the longest value a form field keeps (the service refuses anything longer anyway)
MAX_FIELD = 20_000


def group_url(group_id: str, *parts: str) -> str:
    tail = "/".join(quote(p, safe="") for p in parts)
    return f"/groups/{quote(group_id, safe='')}" + (f"/{tail}" if tail else "")


def number_text(value: float | None) -> str:
    """A limit as a form shows it: ``90``, ``0.5``; empty for no limit."""
    if value is None:
        return ""
    if float(value).is_integer():
        return str(int(value))
    return f"{value:g}"


def minutes_text(minutes: float | None) -> str:
    """A max_duration as people read it: ``90 min (1 h 30 m)``; ``no limit`` for None."""
    if minutes is None:
        return "no limit"
    shown = f"{number_text(minutes)} min"
    if minutes >= 60:
        shown += f" ({views.seconds_text(minutes * 60)})"
    return shown


def usage_text(used: int, limit: int | None) -> str:
    """``2 / 4``, or ``2 (no limit)``."""
    return f"{used} / {limit}" if limit is not None else f"{used} (no limit)"


class Links:
    """URLs of a table that keep its current parameters: sort headers and pages."""

    def __init__(self, path: str, params: Mapping[str, Any]) -> None:
        self.path = path
        self.params = {k: v for k, v in params.items() if v}

    def url(self, **changes: Any) -> str:
        params = {**self.params, **changes}
        params = {k: v for k, v in params.items() if v}
        return self.path + ("?" + urlencode(params, doseq=True) if params else "")

    def sort(self, key: str, current_sort: str, descending: bool) -> str:
        """Sorting by the column shown; a second click turns the order around."""
        order = "asc" if current_sort == key and descending else "desc"
        return self.url(sort=key, order=order, page="")


#: the states a group's counts show, in the order a run goes through them
COUNT_STATES = (*views.FILTER_STATES, State.PREEMPTED)

HELPERS = {
    "count_states": COUNT_STATES,
    "group_url": group_url,
    "number_text": number_text,
    "minutes_text": minutes_text,
    "usage_text": usage_text,
}


# --- the table of groups --------------------------------------------------------------------


@router.get("/groups")
async def groups_page(
    request: Request,
    groups: Groups,
    caller: PageCaller,
    q: str = "",
    sort: str = "",
    order: str = "",
    page: str = "",
) -> HTMLResponse:
    params = {"q": q, "sort": sort, "order": order}
    error = ""
    status = 200
    result = None
    try:
        result = await groups.list(
            text=q,
            sort=sort,
            order=order,
            page_size=PAGE_SIZE,
            page_token=page or None,
            caller=caller,
        )
    except InvalidRequest as exc:
        error, status = exc.message, 400
    return render(
        request,
        "groups.html",
        {
            **HELPERS,
            "params": params,
            "current_sort": sort if sort in ("created", "name") else "created",
            "descending": order != "asc",
            "result": result,
            "error": error,
            "links": Links("/groups", params),
            "first_page": not page,
            "states": views.FILTER_STATES,
        },
        status=status,
        nav="groups",
    )


# --- create and edit ------------------------------------------------------------------------


def _form_values(form: FormData) -> dict[str, str]:
    return {
        name: value[:MAX_FIELD] if isinstance(value := form.get(name), str) else ""
        for name in FIELDS
    }


def _values_of(group: RunGroup) -> dict[str, str]:
    return {
        "name": group.name,
        "description": group.description,
        "max_runs": number_text(group.max_runs),
        "max_cpus": number_text(group.max_cpus),
        "max_duration": number_text(group.max_duration),
        "compute_env": group.compute_env or "",
    }


def _form_page(
    request: Request,
    service: RunService,
    *,
    group: RunGroup | None,
    values: Mapping[str, str],
    errors: Mapping[str, str],
    status: int = 200,
) -> HTMLResponse:
    return render(
        request,
        "group_form.html",
        {
            **HELPERS,
            "group": group,
            "values": values,
            "errors": errors,
            "compute_envs": list(service.compute_envs.values()),
        },
        status=status,
        nav="groups",
    )


def _errors_of(exc: InvalidRequest) -> dict[str, str]:
    """An error next to the field it names (the whole message above the form otherwise)."""
    if exc.field in FIELDS:
        return {exc.field: exc.problem}
    return {"": exc.message}


@router.get("/groups/new")
async def new_group_form(request: Request, service: Service, _caller: PageCaller) -> HTMLResponse:
    return _form_page(request, service, group=None, values={}, errors={})


@router.post("/groups", response_model=None)
async def create_group(
    request: Request, service: Service, groups: Groups, caller: PageCaller
) -> Response:
    async with request.form(max_files=0, max_fields=20) as form:
        web_of(request).csrf.check(request, form.get(FIELD))
        values = _form_values(form)
    try:
        group = await groups.create(values, caller=caller)
    except InvalidRequest as exc:
        return _form_page(
            request, service, group=None, values=values, errors=_errors_of(exc), status=400
        )
    return RedirectResponse(group_url(group.id), status_code=303)


@router.get("/groups/{group_id}/edit")
async def edit_group_form(
    request: Request, group_id: str, service: Service, groups: Groups, caller: PageCaller
) -> HTMLResponse:
    group = await groups.get(group_id, caller=caller)
    return _form_page(request, service, group=group, values=_values_of(group), errors={})


@router.post("/groups/{group_id}/edit", response_model=None)
async def update_group(
    request: Request, group_id: str, service: Service, groups: Groups, caller: PageCaller
) -> Response:
    async with request.form(max_files=0, max_fields=20) as form:
        web_of(request).csrf.check(request, form.get(FIELD))
        values = _form_values(form)
    group = await groups.get(group_id, caller=caller)  # someone else's: 404, before a 400
    try:
        await groups.update(group_id, values, caller=caller)
    except InvalidRequest as exc:
        return _form_page(
            request, service, group=group, values=values, errors=_errors_of(exc), status=400
        )
    return RedirectResponse(group_url(group_id), status_code=303)


@router.post("/groups/{group_id}/delete")
async def delete_group(
    request: Request, group_id: str, groups: Groups, caller: PageCaller
) -> RedirectResponse:
    async with request.form(max_files=0, max_fields=10) as form:
        web_of(request).csrf.check(request, form.get(FIELD))
        detach = form.get("detach_runs") == "true"
    # a group that is not empty without detach_runs: Conflict, the 409 page
    await groups.delete(group_id, detach_runs=detach, caller=caller)
    return RedirectResponse("/groups", status_code=303)


# --- a group's page -------------------------------------------------------------------------


async def _group_run(
    groups: GroupService, service: RunService, group_id: str, run_id: str, caller: Caller
) -> RunSummary:
    """A run of the group the caller may see; any other run is "not found" here."""
    await groups.get(group_id, caller=caller)
    run = await service.summary(run_id, caller=caller)
    if run.group_id != group_id:
        raise RunNotFound(run_id)
    return run


@router.get("/groups/{group_id}")
async def group_page(
    request: Request,
    group_id: str,
    service: Service,
    groups: Groups,
    caller: PageCaller,
    state: Annotated[list[str], Query()] = [],  # noqa: B006 (FastAPI copies query defaults)
    page: str = "",
    canceled: str = "",
) -> HTMLResponse:
    group = await groups.get(group_id, caller=caller)  # 404 page for others' and unknown ones
    params = {"state": state}
    # before the runs are read, so that no change made while the page loads is missed
    last_event_id = await service.last_event_id()
    error = ""
    status = 200
    query = RunQuery()
    result = None
    try:
        query = RunQuery.parse(states=state)
        result = await groups.runs_of(
            group_id, query, page_size=RUNS_PAGE_SIZE, page_token=page or None, caller=caller
        )
    except InvalidRequest as exc:
        error, status = exc.message, 400
    return render(
        request,
        "group.html",
        {
            **HELPERS,
            "group": group,
            "query": query,
            "params": params,
            "result": result,
            "error": error,
            "links": Links(group_url(group_id), params),
            "first_page": not page,
            "last_event_id": last_event_id,
            "states": views.FILTER_STATES,
            "canceled": canceled if canceled.isdigit() else "",
        },
        status=status,
        nav="groups",
    )


@router.get("/groups/{group_id}/usage")
async def group_usage(
    request: Request, group_id: str, groups: Groups, caller: PageCaller
) -> HTMLResponse:
    """The group's usage now and its runs by state, for the page to refresh in place."""
    group = await groups.get(group_id, caller=caller)
    return render(request, "_group_usage.html", {**HELPERS, "group": group})


@router.get("/groups/{group_id}/runs/{run_id}/row")
async def group_run_row(
    request: Request,
    group_id: str,
    run_id: str,
    service: Service,
    groups: Groups,
    caller: PageCaller,
) -> HTMLResponse:
    """One row of a group's runs table, for the page to update it live."""
    run = await _group_run(groups, service, group_id, run_id, caller)
    return render(request, "_group_row.html", {**HELPERS, "run": run, "group_id": group_id})


@router.post("/groups/{group_id}/runs/{run_id}/cancel")
async def cancel_group_run(
    request: Request,
    group_id: str,
    run_id: str,
    service: Service,
    groups: Groups,
    caller: PageCaller,
) -> RedirectResponse:
    async with request.form(max_files=0, max_fields=10) as form:
        web_of(request).csrf.check(request, form.get(FIELD))
    await _group_run(groups, service, group_id, run_id, caller)
    await service.cancel(run_id, caller=caller)
    return RedirectResponse(group_url(group_id), status_code=303)


@router.post("/groups/{group_id}/cancel")
async def cancel_group_runs(
    request: Request, group_id: str, groups: Groups, caller: PageCaller
) -> RedirectResponse:
    async with request.form(max_files=0, max_fields=10) as form:
        web_of(request).csrf.check(request, form.get(FIELD))
    ids = await groups.cancel_runs(group_id, caller=caller)
    return RedirectResponse(
        group_url(group_id) + "?" + urlencode({"canceled": len(ids)}), status_code=303
    )
