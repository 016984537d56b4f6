"""Run groups: Spindle's documented extension beside the WES paths (docs/groups.md).

HTTP only: every rule (limits, ownership, what may be deleted or moved) is the
:class:`~spindle.runs.groups.GroupService`'s, and its errors leave as the WES
``ErrorResponse`` through the one handler in ``errors.py``.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query

from spindle.api.auth import CallerDep
from spindle.api.deps import Groups
from spindle.api.errors import documented
from spindle.api.wes import wes_time
from spindle.domain import RunGroup, RunSummary, State
from spindle.models import groups as m
from spindle.models import wes
from spindle.models.wes import ErrorResponse
from spindle.paging import MAX_PAGE_SIZE
from spindle.runs.query import RunQuery

router = APIRouter(prefix="/ga4gh/wes/v1", tags=["Spindle run groups"])

_NOT_FOUND: dict[int | str, dict[str, Any]] = {
    404: {
        "model": ErrorResponse,
        "description": "The run group (or run) was not found, or is another user's.",
    }
}


def _errors(*codes: int, conflict: str | None = None) -> dict[int | str, dict[str, Any]]:
    """``responses=``: the usual ErrorResponses, with this extension's 404 and 409 texts."""
    out = documented(*(c for c in codes if c not in (404, 409)))
    if 404 in codes:
        out.update(_NOT_FOUND)
    if conflict:
        out[409] = {"model": ErrorResponse, "description": conflict}
    return out


PageSize = Annotated[
    int | None,
    Query(ge=1, le=MAX_PAGE_SIZE, description="Groups (or runs) per page, 1-1000 (default 100)."),
]
PageToken = Annotated[str | None, Query(description="The next_page_token of the previous page.")]


def group_model(group: RunGroup) -> m.RunGroup:
    return m.RunGroup(
        id=group.id,
        name=group.name,
        description=group.description,
        owner_id=group.owner_id,
        created_at=group.created_at,
        updated_at=group.updated_at,
        max_runs=group.max_runs,
        max_cpus=group.max_cpus,
        max_duration=group.max_duration,
        compute_env=group.compute_env,
        run_counts={s.value: group.counts.get(s.value, 0) for s in State},
        usage=m.RunGroupUsage(running=group.running, cpus_in_use=group.cpus_in_use),
    )


def _summary(run: RunSummary) -> wes.RunSummary:
    return wes.RunSummary(
        run_id=run.id,
        state=run.state,
        start_time=wes_time(run.start_time),
        end_time=wes_time(run.end_time),
        tags=run.tags,
    )


@router.post(
    "/run-groups",
    summary="CreateRunGroup",
    response_model=m.RunGroup,
    responses=_errors(400, 401, 403, 500),
)
async def create_run_group(body: m.RunGroupCreate, groups: Groups, caller: CallerDep) -> m.RunGroup:
    """A new run group of the caller's. Limits left out (or null) are no limit."""
    group = await groups.create(body.model_dump(exclude_unset=True), caller=caller)
    return group_model(group)


@router.get(
    "/run-groups",
    summary="ListRunGroups",
    response_model=m.RunGroupList,
    responses=_errors(400, 401, 403, 500),
)
async def list_run_groups(
    groups: Groups,
    caller: CallerDep,
    page_size: PageSize = None,
    page_token: PageToken = None,
    q: Annotated[
        str, Query(description="Case-insensitive text in the name, description or id.")
    ] = "",
    sort: Annotated[str, Query(description="`created` (default) or `name`.")] = "",
    order: Annotated[str, Query(description="`desc` (default) or `asc`.")] = "",
) -> m.RunGroupList:
    """The caller's run groups (an admin: everyone's), newest first, paged by key."""
    page = await groups.list(
        text=q, sort=sort, order=order, page_size=page_size, page_token=page_token, caller=caller
    )
    return m.RunGroupList(
        run_groups=[group_model(g) for g in page.items], next_page_token=page.next_page_token
    )


