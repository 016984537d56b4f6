"""How the SLURM backend reaches a cluster: commands and files, on this host or over SSH.

A :class:`Transport` runs commands (``sbatch``, ``squeue``, ...) and moves files between the
local run folder and the run folder on the cluster. :class:`LocalTransport` is for a cluster
whose commands and work folder this host has itself; :class:`~spindle.backends.remote.ssh.
SshTransport` goes through one kept-alive SSH connection.

Failures to reach the cluster (a dropped connection, a timeout, a controller that does not
answer) raise :class:`~spindle.errors.Unreachable`, which callers retry; anything else is a
plain :class:`~spindle.errors.BackendError`.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import stat
import uuid
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Literal

from spindle.errors import BackendError, NotFound, Unreachable

Kind = Literal["file", "dir", "link", "other"]


@dataclass(frozen=True)
class Completed:
    """A finished command: exit code (-1 if a signal ended it) and its output."""

    code: int
    stdout: str
    stderr: str


@dataclass(frozen=True)
class Entry:
    """One name in a folder listing (``kind`` of the name itself: links are not followed)."""

    name: str
    kind: Kind
    size: int


def kind_of(mode: int | None) -> Kind:
    if mode is None:
        return "other"
    if stat.S_ISLNK(mode):
        return "link"
    if stat.S_ISDIR(mode):
        return "dir"
    if stat.S_ISREG(mode):
        return "file"
    return "other"


def partial_name(dest: Path) -> Path:
    """A sibling name to write ``dest`` under before it is renamed into place."""
    return dest.with_name(f".{dest.name}.{uuid.uuid4().hex[:8]}.part")


class Transport(ABC):
    #: where the commands run, for messages (``ssh://user@host:22``, ``this host``)
    where: str

    @abstractmethod
    async def run(self, argv: Sequence[str], *, limit: float) -> Completed:
        """Run a command on the cluster (its login node), for at most ``limit`` seconds."""

    @abstractmethod
    async def upload(self, local: Path, remote: PurePosixPath) -> None:
        """Copy the local folder ``local`` to ``remote`` (made if missing), recursively."""

    @abstractmethod
    async def listdir(self, path: PurePosixPath) -> list[Entry] | None:
        """The names in a folder (without ``.`` and ``..``), or None if it does not exist."""

    @abstractmethod
    async def stat(self, path: PurePosixPath) -> Entry | None:
        """What ``path`` is, following links; None if it does not exist."""

    @abstractmethod
    async def read(self, path: PurePosixPath, offset: int, length: int) -> bytes:
        """Up to ``length`` bytes of a file from ``offset``."""

    @abstractmethod
    async def realpath(self, path: PurePosixPath) -> PurePosixPath:
        """``path`` with links and ``..`` resolved."""

    @abstractmethod
    async def download(self, remote: PurePosixPath, dest: Path) -> None:
        """Copy one file to ``dest`` (written under another name, then renamed into place)."""

    async def close(self) -> None:  # noqa: B027
        """Release connections."""


class LocalTransport(Transport):
    """The cluster's commands and work folder are on this host (a login node, or a shared
    file system)."""

    where = "this host"

    async def run(self, argv: Sequence[str], *, limit: float) -> Completed:
        shown = " ".join(argv)
        try:
            proc = await asyncio.create_subprocess_exec(
                *argv,
                # sbatch hands its environment to the job (--export=ALL): never Spindle's own
                env={k: v for k, v in os.environ.items() if not k.startswith("SPINDLE_")},
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
            )
        except OSError as exc:
            raise BackendError(f"`{shown}` does not start: {exc}") from exc
        try:
            out, err = await asyncio.wait_for(proc.communicate(), limit)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await proc.wait()
            raise Unreachable(f"`{shown}` did not answer within {limit:g} s") from None
        code = proc.returncode if proc.returncode is not None else -1
        return Completed(code, out.decode(errors="replace"), err.decode(errors="replace"))

    async def upload(self, local: Path, remote: PurePosixPath) -> None:
        await asyncio.to_thread(shutil.copytree, local, Path(remote), dirs_exist_ok=True)

    async def listdir(self, path: PurePosixPath) -> list[Entry] | None:
        return await asyncio.to_thread(self._listdir, Path(path))

    @staticmethod
    def _listdir(path: Path) -> list[Entry] | None:
        try:
            with os.scandir(path) as it:
                found = []
                for item in it:
                    st = item.stat(follow_symlinks=False)
                    found.append(Entry(item.name, kind_of(st.st_mode), st.st_size))
                return found
        except (FileNotFoundError, NotADirectoryError):
            return None

    async def stat(self, path: PurePosixPath) -> Entry | None:
        try:
            st = await asyncio.to_thread(os.stat, path)
        except (FileNotFoundError, NotADirectoryError):
            return None
        return Entry(path.name, kind_of(st.st_mode), st.st_size)

    async def read(self, path: PurePosixPath, offset: int, length: int) -> bytes:
        return await asyncio.to_thread(self._read, Path(path), offset, length)

    @staticmethod
    def _read(path: Path, offset: int, length: int) -> bytes:
        with path.open("rb") as f:
            f.seek(offset)
            return f.read(length)

    async def realpath(self, path: PurePosixPath) -> PurePosixPath:
        return PurePosixPath(await asyncio.to_thread(os.path.realpath, path))

    async def download(self, remote: PurePosixPath, dest: Path) -> None:
        await asyncio.to_thread(self._copy, Path(remote), dest)

    @staticmethod
    def _copy(source: Path, dest: Path) -> None:
        dest.parent.mkdir(parents=True, exist_ok=True)
        partial = partial_name(dest)
        try:
            shutil.copyfile(source, partial)
        except FileNotFoundError:
            raise NotFound(f"{source} does not exist") from None
        os.replace(partial, dest)
