"""The run service: what the API, the web UI and the CLI (through the API) can do with runs.

It owns transactions; the repository functions in ``store`` and ``claim`` never commit.

Every call takes the :class:`~spindle.domain.Caller` and is scoped by it, here and nowhere
else: a caller who is not an admin sees and acts on their own runs only, and someone else's
run is "not found" (404), exactly like a run that does not exist, so its existence leaks
nothing. Admins see every run.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Generic, TypeVar

from sqlalchemy.ext.asyncio import AsyncEngine

from spindle.config import Settings
from spindle.db.types import utcnow
from spindle.domain import ACTIVE_STATES, Caller, ComputeEnv, LogSpan, Run, State, Task
from spindle.engines.registry import Catalog
from spindle.errors import InvalidRequest, NotFound, RunNotFound, TaskNotFound, Unreachable
from spindle.runs import store
from spindle.runs.paging import check_page_size, decode_token, encode_token
from spindle.runs.submit import (
    SPINDLE_PARAMETERS,
    Upload,
    check_workflow_url,
    discard,
    parse_request,
    stage_uploads,
)
from spindle.runs.wakeup import Wakeup
from spindle.storage.files import FileSource
from spindle.storage.rundir import RunDir

LOG_STREAMS = ("stdout", "stderr")
T = TypeVar("T")


@dataclass(frozen=True)
class Page(Generic[T]):
    items: list[T]
    next_page_token: str


class RunService:
    def __init__(
        self,
        *,
        db: AsyncEngine,
        settings: Settings,
        catalog: Catalog,
        wakeup: Wakeup,
        compute_envs: Sequence[ComputeEnv] = (ComputeEnv("local", "local"),),
        file_sources: Mapping[str, FileSource] | None = None,
    ) -> None:
        self.db = db
        self.settings = settings
        self.catalog = catalog
        self.wakeup = wakeup
        self.compute_envs = {env.name: env for env in compute_envs}
        #: per compute environment whose run folders are elsewhere: where to fetch files
        self.file_sources = dict(file_sources or {})

    # --- submit --------------------------------------------------------------------------

    async def submit(
        self, fields: Mapping[str, str | None], uploads: Sequence[Upload], *, caller: Caller
    ) -> Run:
        request = parse_request(fields)
        engine = self.catalog.resolve(
            request.workflow_type,
            request.workflow_type_version,
            request.workflow_engine,
            request.workflow_engine_version,
        )
        known = {p.name for p in engine.parameters()} | SPINDLE_PARAMETERS
        for key in request.workflow_engine_parameters:
            if key not in known:
                raise InvalidRequest(
                    "workflow_engine_parameters",
                    f"{key!r} is not a parameter of {engine.name}; known: "
                    + ", ".join(sorted(known)),
                )
        compute_env = request.workflow_engine_parameters.get("compute_env", "local")
        env = self.compute_envs.get(compute_env)
        if env is None:
            raise InvalidRequest(
                "workflow_engine_parameters",
                f"compute_env {compute_env!r} is not configured; configured: "
                + ", ".join(self.compute_envs),
            )
        engine.validate(request, env)

        run_id = str(uuid.uuid4())
        runs_root = self.settings.data_dir / "runs"
        incoming = runs_root / ".incoming" / run_id
        final = RunDir.for_run(self.settings.data_dir, run_id)
        try:
            staging = RunDir(incoming)
            await asyncio.to_thread(staging.create)
            staged = await asyncio.to_thread(
                stage_uploads,
                uploads,
                staging.attachments,
                max_bytes=self.settings.max_upload_bytes,
            )
            check_workflow_url(request.workflow_url, staged)
            await asyncio.to_thread(os.replace, incoming, final.root)
        except BaseException:
            await asyncio.to_thread(discard, incoming)
            raise
        try:
            async with self.db.begin() as conn:
                run = await store.insert_run(
                    conn,
                    run_id=run_id,
                    request=request,
                    engine=engine.name,
                    compute_env=compute_env,
                    owner_id=caller.user_id,
                )
                await self.wakeup.notify(conn, "queued")
        except BaseException:
            await asyncio.to_thread(discard, final.root)
            raise
        self.wakeup.run_queued()
        return run

    # --- read ----------------------------------------------------------------------------

    async def get(self, run_id: str, *, caller: Caller) -> Run:
        async with self.db.connect() as conn:
            run = await store.get_run(conn, run_id, owner_id=caller.owner_scope)
        if run is None:
            raise RunNotFound(run_id)
        return run

    async def state(self, run_id: str, *, caller: Caller) -> State:
        async with self.db.connect() as conn:
            state = await store.get_state(conn, run_id, owner_id=caller.owner_scope)
        if state is None:
            raise RunNotFound(run_id)
        return state

    async def list(
        self, *, page_size: int | None, page_token: str | None, caller: Caller
    ) -> Page[Run]:
        size = check_page_size(page_size)
        before = decode_token("runs", page_token)
        async with self.db.connect() as conn:
            runs = await store.list_runs(
                conn, before_seq=before, limit=size + 1, owner_id=caller.owner_scope
            )
        token = encode_token("runs", runs[size - 1].seq) if len(runs) > size else ""
        return Page(runs[:size], token)

    async def counts(self, *, caller: Caller | None) -> dict[str, int]:
        """Runs by state, of the runs the caller may see; nothing for an anonymous caller
        (``None``: service-info read without credentials)."""
        if caller is None:
            return {}
        async with self.db.connect() as conn:
            return await store.count_by_state(conn, owner_id=caller.owner_scope)

    async def tasks(
        self, run_id: str, *, page_size: int | None, page_token: str | None, caller: Caller
    ) -> Page[Task]:
        size = check_page_size(page_size)
        after = decode_token(f"tasks:{run_id}", page_token)
        async with self.db.connect() as conn:
            if await store.get_state(conn, run_id, owner_id=caller.owner_scope) is None:
                raise RunNotFound(run_id)
            rows = await store.list_tasks(conn, run_id, after_ordinal=after, limit=size + 1)
        token = encode_token(f"tasks:{run_id}", rows[size - 1][0]) if len(rows) > size else ""
        return Page([t for _, t in rows[:size]], token)

    async def task(self, run_id: str, task_id: str, *, caller: Caller) -> Task:
        async with self.db.connect() as conn:
            if await store.get_state(conn, run_id, owner_id=caller.owner_scope) is None:
                raise RunNotFound(run_id)
            task = await store.get_task(conn, run_id, task_id)
        if task is None:
            raise TaskNotFound(run_id, task_id)
        return task

    def rundir(self, run_id: str) -> RunDir:
        """The run's folder. Unscoped: check the caller first (``state``, ``task``)."""
        return RunDir.for_run(self.settings.data_dir, run_id)

    async def task_log(
        self, run_id: str, task_id: str, stream: str, *, caller: Caller
    ) -> tuple[Path, LogSpan]:
        """Where one task's share of the engine's ``stream`` is: the file and its span."""
        task = await self.task(run_id, task_id, caller=caller)
        if stream not in LOG_STREAMS:
            raise NotFound(f"log stream {stream!r} does not exist; use stdout or stderr")
        span = task.stdout if stream == "stdout" else task.stderr
        if span is None:
            raise NotFound(f"task {task_id!r} has no {stream} log")
        return self.rundir(run_id).resolve(span.path), span

    async def log_file(self, run_id: str, stream: str, *, caller: Caller) -> Path:
        await self.state(run_id, caller=caller)
        if stream not in LOG_STREAMS:
            raise NotFound(f"log stream {stream!r} does not exist; use stdout or stderr")
        return self.rundir(run_id).logs / stream

    async def run_file(self, run_id: str, path: str, *, caller: Caller) -> Path:
        """A file of the run, for download; refuses anything outside the run folder. A run
        that ran elsewhere (a cluster) has its files fetched from there when asked for: on
        every request while it is active, once when it has ended."""
        run = await self.get(run_id, caller=caller)
        rundir = self.rundir(run_id)
        target = rundir.resolve(path)
        source = self.file_sources.get(run.compute_env)
        fetched = run.state.terminal and await asyncio.to_thread(target.is_file)
        if source is not None and run.handle is not None and not fetched:
            rel = PurePosixPath(target.relative_to(rundir.root.resolve()).as_posix())
            try:
                await source.fetch(run.handle, rel, target)
            except Unreachable:
                if not await asyncio.to_thread(target.is_file):
                    raise  # 503: the file is on a compute environment out of reach now
            except NotFound:
                raise NotFound(f"run {run_id!r} has no file {path!r}") from None
        if not await asyncio.to_thread(target.is_file):
            raise NotFound(f"run {run_id!r} has no file {path!r}")
        return target

    # --- cancel --------------------------------------------------------------------------

    async def cancel(self, run_id: str, *, caller: Caller) -> State:
        """Cancel a run. QUEUED runs are CANCELED at once; active ones become CANCELING and
        their worker stops the engine. A finished run is left as it is (no error)."""
        while True:
            async with self.db.begin() as conn:
                state = await store.get_state(conn, run_id, owner_id=caller.owner_scope)
                if state is None:
                    raise RunNotFound(run_id)
                if state is State.QUEUED:
                    if await store.transition(
                        conn,
                        run_id,
                        expected=[State.QUEUED],
                        new=State.CANCELED,
                        reason="cancelled before it started",
                        end_time=utcnow(),
                    ):
                        return State.CANCELED
                    continue
                if state in ACTIVE_STATES and state is not State.CANCELING:
                    if await store.transition(
                        conn,
                        run_id,
                        expected=[state],
                        new=State.CANCELING,
                        reason="cancel requested",
                    ):
                        await self.wakeup.notify(conn, f"cancel:{run_id}")
                        break
                    continue
                return state
        self.wakeup.cancel_requested(run_id)
        return State.CANCELING
