"""Runs made from other runs: recovering a run that failed or was cancelled, and submitting
one again, with the lineage (parent, children, what changed) the API, CLI and UI show.

A recovery (``POST /runs/{id}/recover``) is a new run with the parent's workflow and
attachments, its params and engine parameters with the overrides merged over them, linked
to its parent. With ``reuse_work_dir`` (the default) the parent's working folder (``work/``)
is *handed over*: moved into the new run's folder inside the transaction that inserts it, so
what the parent finished is there for the engine's resume hook
(:meth:`spindle.engines.base.Engine.resume`): Snakemake reruns only failed and incomplete
jobs, cwltool reuses the steps in its cache (``work/cwl-cache``). A working folder is handed
over once (``run_lineage.work_from`` is unique), so two recoveries of one parent never run
in the same folder: the second is refused (409) and names the run that has it; recovering
that run continues the lineage.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import insert, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from spindle.db.tables import run_lineage, runs
from spindle.domain import Caller, Run, RunRequest, State
from spindle.errors import Conflict, InvalidRequest, NotFound
from spindle.runs import lifecycle
from spindle.runs.submit import copy_attachments
from spindle.storage.rundir import Staging

if TYPE_CHECKING:
    from spindle.runs.service import RunService

#: the states a run can be recovered from
RECOVERABLE = frozenset({State.EXECUTOR_ERROR, State.SYSTEM_ERROR, State.CANCELED})
#: longest ``notes`` kept
MAX_NOTES = 4000


@dataclass(frozen=True)
class RecoverOptions:
    """The body of ``POST /runs/{id}/recover``."""

    reuse_work_dir: bool = True
    notes: str = ""
    override_params: dict[str, Any] = field(default_factory=dict)
    override_engine_parameters: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Relative:
    """A parent or child in a lineage, as lists show it."""

    run_id: str
    state: State
    recovery: bool
    deleted: bool


@dataclass(frozen=True)
class ParamChange:
    """One top-level ``workflow_params`` (or engine parameter) key that differs from the
    parent's: ``before``/``after`` None when the key was absent."""

    key: str
    before: Any
    after: Any
    engine_parameter: bool = False


@dataclass(frozen=True)
class Lineage:
    run_id: str
    parent: Relative | None
    recovery: bool
    notes: str
    #: the run whose working folder this one took over
    work_from: str | None
    children: list[Relative]
    changes: list[ParamChange]


@dataclass(frozen=True)
class Link:
    """What :meth:`RunService._create` records about a run made from ``parent``, inside
    the transaction that inserts it."""

    parent: str
    recovery: bool
    notes: str = ""
    #: hand over this folder (the parent's ``work/``) to the new run
    work: Path | None = None

    async def record(self, conn: AsyncConnection, run_id: str, staging: Staging) -> None:
        """Insert the lineage row (an IntegrityError when the parent's working folder went to
        another run already) and move that folder into the staging run folder, from where
        it goes back if the run is not stored (:meth:`Staging.discard`)."""
        # (a second recovery of the same parent fails here on the unique work_from, also
        # when both are inserted at once: :func:`recover` answers Conflict)
        await conn.execute(
            insert(run_lineage).values(
                run_id=run_id,
                parent_run_id=self.parent,
                recovery=self.recovery,
                notes=self.notes,
                work_from=self.parent if self.work is not None else None,
            )
        )
        if self.work is None:
            return
        if self.recovery:
            await lifecycle.note(
                conn, self.parent, f"its working folder was handed to run {run_id} (recovery)"
            )
        # (gone meanwhile, removed by retention: nothing to reuse, the run starts afresh)
        await asyncio.to_thread(staging.take_work, self.work)


async def took_work(conn: AsyncConnection, run_id: str) -> bool:
    """Whether ``run_id`` took over its parent's working folder (a recovery that resumes)."""
    stmt = select(run_lineage.c.work_from).where(run_lineage.c.run_id == run_id)
    return (await conn.execute(stmt)).scalar_one_or_none() is not None


async def work_holder(conn: AsyncConnection, run_id: str) -> str | None:
    stmt = select(run_lineage.c.run_id).where(run_lineage.c.work_from == run_id)
    return (await conn.execute(stmt)).scalar_one_or_none()


def merged_request(parent: RunRequest, options: RecoverOptions) -> RunRequest:
    """The parent's request with the overrides merged over its params and engine
    parameters (a key given as null in ``override_params`` is removed)."""
    params = dict(parent.workflow_params)
    for key, value in options.override_params.items():
        if value is None:
            params.pop(key, None)
        else:
            params[key] = value
    engine_parameters = {**parent.workflow_engine_parameters, **options.override_engine_parameters}
    return RunRequest(
        workflow_type=parent.workflow_type,
        workflow_type_version=parent.workflow_type_version,
        workflow_url=parent.workflow_url,
        workflow_params=params,
        tags=dict(parent.tags),
        workflow_engine=parent.workflow_engine,
        workflow_engine_version=parent.workflow_engine_version,
        workflow_engine_parameters=engine_parameters,
    )


