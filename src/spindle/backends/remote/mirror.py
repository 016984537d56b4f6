"""Keeping the local run folder in step with the one on the cluster, for what Spindle reads
while a run goes: the files in ``logs/`` (engine stdout/stderr, Snakemake's events, SLURM's
output) and ``exit_code``. Each look fetches only the bytes added since the last one, so the
local copies grow exactly as the remote files do and byte offsets (task log spans) stay
valid. Outputs are not copied: :func:`listing` describes them, and a download fetches one
file when it is asked for.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from pathlib import Path, PurePosixPath

from spindle.backends.remote.transport import Transport
from spindle.errors import NotFound
from spindle.storage.files import FileStat, ListedFiles
from spindle.storage.rundir import RunDir

log = logging.getLogger(__name__)

#: The file a run's wrapper writes the engine's exit code to, in the run folder.
EXIT_CODE_FILE = "exit_code"

#: Most bytes fetched from one file in one look (the rest comes in the next looks, or at once
#: when the run has ended).
CHUNK = 4 << 20
#: Folders of the run folder whose files can be outputs.
OUTPUT_FOLDERS = ("work", "outputs")
#: Folders never listed when a handle names none: what the built-in engines skipped before
#: engines declared it (``Engine.mirror_skip``, handed over in the job).
SKIPPED = ("work/.snakemake",)
#: Most entries one listing holds.
MAX_ENTRIES = 100_000


async def mirror(transport: Transport, root: PurePosixPath, rundir: RunDir, *, full: bool) -> None:
    """Bring ``logs/*`` and ``exit_code`` up to date; ``full``: all of it, however much."""
    entries = await transport.listdir(root / "logs") or []
    names = [e.name for e in entries if e.kind == "file"]
    sizes = {e.name: e.size for e in entries if e.kind == "file"}
    for name in names:
        await _follow(transport, root / "logs" / name, rundir.logs / name, sizes[name], full)
    code = await transport.stat(root / EXIT_CODE_FILE)
    local_code = rundir.root / EXIT_CODE_FILE
    if code is not None and code.kind == "file" and not local_code.exists():
        data = await transport.read(root / EXIT_CODE_FILE, 0, 64)
        await asyncio.to_thread(_write_new, local_code, data)


async def _follow(
    transport: Transport, remote: PurePosixPath, local: Path, size: int, full: bool
) -> None:
    have = await asyncio.to_thread(_size, local)
    if size < have:  # rewritten on the cluster: start over
        await asyncio.to_thread(local.unlink, missing_ok=True)
        have = 0
    while have < size:
        data = await transport.read(remote, have, min(CHUNK, size - have))
        if not data:
            break
        await asyncio.to_thread(_append, local, data)
        have += len(data)
        if not full:
            break


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0


def _append(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("ab") as f:
        f.write(data)


def _write_new(path: Path, data: bytes) -> None:
    partial = path.with_name(path.name + ".tmp")
    partial.write_bytes(data)
    partial.replace(path)


async def listing(
    transport: Transport, root: PurePosixPath, skip: Sequence[str] = SKIPPED
) -> ListedFiles:
    """The files and folders under ``work/`` and ``outputs/`` on the cluster (links followed
    when they stay inside the run folder, left out otherwise), but for the folders in
    ``skip`` (an engine's own bookkeeping can hold many thousands of files)."""
    skipped = {PurePosixPath(s) for s in skip}
    entries: dict[PurePosixPath, FileStat] = {}
    try:
        real_root = await transport.realpath(root)
    except NotFound:  # the run never got a folder there
        return ListedFiles(root, entries)
    pending = [PurePosixPath(f) for f in OUTPUT_FOLDERS]
    while pending and len(entries) < MAX_ENTRIES:
        folder = pending.pop()
        for entry in await transport.listdir(root / folder) or []:
            rel = folder / entry.name
            if rel in skipped:
                continue
            if entry.kind == "dir":
                entries[rel] = FileStat(rel, True, 0)
                pending.append(rel)
            elif entry.kind == "file":
                entries[rel] = FileStat(rel, False, entry.size)
            elif entry.kind == "link":
                target = await _inside(transport, root, real_root, rel)
                if target is not None:
                    entries[rel] = target
    return ListedFiles(root, entries)


async def _inside(
    transport: Transport, root: PurePosixPath, real_root: PurePosixPath, rel: PurePosixPath
) -> FileStat | None:
    """What the link ``rel`` leads to, if that is inside the run folder."""
    real = await transport.realpath(root / rel)
    if not real.is_relative_to(real_root) or real == real_root:
        return None
    found = await transport.stat(real)
    if found is None or found.kind not in ("file", "dir"):
        return None
    return FileStat(real.relative_to(real_root), found.kind == "dir", found.size)
