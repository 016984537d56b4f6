"""The run service: what the API, the web UI and the CLI (through the API) can do with runs.

It owns transactions; the repository functions in ``store`` and ``claim`` never commit.

Every call takes the :class:`~spindle.domain.Caller` and is scoped by it, here and nowhere
else: a caller who is not an admin sees and acts on their own runs only, and someone else's
run is "not found" (404), exactly like a run that does not exist, so its existence leaks
nothing. Admins see every run.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import (
    AsyncGenerator,
    AsyncIterator,
    Awaitable,
    Callable,
    Mapping,
    Sequence,
)
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Generic, TypeVar

from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from spindle import audit, metrics
from spindle.config import Settings
from spindle.domain import (
    Caller,
    ComputeEnv,
    Event,
    Failure,
    LogChunk,
    LogSpan,
    Progress,
    Run,
    RunGroup,
    RunRequest,
    RunSummary,
    State,
    Task,
)
from spindle.engines.registry import Catalog
from spindle.errors import (
    Forbidden,
    InvalidRequest,
    NotFound,
    RunNotFound,
    TaskNotFound,
    storage_error,
)
from spindle.paging import (
    check_page_size,
    decode_cursor,
    decode_token,
    encode_cursor,
    encode_token,
)
from spindle.runs import feed, group_store, lifecycle, logfollow, logs, query, store
from spindle.runs.query import RunQuery
from spindle.runs.submit import (
    SPINDLE_PARAMETERS,
    StagedFile,
    Upload,
    check_workflow_url,
    copy_attachments,
    requested_group,
    run_cpus,
    run_priority,
    stage_uploads,
)
from spindle.runs.wakeup import Wakeup

if TYPE_CHECKING:
    from spindle.runs.lineage import Link
from spindle.storage import fetch, s3_inputs
from spindle.storage.access import FileAnswer, FolderStorage, RunStorage
from spindle.storage.files import FileSource
from spindle.storage.rundir import RunDir, Staging, abandoned

#: more to write in the transaction that inserts a run (``RunService.submit``)
OnInsert = Callable[[AsyncConnection, Run], Awaitable[None]]

log = logging.getLogger(__name__)

LOG_STREAMS = ("stdout", "stderr")
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
        compute_envs: Sequence[ComputeEnv] = (ComputeEnv("local", "local"),),
        file_sources: Mapping[str, FileSource] | None = None,
        storage: RunStorage | None = None,
    ) -> None:
        self.db = db
        self.settings = settings
        self.catalog = catalog
        self.wakeup = wakeup
        self.compute_envs = {env.name: env for env in compute_envs}
        #: where a run's files are read (per compute environment whose run folders are
        #: elsewhere, ``file_sources`` fetch them)
        self.storage = storage or FolderStorage(settings.data_dir, file_sources)
        #: the one poll of the events table every stream of this process is served from
        self.feed = feed.Feed(db)
        self.streams = feed.Streams(
            per_user=settings.streams_per_user, total=settings.streams_total
        )

    @property
    def workflow_types(self) -> dict[str, list[str]]:
        """workflow_type -> every version something here runs: an installed engine, or a
        compute environment whose backend runs the type itself."""
        out = {t: list(v) for t, v in self.catalog.workflow_types.items()}
        for env in self.compute_envs.values():
            for kind, versions in env.workflow_types.items():
                known = out.setdefault(kind, [])
                known.extend(v for v in versions if v not in known)
        return out

    # --- submit --------------------------------------------------------------------------

    async def submit(
        self,
        request: RunRequest,
        uploads: Sequence[Upload],
        *,
        group_id: str | None = None,
        caller: Caller,
        on_insert: OnInsert | None = None,
    ) -> Run:
        """A new run of the caller's from a validated request (``runs.submit.parse_form``,
        ``new_request``), into run group ``group_id`` (or the one its ``run_group_id`` tag
        names), with its attachments (which keep their paths). ``on_insert`` writes more
        in the transaction that inserts the run (its notification subscriptions)."""
        group = await self._group(requested_group(group_id, request), caller)
        engine, compute_env = self._check(request, group)
        max_bytes = self.settings.max_upload_bytes
        url = request.workflow_url
        # an http(s) workflow is fetched here, checked and bounded, and runs from the copy
        fetched = await fetch.fetch(url, self.settings) if fetch.is_remote(url) else None

        def stage(dest: Path) -> list[StagedFile]:
            staged = stage_uploads(uploads, dest, max_bytes=max_bytes)
            if fetched is not None:
                name = fetch.store(url, fetched, dest, (f.name for f in staged))
                staged.append(StagedFile(name=name, size=len(fetched)))
            return staged

        return await self._create(
            request,
            engine,
            compute_env,
            stage,
            owner_id=caller.user_id,
            group=group,
            on_insert=on_insert,
        )

    async def resubmit(self, run_id: str, *, caller: Caller) -> Run:
        """A new run with the same request and the same attachments as ``run_id`` (which the
        caller must be able to see), owned by the caller."""
        old = await self.get(run_id, caller=caller)
        group = await self._group(old.group_id, caller, missing_ok=True)
        engine, compute_env = self._check(old.request, group)
        source = self.rundir(run_id).attachments
        from spindle.runs.lineage import Link  # (it builds on this module)

        return await self._create(
            old.request,
            engine,
            compute_env,
            lambda dest: copy_attachments(source, dest),
            owner_id=caller.user_id,
            group=group,
            link=Link(parent=run_id, recovery=False),
        )

    async def _group(
        self, group_id: str | None, caller: Caller, *, missing_ok: bool = False
    ) -> RunGroup | None:
        """The run group a run is submitted into, if the caller may use it."""
        if group_id is None:
            return None
        async with self.db.connect() as conn:
            row = await group_store.get_group_row(conn, group_id, owner_id=caller.owner_scope)
        if row is None:
            if missing_ok:
                return None
            raise InvalidRequest("run_group_id", f"run group {group_id!r} was not found")
        return group_store.group_from_row(row)

    def _check(self, request: RunRequest, group: RunGroup | None = None) -> tuple[str, str]:
        """The engine (by name: an engine's, or the compute environment's type when it runs
        the workflow itself) and compute environment for a request (into ``group``), or
        InvalidRequest."""
        default_env = group.compute_env if group and group.compute_env else "local"
        compute_env = request.workflow_engine_parameters.get("compute_env", default_env)
        engine = self.catalog.resolve(
            request.workflow_type,
            request.workflow_type_version,
            request.workflow_engine,
            request.workflow_engine_version,
            self.compute_envs.get(compute_env),
        )
        known = {p.name for p in engine.parameters()} if engine else set()
        known |= SPINDLE_PARAMETERS
        for key in request.workflow_engine_parameters:
            if key not in known:
                raise InvalidRequest(
                    "workflow_engine_parameters",
                    f"{key!r} is not a parameter of {engine.name if engine else compute_env}; "
                    "known: " + ", ".join(sorted(known)),
                )
        cpus = run_cpus(request.workflow_engine_parameters)
        run_priority(request.workflow_engine_parameters)
        if group is not None and group.max_cpus is not None and cpus > group.max_cpus:
            raise InvalidRequest(
                "workflow_engine_parameters",
                f"the run asks for {cpus} CPUs, more than the max_cpus {group.max_cpus} of run "
                f"group {group.id!r}; it could never start",
            )
        env = self.compute_envs.get(compute_env)
        if env is None:
            raise InvalidRequest(
                "workflow_engine_parameters",
                f"compute_env {compute_env!r} is not configured; configured: "
                + ", ".join(self.compute_envs),
            )
        # staged before the engine starts
        s3_inputs.check(request.workflow_params, self.settings.s3_input_buckets)
        if engine is None:
            return env.type, compute_env
        engine.validate(request, env)
        return engine.name, compute_env

    async def _create(
        self,
        request: RunRequest,
        engine: str,
        compute_env: str,
        stage: Callable[[Path], list[StagedFile]],
        *,
        owner_id: int,
        group: RunGroup | None = None,
        link: Link | None = None,
        on_insert: OnInsert | None = None,
    ) -> Run:
        """Stage the attachments (``stage`` fills the folder it is given; blocking, so it
        runs in a thread) in a staging folder, insert the run and move its folder into place
        before the commit (``storage.rundir.Staging``): nothing is left behind if any step
        fails, and a crash leaves the run with its folder or a staging folder the next start
        settles. With ``link``, the run is recorded as made from another
        (``runs.lineage``), which may hand it its working folder inside the transaction."""
        run_id = str(uuid.uuid4())
        staging = Staging(self.settings.data_dir, run_id)
        try:
            try:
                await asyncio.to_thread(staging.begin)
                staged = await asyncio.to_thread(stage, staging.rundir.attachments)
            except OSError as exc:
                raise storage_error(
                    "cannot stage the run's attachments", exc, staging.folder
                ) from exc
            check_workflow_url(request.workflow_url, staged)
            async with self.db.begin() as conn:
                run = await store.insert_run(
                    conn,
                    run_id=run_id,
                    request=request,
                    engine=engine,
                    compute_env=compute_env,
                    owner_id=owner_id,
                    group_id=group.id if group else None,
                    priority=run_priority(request.workflow_engine_parameters),
                    cpus=run_cpus(request.workflow_engine_parameters),
                )
                if link is not None:
                    await link.record(conn, run_id, staging)
                await audit.record(
                    conn,
                    "run.submit",
                    target=("run", run_id),
                    detail={
                        "workflow_type": request.workflow_type,
                        "workflow_url": request.workflow_url[:500],
                        "compute_env": compute_env,
                        **({"group_id": group.id} if group else {}),
                    },
                )
                if on_insert is not None:
                    await on_insert(conn, run)
                await self.wakeup.notify(conn, "queued")
                try:
                    await asyncio.to_thread(staging.place)
                except OSError as exc:
                    raise storage_error(
                        "cannot move the run's folder into place", exc, staging.final.root
                    ) from exc
        except BaseException:
            await asyncio.to_thread(staging.discard)
            raise
        await asyncio.to_thread(staging.done)
        self.wakeup.run_queued()
        metrics.submitted(request.workflow_type, compute_env)
        return run

    async def settle_submissions(self) -> int:
        """At start-up: finish (run stored: its folder put in place) or undo (no run: its
        files removed) each submission a crash interrupted. Answers how many there were."""
        found = await asyncio.to_thread(abandoned, self.settings.data_dir)
        for staging in found:
            async with self.db.connect() as conn:
                stored = await store.get_state(conn, staging.run_id) is not None
            await asyncio.to_thread(staging.settle, stored)
            log.warning(
                "a submission interrupted by a crash was %s: run %s",
                "completed" if stored else "removed",
                staging.run_id,
            )
        return len(found)

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
        self,
        *,
        page_size: int | None,
        page_token: str | None,
        group_id: str | None = None,
        caller: Caller,
    ) -> Page[Run]:
        """The runs the caller may see, newest first; with ``group_id``, that run group's
        only (an extension: a group the caller cannot see simply has no runs here)."""
        size = check_page_size(page_size)
        kind = "runs" if group_id is None else f"runs:group:{group_id}"
        before = decode_token(kind, page_token)
        async with self.db.connect() as conn:
            runs = await store.list_runs(
                conn,
                before_seq=before,
                limit=size + 1,
                owner_id=caller.owner_scope,
                group_id=group_id,
            )
        token = encode_token(kind, runs[size - 1].seq) if len(runs) > size else ""
        return Page(runs[:size], token)

    async def search(
        self,
        q: RunQuery,
        *,
        page_size: int | None = None,
        page_token: str | None = None,
        caller: Caller,
    ) -> Page[RunSummary]:
        """Summaries of the runs the caller may see that match ``q``, in its order,
        keyset-paged both ways."""
        _check_owner_filter(q, caller)
        size = check_page_size(page_size)
        after, back = decode_cursor(q.token_kind, page_token, q.key_width)
        async with self.db.connect() as conn:
            rows = await query.search(
                conn, q, after=after, back=back, limit=size + 1, owner_id=caller.owner_scope
            )
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

    async def count_matching(self, q: RunQuery, *, caller: Caller) -> int:
        """How many of the runs the caller may see match ``q``, on every page."""
        _check_owner_filter(q, caller)
        async with self.db.connect() as conn:
            return await query.count(conn, q, owner_id=caller.owner_scope)

    async def summary(self, run_id: str, *, caller: Caller) -> RunSummary:
        async with self.db.connect() as conn:
            run = await query.get_summary(conn, run_id, owner_id=caller.owner_scope)
        if run is None:
            raise RunNotFound(run_id)
        return run

    async def counts(self, *, caller: Caller | None) -> dict[str, int]:
        """Runs by state, of the runs the caller may see (states with no runs are absent);
        nothing for an anonymous caller (``None``: service-info read without credentials)."""
        if caller is None:
            return {}
        async with self.db.connect() as conn:
            return await store.count_by_state(conn, owner_id=caller.owner_scope)

    async def counts_since(self, since: datetime, *, caller: Caller) -> dict[str, int]:
        """Runs the caller may see submitted since ``since``, by state."""
        async with self.db.connect() as conn:
            return await query.count_since(conn, since, owner_id=caller.owner_scope)

    async def recent_failures(self, limit: int = 5, *, caller: Caller) -> Failures:
        """The runs the caller may see that ended in EXECUTOR_ERROR or SYSTEM_ERROR last,
        newest first."""
        async with self.db.connect() as conn:
            return await query.recent_failures(conn, limit=limit, owner_id=caller.owner_scope)

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

    # --- logs and files ------------------------------------------------------------------

    async def log_file(self, run_id: str, stream: str, *, caller: Caller) -> Path:
        await self.state(run_id, caller=caller)
        _check_stream(stream)
        return self.rundir(run_id).logs / stream

    async def read_log(
        self,
        run_id: str,
        stream: str,
        *,
        offset: int = 0,
        limit: int = logs.MAX_CHUNK,
        caller: Caller,
    ) -> LogChunk:
        """The run's engine stdout or stderr from ``offset``."""
        path = await self.log_file(run_id, stream, caller=caller)
        root = self.rundir(run_id).root
        return await asyncio.to_thread(
            logs.read_range, path, base=0, end=None, offset=offset, limit=limit, root=root
        )

    async def tail_log(
        self, run_id: str, stream: str, *, max_bytes: int, caller: Caller
    ) -> LogChunk:
        """The last ``max_bytes`` of the run's stdout or stderr."""
        path = await self.log_file(run_id, stream, caller=caller)
        root = self.rundir(run_id).root
        return await asyncio.to_thread(
            logs.read_tail, path, base=0, end=None, max_bytes=max_bytes, root=root
        )

    async def task_log(
        self, run_id: str, task_id: str, stream: str, *, caller: Caller
    ) -> tuple[Path, LogSpan]:
        """Where one task's share of the engine's ``stream`` is: the file and its span."""
        task = await self.task(run_id, task_id, caller=caller)
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
        caller: Caller,
    ) -> LogChunk:
        """One task's share of the engine output (its byte span of a log) from ``offset``."""
        path, span = await self.task_log(run_id, task_id, stream, caller=caller)
        return await asyncio.to_thread(
            logs.read_range,
            path,
            base=span.start or 0,
            end=span.end,
            offset=offset,
            limit=limit,
            root=self.rundir(run_id).root,
        )

    async def tail_task_log(
        self, run_id: str, task_id: str, stream: str, *, max_bytes: int, caller: Caller
    ) -> LogChunk:
        path, span = await self.task_log(run_id, task_id, stream, caller=caller)
        return await asyncio.to_thread(
            logs.read_tail,
            path,
            base=span.start or 0,
            end=span.end,
            max_bytes=max_bytes,
            root=self.rundir(run_id).root,
        )

    async def run_file(self, run_id: str, path: str, *, caller: Caller) -> FileAnswer:
        """A file of the run (anything inside its folder), for a download, a page or a
        link: a file on this host or a time-limited URL, as the run's storage answers."""
        run = await self.get(run_id, caller=caller)
        return await self.storage.open(run, path)

    # --- cancel --------------------------------------------------------------------------

    async def cancel(self, run_id: str, *, caller: Caller) -> State:
        """Cancel a run. QUEUED runs are CANCELED at once; active ones become CANCELING and
        their worker stops the engine. A finished run is left as it is (no error)."""
        while True:
            async with self.db.begin() as conn:
                state = await store.get_state(conn, run_id, owner_id=caller.owner_scope)
                if state is None:
                    raise RunNotFound(run_id)
                if not lifecycle.cancellable(state):
                    return state
                change = await lifecycle.request_cancel(conn, run_id, state, self.wakeup)
                if change is None:
                    continue  # it moved meanwhile: look again
                await audit.record(
                    conn,
                    "run.cancel",
                    target=("run", run_id),
                    detail={"from": state.value},
                    caller=caller,
                )
                if change.to is State.CANCELED:
                    return State.CANCELED
                break
        self.wakeup.cancel_requested(run_id)
        return State.CANCELING

    # --- events --------------------------------------------------------------------------

    async def events(
        self, run_id: str, *, after_id: int = 0, limit: int = 1000, caller: Caller
    ) -> Events:
        """A run's events (state changes with their reasons), oldest first."""
        async with self.db.connect() as conn:
            if await store.get_state(conn, run_id, owner_id=caller.owner_scope) is None:
                raise RunNotFound(run_id)
            return await store.list_events(conn, run_id, after_id=after_id, limit=limit)

    async def follow(
        self,
        run_id: str,
        *,
        after_id: int = 0,
        interval: float = feed.INTERVAL,
        caller: Caller,
        check: feed.Check | None = None,
    ) -> AsyncIterator[Event | Progress]:
        """A run's events after ``after_id`` as they are written, and its progress whenever
        it changes; ends once the run has ended and its last event was given, or ``check``
        (awaited before each batch and at least every ``stream_recheck_seconds``) says the
        caller's credentials no longer hold. TooManyRequests over the stream caps."""
        await self.state(run_id, caller=caller)  # RunNotFound before the first item
        return self._counted(
            caller,
            self.feed.follow_run(
                run_id,
                after_id=after_id,
                interval=interval,
                check=check,
                check_every=self.settings.stream_recheck_seconds,
            ),
        )

    def _counted(self, caller: Caller, items: AsyncGenerator[T, None]) -> AsyncIterator[T]:
        """``items`` as one of the caller's open streams (refused over the caps)."""
        return self.streams.counted(caller.user_id, items)

    async def last_event_id(self) -> int:
        """The newest event's id (of any run: a position in the stream, not a run's data)."""
        async with self.db.connect() as conn:
            return await store.last_event_id(conn)

    async def follow_all(
        self,
        *,
        after_id: int | None = None,
        interval: float = feed.INTERVAL,
        caller: Caller,
        check: feed.Check | None = None,
    ) -> AsyncIterator[Event]:
        """The events of every run the caller may see after ``after_id`` (None: after the
        last one written by now) as they are written. Ends only when ``check`` says the
        caller's credentials no longer hold. TooManyRequests over the stream caps."""
        position = await self.last_event_id() if after_id is None else after_id
        return self._counted(
            caller,
            self.feed.follow_all(
                owner_id=caller.owner_scope,
                position=position,
                interval=interval,
                check=check,
                check_every=self.settings.stream_recheck_seconds,
            ),
        )

    # --- live logs (SSE, api/logstream.py) ----------------------------------------------

    async def follow_log(
        self,
        run_id: str,
        stream: str,
        *,
        offset: int = 0,
        task_id: str | None = None,
        interval: float = feed.INTERVAL,
        task_recheck: float = logfollow.TASK_RECHECK,
        caller: Caller,
        check: feed.Check | None = None,
    ) -> AsyncIterator[logfollow.LogPiece | logfollow.LogEnd]:
        """The run's ``stream`` (or task ``task_id``'s share of it) from ``offset`` as it is
        written, ending once the run has ended (the task's span is closed) and the log is
        drained. The run's state comes from the shared feed's poll; a task's row is read
        again when the run's progress changes (a task ended) or every ``task_recheck``
        seconds. TooManyRequests over the stream caps; RunNotFound, TaskNotFound as the
        plain reads."""
        root = self.rundir(run_id).root
        if task_id is None:
            path = await self.log_file(run_id, stream, caller=caller)
            span: list[LogSpan | None] = [None]
        else:
            path, first = await self.task_log(run_id, task_id, stream, caller=caller)
            span = [first]

        async def read(at: int, limit: int) -> LogChunk:
            current = span[0]
            base, end = (0, None) if current is None else (current.start or 0, current.end)
            return await asyncio.to_thread(
                logs.read_range, path, base=base, end=end, offset=at, limit=limit, root=root
            )

        seen: list[Progress | None] = [None]
        due = [time.monotonic() + task_recheck]

        async def complete(state: State, progress: Progress | None) -> bool:
            if task_id is None:
                return state.terminal
            current = span[0]
            if current is not None and current.end is not None:
                return True
            if state.terminal or progress != seen[0] or time.monotonic() >= due[0]:
                seen[0] = progress  # (the task may have ended: look again)
                due[0] = time.monotonic() + task_recheck
                async with self.db.connect() as conn:
                    task = await store.get_task(conn, run_id, task_id)
                if task is not None:
                    span[0] = task.stdout if stream == "stdout" else task.stderr
            current = span[0]
            return state.terminal or (current is not None and current.end is not None)

        async def pieces() -> AsyncGenerator[logfollow.LogPiece | logfollow.LogEnd, None]:
            looks = self.feed.watch_run(run_id, interval=interval)
            try:
                async for item in logfollow.follow(
                    read,
                    looks,
                    offset=offset,
                    complete=complete,
                    check=check,
                    check_every=self.settings.stream_recheck_seconds,
                ):
                    yield item
            finally:
                await looks.aclose()

        return self._counted(caller, pieces())


def _check_stream(stream: str) -> None:
    if stream not in LOG_STREAMS:
        raise NotFound(f"log stream {stream!r} does not exist; use stdout or stderr")


def _check_owner_filter(q: RunQuery, caller: Caller) -> None:
    """Only an admin lists other users' runs by owner (anyone may name themselves)."""
    if q.owner is not None and caller.owner_scope is not None and q.owner != caller.name:
        raise Forbidden("owner: only an admin may list the runs of another user")