@router.get(
    "/run-groups/{group_id}",
    summary="GetRunGroup",
    response_model=m.RunGroup,
    responses=_errors(401, 403, 404, 500),
)
async def get_run_group(group_id: str, groups: Groups, caller: CallerDep) -> m.RunGroup:
    """The group with its limits, its runs counted by state and what its runs use now."""
    return group_model(await groups.get(group_id, caller=caller))


@router.patch(
    "/run-groups/{group_id}",
    summary="UpdateRunGroup",
    response_model=m.RunGroup,
    responses=_errors(400, 401, 403, 404, 500),
)
async def update_run_group(
    group_id: str, body: m.RunGroupUpdate, groups: Groups, caller: CallerDep
) -> m.RunGroup:
    """Change the fields sent (null clears a limit). New limits hold from the next claim;
    a shorter ``max_duration`` also stops runs already past it."""
    group = await groups.update(group_id, body.model_dump(exclude_unset=True), caller=caller)
    return group_model(group)


@router.delete(
    "/run-groups/{group_id}",
    summary="DeleteRunGroup",
    response_model=m.RunGroupDeleted,
    responses=_errors(
        400, 401, 403, 404, 500, conflict="The group has runs and detach_runs is not true."
    ),
)
async def delete_run_group(
    group_id: str,
    groups: Groups,
    caller: CallerDep,
    detach_runs: Annotated[
        bool,
        Query(description="Delete a group that has runs; they stay, in no group."),
    ] = False,
) -> m.RunGroupDeleted:
    """Delete a group with no runs, or (``detach_runs=true``) one with runs, which stay
    without the group and its limits."""
    detached = await groups.delete(group_id, detach_runs=detach_runs, caller=caller)
    return m.RunGroupDeleted(group_id=group_id, detached_runs=detached)


@router.get(
    "/run-groups/{group_id}/runs",
    summary="ListRunGroupRuns",
    response_model=m.RunGroupRuns,
    response_model_exclude_none=True,
    responses=_errors(400, 401, 403, 404, 500),
)
async def list_run_group_runs(
    group_id: str,
    groups: Groups,
    caller: CallerDep,
    state: Annotated[
        list[str], Query(description="Only runs in this state (repeat for several).")
    ] = [],  # noqa: B006 (FastAPI copies a list default per request)
    page_size: PageSize = None,
    page_token: PageToken = None,
) -> m.RunGroupRuns:
    """The group's runs, newest first, as WES ``RunSummary`` items (with tags)."""
    page = await groups.runs_of(
        group_id,
        RunQuery.parse(states=state),
        page_size=page_size,
        page_token=page_token,
        caller=caller,
    )
    return m.RunGroupRuns(
        runs=[_summary(r) for r in page.items], next_page_token=page.next_page_token
    )


@router.post(
    "/run-groups/{group_id}/cancel",
    summary="CancelRunGroup",
    response_model=m.RunGroupCanceled,
    responses=_errors(401, 403, 404, 500),
)
async def cancel_run_group(group_id: str, groups: Groups, caller: CallerDep) -> m.RunGroupCanceled:
    """Cancel every unfinished run of the group, as ``POST /runs/{run_id}/cancel`` does each.
    The group itself stays."""
    canceled = await groups.cancel_runs(group_id, caller=caller)
    return m.RunGroupCanceled(group_id=group_id, canceled_runs=canceled)


@router.put(
    "/runs/{run_id}/run-group",
    summary="SetRunGroup",
    response_model=m.RunGroupMembership,
    responses=_errors(
        400, 401, 403, 404, 500, conflict="The run is no longer QUEUED: it cannot change groups."
    ),
)
async def set_run_group(
    run_id: str, body: m.RunGroupAssignment, groups: Groups, caller: CallerDep
) -> m.RunGroupMembership:
    """Move a QUEUED run into a run group (``run_group_id``), or out of any (null). An
    unknown group (or another user's) is a 400 naming ``run_group_id``."""
    run = await groups.move_run(run_id, body.run_group_id, caller=caller)
    return m.RunGroupMembership(run_id=run.id, run_group_id=run.group_id)
