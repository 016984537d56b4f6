"""The cluster over SSH (asyncssh): one connection per environment, opened when first needed,
kept alive with keepalives, and opened again after it dropped. Commands are SSH exec
sessions (a few at a time: sshd limits sessions per connection); files go through one SFTP
session on the same connection.

The retry policy is the caller's: a failed call drops the connection and raises
:class:`~spindle.errors.Unreachable`; the next call connects again.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shlex
from collections.abc import AsyncIterator, Sequence
from pathlib import Path, PurePosixPath
from typing import Any

import asyncssh

from spindle.backends.remote.transport import (
    Completed,
    Entry,
    Transport,
    kind_of,
    partial_name,
)
from spindle.compute import SshTarget
from spindle.errors import BackendError, NotFound, Unreachable

#: SSH exec sessions open at once on the connection (OpenSSH allows 10 sessions per
#: connection by default; the SFTP session is one of them).
MAX_SESSIONS = 4
#: Missed keepalives before the connection counts as dropped.
KEEPALIVE_COUNT = 3


class SshTransport(Transport):
    def __init__(self, target: SshTarget) -> None:
        self.target = target
        user = f"{target.user}@" if target.user else ""
        self.where = f"ssh://{user}{target.host}:{target.port}"
        self._conn: asyncssh.SSHClientConnection | None = None
        self._sftp: asyncssh.SFTPClient | None = None
        self._lock = asyncio.Lock()
        self._sessions = asyncio.Semaphore(MAX_SESSIONS)

    # --- the connection ------------------------------------------------------------------

    def _options(self) -> dict[str, Any]:
        t = self.target
        options: dict[str, Any] = {
            "port": t.port,
            "keepalive_interval": t.keepalive_seconds,
            "keepalive_count_max": KEEPALIVE_COUNT,
            "connect_timeout": t.connect_timeout,
        }
        if t.user:
            options["username"] = t.user
        if t.key_file is not None:
            options["client_keys"] = [str(t.key_file)]
        if not t.check_host_key:
            options["known_hosts"] = None
        elif t.known_hosts is not None:
            options["known_hosts"] = str(t.known_hosts)
        return options

    async def _connection(self) -> asyncssh.SSHClientConnection:
        async with self._lock:
            if self._conn is not None and self._conn.is_closed():
                self._drop()  # it dropped while idle (keepalives noticed, or the server left)
            if self._conn is None:
                try:
                    self._conn = await asyncssh.connect(self.target.host, **self._options())
                except (OSError, asyncssh.Error) as exc:
                    raise Unreachable(f"cannot connect to {self.where}: {_why(exc)}") from exc
            return self._conn

    async def _sftp_client(self) -> asyncssh.SFTPClient:
        conn = await self._connection()
        async with self._lock:
            if self._sftp is None or self._conn is not conn:
                try:
                    self._sftp = await conn.start_sftp_client()
                except (OSError, asyncssh.Error) as exc:
                    self._drop()
                    raise Unreachable(f"no SFTP session on {self.where}: {_why(exc)}") from exc
            return self._sftp

    def _drop(self) -> None:
        """Forget the connection (it failed); the next call opens a new one."""
        if self._sftp is not None:
            self._sftp.exit()
        if self._conn is not None:
            self._conn.abort()
        self._sftp = None
        self._conn = None

    @contextlib.asynccontextmanager
    async def _guard(self, what: str) -> AsyncIterator[None]:
        """Turn a dropped connection into Unreachable (dropping it), a missing file into
        NotFound and any other SFTP failure into BackendError."""
        try:
            yield
        except asyncssh.SFTPNoSuchFile as exc:
            raise NotFound(f"{what}: {exc.reason}") from exc
        except (
            asyncssh.SFTPConnectionLost,
            asyncssh.SFTPNoConnection,
            asyncssh.SFTPEOFError,
        ) as exc:
            self._drop()
            raise Unreachable(f"{what}: the connection to {self.where} dropped") from exc
        except asyncssh.SFTPError as exc:
            raise BackendError(f"{what} on {self.where}: {exc.reason}") from exc
        except (OSError, asyncssh.Error, TimeoutError) as exc:
            self._drop()
            raise Unreachable(f"{what}: {self.where}: {_why(exc)}") from exc

    async def close(self) -> None:
        conn = self._conn
        self._drop()
        if conn is not None:
            with contextlib.suppress(Exception):
                await conn.wait_closed()

    # --- commands ------------------------------------------------------------------------

    async def run(self, argv: Sequence[str], *, limit: float) -> Completed:
        command = shlex.join(argv)
        conn = await self._connection()
        async with self._sessions, self._guard(f"`{argv[0]}`"):
            try:
                result = await conn.run(command, check=False, timeout=limit)
            except asyncssh.TimeoutError:
                raise Unreachable(
                    f"`{argv[0]}` on {self.where} did not answer within {limit:g} s"
                ) from None
        code = result.exit_status if result.exit_status is not None else -1
        return Completed(code, _text(result.stdout), _text(result.stderr))

    # --- files ---------------------------------------------------------------------------

    async def upload(self, local: Path, remote: PurePosixPath) -> None:
        folders, files = await asyncio.to_thread(_tree, local)
        sftp = await self._sftp_client()
        async with self._guard(f"copying the run folder to {remote}"):
            for rel in [PurePosixPath("."), *folders]:
                await sftp.makedirs(str(remote / rel), exist_ok=True)
            for rel in files:
                await sftp.put(str(local / rel), str(remote / rel))

    async def listdir(self, path: PurePosixPath) -> list[Entry] | None:
        sftp = await self._sftp_client()
        try:
            async with self._guard(f"listing {path}"):
                names = await sftp.readdir(str(path))
        except NotFound:
            return None
        return [
            Entry(_text(n.filename), kind_of(n.attrs.permissions), n.attrs.size or 0)
            for n in names
            if n.filename not in (".", "..", b".", b"..")
        ]

    async def stat(self, path: PurePosixPath) -> Entry | None:
        sftp = await self._sftp_client()
        try:
            async with self._guard(f"looking at {path}"):
                attrs = await sftp.stat(str(path))
        except NotFound:
            return None
        return Entry(path.name, kind_of(attrs.permissions), attrs.size or 0)

    async def read(self, path: PurePosixPath, offset: int, length: int) -> bytes:
        sftp = await self._sftp_client()
        async with self._guard(f"reading {path}"), sftp.open(str(path), "rb") as f:
            data = await f.read(length, offset)
        return data if isinstance(data, bytes) else data.encode()

    async def realpath(self, path: PurePosixPath) -> PurePosixPath:
        sftp = await self._sftp_client()
        async with self._guard(f"resolving {path}"):
            return PurePosixPath(_text(await sftp.realpath(str(path))))

    async def download(self, remote: PurePosixPath, dest: Path) -> None:
        sftp = await self._sftp_client()
        await asyncio.to_thread(dest.parent.mkdir, parents=True, exist_ok=True)
        partial = partial_name(dest)
        try:
            async with self._guard(f"fetching {remote}"):
                await sftp.get(str(remote), str(partial))
            await asyncio.to_thread(os.replace, partial, dest)
        finally:
            await asyncio.to_thread(partial.unlink, missing_ok=True)


def _tree(root: Path) -> tuple[list[PurePosixPath], list[PurePosixPath]]:
    """Every folder and every file under ``root``, relative to it, parents first."""
    folders: list[PurePosixPath] = []
    files: list[PurePosixPath] = []
    for folder, dirs, names in os.walk(root):
        rel = PurePosixPath(Path(folder).relative_to(root).as_posix())
        folders += [rel / d for d in sorted(dirs)]
        files += [rel / n for n in sorted(names)]
    return folders, files


def _text(value: str | bytes | None) -> str:
    if value is None:
        return ""
    return value.decode(errors="replace") if isinstance(value, bytes) else value


def _why(exc: BaseException) -> str:
    text = str(exc).strip()
    return text or type(exc).__name__
