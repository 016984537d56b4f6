"""Spindle's extensions for runs made from runs and for removing runs' files:
``POST /runs/{id}/recover``, ``POST /runs/{id}/resubmit``, ``GET /runs/{id}/lineage`` and
``DELETE /runs/{id}``. See docs/api.md."""

from __future__ import annotations

from fastapi import APIRouter

from spindle.api.auth import CallerDep
from spindle.api.deps import Service
from spindle.api.errors import documented
from spindle.models import lineage as m
from spindle.models.wes import RunId
from spindle.runs import lineage, removal

router = APIRouter(prefix="/ga4gh/wes/v1", tags=["Spindle extensions"])


@router.post(
    "/runs/{run_id}/recover",
    summary="RecoverRun",
    response_model=RunId,
    responses=documented(400, 401, 403, 404, 409, 500),
)
async def recover_run(
    run_id: str, service: Service, caller: CallerDep, body: m.RecoverRequest | None = None
) -> RunId:
    """A new run continuing one that ended EXECUTOR_ERROR, SYSTEM_ERROR or CANCELED (409
    otherwise), linked to it. With `reuse_work_dir` (default) it takes over the parent's
    working folder and reuses what the parent finished; a working folder is handed over
    once, so a second recovery of the same parent is 409 (recover the first one instead)."""
    body = body or m.RecoverRequest()
    options = lineage.RecoverOptions(
        reuse_work_dir=body.reuse_work_dir,
        notes=body.notes,
        override_params=body.override_params,
        override_engine_parameters=body.override_engine_parameters,
    )
    run = await lineage.recover(service, run_id, options, caller=caller)
    return RunId(run_id=run.id)


@router.post(
    "/runs/{run_id}/resubmit",
    summary="ResubmitRun",
    response_model=RunId,
    responses=documented(400, 401, 403, 404, 500),
)
async def resubmit_run(run_id: str, service: Service, caller: CallerDep) -> RunId:
    """A new run with the same request and attachments (any state), linked to it."""
    run = await service.resubmit(run_id, caller=caller)
    return RunId(run_id=run.id)


@router.get(
    "/runs/{run_id}/lineage",
    summary="GetRunLineage",
    response_model=m.LineageResponse,
    responses=documented(401, 403, 404, 500),
)
async def get_lineage(run_id: str, service: Service, caller: CallerDep) -> m.LineageResponse:
    """The run's parent and children (those the caller may see) and what changed."""
    found = await lineage.lineage(service, run_id, caller=caller)

    def relative(r: lineage.Relative) -> m.Relative:
        return m.Relative(run_id=r.run_id, state=r.state, recovery=r.recovery, deleted=r.deleted)

    return m.LineageResponse(
        run_id=found.run_id,
        parent=relative(found.parent) if found.parent else None,
        recovery=found.recovery,
        notes=found.notes,
        work_from=found.work_from,
        children=[relative(c) for c in found.children],
        changes=[
            m.ParamChange(
                key=c.key, before=c.before, after=c.after, engine_parameter=c.engine_parameter
            )
            for c in found.changes
        ],
    )


@router.delete(
    "/runs/{run_id}",
    summary="DeleteRun",
    response_model=m.DeletedRun,
    responses=documented(401, 403, 404, 409, 500),
)
async def delete_run(run_id: str, service: Service, caller: CallerDep) -> m.DeletedRun:
    """Remove a finished run's files and keep it as a tombstone (`deleted_at`; hidden from
    `GET /runs` unless `include_deleted=true`). 409 while the run has not ended."""
    run = await removal.delete(service, run_id, caller=caller)
    assert run.deleted_at is not None
    return m.DeletedRun(run_id=run.id, state=run.state, deleted_at=run.deleted_at)
