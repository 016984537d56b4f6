"""The run service: what the API, the web UI and the CLI (through the API) can do with runs.

It owns transactions; the repository functions in ``store`` and ``claim`` never commit.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator, Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Generic, TypeVar

from sqlalchemy.ext.asyncio import AsyncEngine

from spindle.config import Settings
from spindle.db.types import utcnow
from spindle.domain import (
    ACTIVE_STATES,
    Event,
    Failure,
    LogChunk,
    LogSpan,
    Progress,
    Run,
    RunRequest,
    RunSummary,
    State,
    Task,
)
from spindle.engines.base import Engine
from spindle.engines.registry import Catalog
from spindle.errors import InvalidRequest, NotFound, RunNotFound, TaskNotFound
from spindle.runs import logs, query, store
from spindle.runs.paging import (
    check_page_size,
    decode_cursor,
    decode_token,
    encode_cursor,
    encode_token,
)
from spindle.runs.query import RunQuery
from spindle.runs.submit import (
    SPINDLE_PARAMETERS,
    StagedFile,
    Upload,
    check_workflow_url,
    copy_attachments,
    discard,
    parse_request,
    stage_uploads,
)
from spindle.runs.wakeup import Wakeup, notify_other_processes
from spindle.storage.rundir import RunDir

LOG_STREAMS = ("stdout", "stderr")
#: seconds between looks at the database while following runs' events
FOLLOW_INTERVAL = 0.5
#: events read per look while following
FOLLOW_BATCH = 500
T = TypeVar("T")
# (RunService has a method named ``list``, which hides the builtin in its annotations)
Failures = list[Failure]
Events = list[Event]


@dataclass(frozen=True)
class Page(Generic[T]):
    items: list[T]
    next_page_token: str
    #: the page before this one ("" on the first page; only searches page backwards)
    prev_page_token: str = ""


class RunService:
    def __init__(
        self,
        *,
        db: AsyncEngine,
        settings: Settings,
        catalog: Catalog,
        wakeup: Wakeup,
        compute_envs: Collection[str] = ("local",),
    ) -> None:
        self.db = db
        self.settings = settings
        self.catalog = catalog
        self.wakeup = wakeup
        self.compute_envs = tuple(compute_envs)

    # --- submit --------------------------------------------------------------------------

    async def submit(self, fields: Mapping[str, str | None], uploads: Sequence[Upload]) -> Run:
        """A new run from RunWorkflow form fields and attachments (which keep their paths)."""
        request = parse_request(fields)
        engine, compute_env = self._check(request)
        max_bytes = self.settings.max_upload_bytes
        return await self._create(
            request,
            engine,
            compute_env,
            lambda dest: stage_uploads(uploads, dest, max_bytes=max_bytes),
        )

    async def resubmit(self, run_id: str) -> Run:
        """A new run with the same request and the same attachments as ``run_id``."""
        old = await self.get(run_id)
        engine, compute_env = self._check(old.request)
        source = self.rundir(run_id).attachments
        return await self._create(
            old.request, engine, compute_env, lambda dest: copy_attachments(source, dest)
        )

    def _check(self, request: RunRequest) -> tuple[Engine, str]:
        """The engine and compute environment for a request, or InvalidRequest."""
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
        if compute_env not in self.compute_envs:
            raise InvalidRequest(
                "workflow_engine_parameters",
                f"compute_env {compute_env!r} is not configured; configured: "
                + ", ".join(self.compute_envs),
            )
        engine.validate(request)
        return engine, compute_env

    async def _create(
        self,
        request: RunRequest,
        engine: Engine,
        compute_env: str,
        stage: Callable[[Path], list[StagedFile]],
    ) -> Run:
        """Stage the attachments (``stage`` fills the folder it is given; blocking, so it
        runs in a thread) under a temporary name, move them into place, then store the run.
        Nothing is left behind if any step fails."""
        run_id = str(uuid.uuid4())
        runs_root = self.settings.data_dir / "runs"
        incoming = runs_root / ".incoming" / run_id
        final = RunDir.for_run(self.settings.data_dir, run_id)
        try:
            staging = RunDir(incoming)
            await asyncio.to_thread(staging.create)
            staged = await asyncio.to_thread(stage, staging.attachments)
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
                )
                await notify_other_processes(conn, "queued")
        except BaseException:
            await asyncio.to_thread(discard, final.root)
            raise
        self.wakeup.run_queued()
        return run

    # --- read ----------------------------------------------------------------------------

    async def get(self, run_id: str) -> Run:
        async with self.db.connect() as conn:
            run = await store.get_run(conn, run_id)
        if run is None:
            raise RunNotFound(run_id)
        return run

    async def state(self, run_id: str) -> State:
        async with self.db.connect() as conn:
            state = await store.get_state(conn, run_id)
        if state is None:
            raise RunNotFound(run_id)
        return state

    async def list(self, *, page_size: int | None, page_token: str | None) -> Page[Run]:
        size = check_page_size(page_size)
        before = decode_token("runs", page_token)
        async with self.db.connect() as conn:
            runs = await store.list_runs(conn, before_seq=before, limit=size + 1)
        token = encode_token("runs", runs[size - 1].seq) if len(runs) > size else ""
        return Page(runs[:size], token)

    async def search(
        self, q: RunQuery, *, page_size: int | None = None, page_token: str | None = None
    ) -> Page[RunSummary]:
        """Run summaries matching ``q``, in its order, keyset-paged both ways."""
        size = check_page_size(page_size)
        after, back = decode_cursor(q.token_kind, page_token, q.key_width)
        async with self.db.connect() as conn:
            rows = await query.search(conn, q, after=after, back=back, limit=size + 1)
        more = len(rows) > size
        rows = rows[:size]
        if back:
            rows.reverse()
        if not rows:
            return Page([], "", "")

        def token(run: RunSummary, *, back: bool) -> str:
            return encode_cursor(q.token_kind, q.key_of(run), back=back)

        if back:
            prev = token(rows[0], back=True) if more else ""
            return Page(rows, token(rows[-1], back=False), prev)
        prev = token(rows[0], back=True) if after is not None else ""
        return Page(rows, token(rows[-1], back=False) if more else "", prev)

    async def summary(self, run_id: str) -> RunSummary:
        async with self.db.connect() as conn:
            run = await query.get_summary(conn, run_id)
        if run is None:
            raise RunNotFound(run_id)
        return run

    async def counts(self) -> dict[str, int]:
        """Runs by state (states with no runs are absent)."""
        async with self.db.connect() as conn:
            return await store.count_by_state(conn)

    async def counts_since(self, since: datetime) -> dict[str, int]:
        """Runs submitted since ``since``, by state."""
        async with self.db.connect() as conn:
            return await query.count_since(conn, since)

    async def recent_failures(self, limit: int = 5) -> Failures:
        """The runs that ended in EXECUTOR_ERROR or SYSTEM_ERROR last, newest first."""
        async with self.db.connect() as conn:
            return await query.recent_failures(conn, limit=limit)

    async def tasks(
        self, run_id: str, *, page_size: int | None, page_token: str | None
    ) -> Page[Task]:
        size = check_page_size(page_size)
        after = decode_token(f"tasks:{run_id}", page_token)
        async with self.db.connect() as conn:
            if await store.get_state(conn, run_id) is None:
                raise RunNotFound(run_id)
            rows = await store.list_tasks(conn, run_id, after_ordinal=after, limit=size + 1)
        token = encode_token(f"tasks:{run_id}", rows[size - 1][0]) if len(rows) > size else ""
        return Page([t for _, t in rows[:size]], token)

    async def task(self, run_id: str, task_id: str) -> Task:
        async with self.db.connect() as conn:
            if await store.get_state(conn, run_id) is None:
                raise RunNotFound(run_id)
            task = await store.get_task(conn, run_id, task_id)
        if task is None:
            raise TaskNotFound(run_id, task_id)
        return task

    def rundir(self, run_id: str) -> RunDir:
        return RunDir.for_run(self.settings.data_dir, run_id)

    async def log_file(self, run_id: str, stream: str) -> Path:
        _check_stream(stream)
        await self.state(run_id)
        return self.rundir(run_id).logs / stream

    async def read_log(
        self, run_id: str, stream: str, *, offset: int = 0, limit: int = logs.MAX_CHUNK
    ) -> LogChunk:
        """The run's engine stdout or stderr from ``offset``."""
        path = await self.log_file(run_id, stream)
        return await asyncio.to_thread(
            logs.read_range, path, base=0, end=None, offset=offset, limit=limit
        )

    async def tail_log(self, run_id: str, stream: str, *, max_bytes: int) -> LogChunk:
        """The last ``max_bytes`` of the run's stdout or stderr."""
        path = await self.log_file(run_id, stream)
        return await asyncio.to_thread(logs.read_tail, path, base=0, end=None, max_bytes=max_bytes)

    async def _task_span(self, run_id: str, task_id: str, stream: str) -> tuple[Path, LogSpan]:
        task = await self.task(run_id, task_id)
        _check_stream(stream)
        span = task.stdout if stream == "stdout" else task.stderr
        if span is None:
            raise NotFound(f"task {task_id!r} has no {stream} log")
        return self.rundir(run_id).resolve(span.path), span

    async def read_task_log(
        self,
        run_id: str,
        task_id: str,
        stream: str,
        *,
        offset: int = 0,
        limit: int = logs.MAX_CHUNK,
    ) -> LogChunk:
        """One task's share of the engine output (its byte span of a log) from ``offset``."""
        path, span = await self._task_span(run_id, task_id, stream)
        return await asyncio.to_thread(
            logs.read_range, path, base=span.start or 0, end=span.end, offset=offset, limit=limit
        )

    async def tail_task_log(
        self, run_id: str, task_id: str, stream: str, *, max_bytes: int
    ) -> LogChunk:
        path, span = await self._task_span(run_id, task_id, stream)
        return await asyncio.to_thread(
            logs.read_tail, path, base=span.start or 0, end=span.end, max_bytes=max_bytes
        )

    async def run_file(self, run_id: str, path: str) -> Path:
        """A file of the run, for download; refuses anything outside the run folder."""
        await self.state(run_id)
        target = self.rundir(run_id).resolve(path)
        if not target.is_file():
            raise NotFound(f"run {run_id!r} has no file {path!r}")
        return target

    # --- cancel --------------------------------------------------------------------------

    async def cancel(self, run_id: str) -> State:
        """Cancel a run. QUEUED runs are CANCELED at once; active ones become CANCELING and
        their worker stops the engine. A finished run is left as it is (no error)."""
        while True:
            async with self.db.begin() as conn:
                state = await store.get_state(conn, run_id)
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
                        await notify_other_processes(conn, f"cancel:{run_id}")
                        break
                    continue
                return state
        self.wakeup.cancel_requested(run_id)
        return State.CANCELING

    # --- events --------------------------------------------------------------------------

    async def events(self, run_id: str, *, after_id: int = 0, limit: int = 1000) -> Events:
        """A run's events (state changes with their reasons), oldest first."""
        async with self.db.connect() as conn:
            if await store.get_state(conn, run_id) is None:
                raise RunNotFound(run_id)
            return await store.list_events(conn, run_id, after_id=after_id, limit=limit)

    async def follow(
        self, run_id: str, *, after_id: int = 0, interval: float = FOLLOW_INTERVAL
    ) -> AsyncIterator[Event | Progress]:
        """A run's events after ``after_id`` as they are written, and its progress whenever
        it changes; ends once the run has ended and its last event was given."""
        await self.state(run_id)  # RunNotFound before the first item
        return self._follow(run_id, after_id, interval)

    async def _follow(
        self, run_id: str, after_id: int, interval: float
    ) -> AsyncIterator[Event | Progress]:
        last: Progress | None = None
        while True:
            async with self.db.connect() as conn:
                # the state first: a run's final event is committed with its final state,
                # so once the state reads terminal, the events read next include that event
                current = await store.get_progress(conn, run_id)
                if current is None:
                    return
                state, progress = current
                batch = await store.list_events(conn, run_id, after_id=after_id, limit=FOLLOW_BATCH)
            for event in batch:
                after_id = event.id
                yield event
            if progress is not None and progress != last:
                last = progress
                yield progress
            if state.terminal and len(batch) < FOLLOW_BATCH:
                return
            if len(batch) < FOLLOW_BATCH:
                await asyncio.sleep(interval)

    async def last_event_id(self) -> int:
        async with self.db.connect() as conn:
            return await store.last_event_id(conn)

    async def follow_all(
        self, *, after_id: int | None = None, interval: float = FOLLOW_INTERVAL
    ) -> AsyncIterator[Event]:
        """Every run's events after ``after_id`` (None: after the last one written by now)
        as they are written. Never ends by itself."""
        position = await self.last_event_id() if after_id is None else after_id
        return self._follow_all(position, interval)

    async def _follow_all(self, position: int, interval: float) -> AsyncIterator[Event]:
        while True:
            async with self.db.connect() as conn:
                batch = await store.list_all_events(conn, after_id=position, limit=FOLLOW_BATCH)
            for event in batch:
                position = event.id
                yield event
            if len(batch) < FOLLOW_BATCH:
                await asyncio.sleep(interval)


def _check_stream(stream: str) -> None:
    if stream not in LOG_STREAMS:
        raise NotFound(f"log stream {stream!r} does not exist; use stdout or stderr")