def check_options(options: RecoverOptions) -> None:
    if len(options.notes) > MAX_NOTES:
        raise InvalidRequest("notes", f"must be at most {MAX_NOTES} characters")
    for key, value in options.override_engine_parameters.items():
        if not isinstance(value, str):
            raise InvalidRequest(
                "override_engine_parameters", f"{key!r} must be a string, got {value!r}"
            )


async def recover(
    service: RunService, run_id: str, options: RecoverOptions, *, caller: Caller
) -> Run:
    """A new run continuing ``run_id`` (which must have ended EXECUTOR_ERROR, SYSTEM_ERROR
    or CANCELED, else Conflict), owned by the caller."""
    check_options(options)
    parent = await service.get(run_id, caller=caller)
    if parent.state not in RECOVERABLE:
        raise Conflict(
            f"run {run_id!r} is {parent.state.value}; only a run that ended "
            + ", ".join(sorted(s.value for s in RECOVERABLE))
            + " can be recovered"
        )
    if parent.deleted_at is not None:
        raise Conflict(f"run {run_id!r} was deleted: its files are gone")
    request = merged_request(parent.request, options)
    group = await service._group(parent.group_id, caller, missing_ok=True)
    engine, compute_env = service._check(request, group)
    work: Path | None = None
    if options.reuse_work_dir:
        env = service.compute_envs.get(parent.compute_env)
        if compute_env != parent.compute_env or env is None or env.type != "local":
            raise InvalidRequest(
                "reuse_work_dir",
                "a working folder is reused only for a run in the same compute environment, "
                "of type local; give reuse_work_dir false to start afresh",
            )
        if parent.work_removed_at is not None or parent.files_removed_at is not None:
            raise Conflict(
                f"run {run_id!r}'s working folder was removed (retention); recover it with "
                "reuse_work_dir false"
            )
        work = service.rundir(run_id).work
        await _check_free(service, run_id)
    source = service.rundir(run_id).attachments
    try:
        return await service._create(
            request,
            engine,
            compute_env,
            lambda dest: copy_attachments(source, dest),
            owner_id=caller.user_id,
            group=group,
            link=Link(parent=run_id, recovery=True, notes=options.notes, work=work),
        )
    except IntegrityError:
        if work is None:
            raise
        await _check_free(service, run_id)  # another recovery took it meanwhile
        raise


async def _check_free(service: RunService, run_id: str) -> None:
    """Conflict if ``run_id``'s working folder was handed to another run already."""
    async with service.db.connect() as conn:
        holder = await work_holder(conn, run_id)
    if holder is not None:
        raise Conflict(
            f"run {run_id!r}'s working folder was handed to run {holder!r} by an earlier "
            "recovery; recover that run instead, or give reuse_work_dir false"
        )


async def lineage(service: RunService, run_id: str, *, caller: Caller) -> Lineage:
    """The run's parent, children (those the caller can see) and what changed from its
    parent."""
    run = await service.get(run_id, caller=caller)
    scope = caller.owner_scope
    async with service.db.connect() as conn:
        link = (
            (await conn.execute(select(run_lineage).where(run_lineage.c.run_id == run_id)))
            .mappings()
            .first()
        )
        stmt = (
            select(runs.c.id, runs.c.state, runs.c.deleted_at, run_lineage.c.recovery)
            .join(run_lineage, run_lineage.c.run_id == runs.c.id)
            .where(run_lineage.c.parent_run_id == run_id)
            .order_by(runs.c.seq)
        )
        if scope is not None:
            stmt = stmt.where(runs.c.owner_id == scope)
        children = [
            Relative(r["id"], State(r["state"]), bool(r["recovery"]), r["deleted_at"] is not None)
            for r in (await conn.execute(stmt)).mappings()
        ]
    parent: Relative | None = None
    changes: list[ParamChange] = []
    if link is not None:
        with contextlib.suppress(NotFound):
            seen = await service.get(link["parent_run_id"], caller=caller)
            parent = Relative(seen.id, seen.state, False, seen.deleted_at is not None)
            changes = diff(seen.request, run.request)
    return Lineage(
        run_id=run_id,
        parent=parent,
        recovery=bool(link["recovery"]) if link else False,
        notes=link["notes"] if link else "",
        work_from=link["work_from"] if link else None,
        children=children,
        changes=changes,
    )


def diff(before: RunRequest, after: RunRequest) -> list[ParamChange]:
    """Top-level keys of the params, then of the engine parameters, that differ."""
    out: list[ParamChange] = []
    for old, new, engine in (
        (before.workflow_params, after.workflow_params, False),
        (before.workflow_engine_parameters, after.workflow_engine_parameters, True),
    ):
        for key in sorted(set(old) | set(new)):
            if old.get(key) != new.get(key) or (key in old) != (key in new):
                out.append(ParamChange(key, old.get(key), new.get(key), engine))
    return out
