"""Sharing a run's results: its files listed, signed download links, its logs as one zip,
and an RO-Crate of it. Scoped by the caller through :class:`RunService` (someone else's run
is "not found"), except a signed link, whose signature is the permission: it opens exactly
the one file of the one run it was made for, until it expires."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from spindle.domain import Caller, Task
from spindle.errors import Conflict, Forbidden, InvalidRequest
from spindle.paging import check_page_size, decode_cursor, encode_cursor
from spindle.runs import store
from spindle.runs.service import Page, RunService
from spindle.storage import archive, crate
from spindle.storage.access import FileAnswer
from spindle.storage.listing import GROUPS, Group, ListedFile, list_files, output_paths
from spindle.storage.rundir import safe_relative
from spindle.storage.s3 import manifest_key, read_manifest
from spindle.storage.signing import LinkSigner, SignedLink

#: Tasks read per query while an archive's member list is made.
_TASK_PAGE = 1000


@dataclass(frozen=True)
class Archive:
    """A zip made while it is read: ``chunks`` yields its bytes (blocking reads)."""

    name: str
    chunks: Iterable[bytes]


class OutputService:
    def __init__(self, runs: RunService, signer: LinkSigner) -> None:
        self.runs = runs
        self.signer = signer

    # --- listing -----------------------------------------------------------------------------

    async def files(
        self,
        run_id: str,
        *,
        group: str | None,
        page_size: int | None,
        page_token: str | None,
        caller: Caller,
    ) -> Page[ListedFile]:
        """One page of the run's files in path order, ``group`` only if given."""
        if group is not None and group not in GROUPS:
            raise InvalidRequest("group", f"must be one of {', '.join(GROUPS)}")
        size = check_page_size(page_size)
        kind = f"files:{run_id}:{group or ''}"
        key, _ = decode_cursor(kind, page_token, 1)
        after = str(key[0]) if key else None
        run = await self.runs.get(run_id, caller=caller)
        rundir = self.runs.rundir(run.id)

        def page() -> tuple[list[ListedFile], str | None]:
            manifest = read_manifest(rundir) or {}
            return list_files(
                rundir.root,
                outputs=output_paths(run.outputs),
                remote=manifest.get("files"),
                group=_group(group),
                after=after,
                limit=size,
            )

        items, last = await asyncio.to_thread(page)
        return Page(items, encode_cursor(kind, [last]) if last is not None else "")

    # --- signed links ----------------------------------------------------------------------

    async def link(
        self, run_id: str, path: str, *, seconds: int | None, caller: Caller
    ) -> tuple[SignedLink, str]:
        """A signed link to ``path`` of the run (which must be there to be shared)."""
        rel = safe_relative(path, field="path").as_posix()
        await self.runs.run_file(run_id, rel, caller=caller)  # visible, and the file is there
        return self.signer.sign(run_id, rel, seconds)

    async def signed_file(
        self, run_id: str, path: str, *, expires: str, signature: str
    ) -> FileAnswer:
        """The file a signed link names (no caller: the signature is the permission)."""
        link = self.signer.verify(run_id, path, expires, signature)
        async with self.runs.db.connect() as conn:
            run = await store.get_run(conn, link.run_id)
        if run is None:
            raise Forbidden("this download link is not valid (its run is gone)")
        return await self.runs.storage.open(run, link.path)

    # --- the log archive and the RO-Crate --------------------------------------------------

    async def _all_tasks(self, run_id: str) -> list[Task]:
        found: list[Task] = []
        after: int | None = None
        while True:
            async with self.runs.db.connect() as conn:
                rows = await store.list_tasks(conn, run_id, after_ordinal=after, limit=_TASK_PAGE)
            found += [t for _, t in rows]
            if len(rows) < _TASK_PAGE:
                return found
            after = rows[-1][0]

    async def log_archive(self, run_id: str, *, caller: Caller) -> Archive:
        run = await self.runs.get(run_id, caller=caller)
        tasks = await self._all_tasks(run.id)
        rundir = self.runs.rundir(run.id)
        zs = await asyncio.to_thread(archive.stream, run, rundir, tasks)
        return Archive(f"{run.id}-logs.zip", zs)

    async def ro_crate(self, run_id: str, *, caller: Caller) -> Archive:
        """The RO-Crate of a finished run as a zip (409 while it is active)."""
        run = await self.runs.get(run_id, caller=caller)
        if not run.state.terminal:
            raise Conflict(f"run {run_id!r} is {run.state.value}: a crate is made once it ends")
        rundir = self.runs.rundir(run.id)
        info = self.runs.catalog.infos.get(run.engine)
        engine = (info.name, info.version) if info is not None else (run.engine, "unknown")

        def make() -> Any:
            manifest = read_manifest(rundir) or {}
            uploaded = {
                path: f"s3://{manifest['bucket']}/{manifest_key(manifest, path)}"
                for path in manifest.get("files", {})
            }
            return crate.stream(crate.build(run, rundir, engine=engine, uploaded=uploaded), rundir)

        chunks = await asyncio.to_thread(make)
        return Archive(f"{run.id}-ro-crate.zip", chunks)


def _group(group: str | None) -> Group | None:
    for g in GROUPS:
        if g == group:
            return g
    return None
