"""A real ``spindle serve`` process on a fresh data folder and a fresh database."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import socket
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import httpx
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from spindle.db.engine import create_engine

REPO = Path(__file__).resolve().parents[1]
WES = "/ga4gh/wes/v1"
DbKind = Literal["sqlite", "postgresql"]
#: Where the benchmark creates (and drops) its own PostgreSQL database.
DEFAULT_PG_ADMIN_URL = "postgresql+asyncpg://postgres@127.0.0.1:5432/postgres"
#: Seconds ``spindle serve`` may take to answer service-info (it asks cwltool and snakemake
#: for their versions at start-up, which is slow on a cold, busy machine).
START_TIMEOUT = 120.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def spindle_command() -> list[str]:
    script = Path(sys.executable).parent / "spindle"
    return [str(script)] if script.exists() else [sys.executable, "-m", "spindle"]


def _proc_times(pid: int) -> tuple[float, float, float, float]:
    """utime, stime, cutime, cstime of a process in seconds (fields 14-17 of its stat).
    cutime/cstime count the children it has waited for, and theirs in turn: for the server,
    every engine process tree that has ended."""
    raw = Path(f"/proc/{pid}/stat").read_text()
    fields = raw[raw.rindex(")") + 2 :].split()
    tick = os.sysconf("SC_CLK_TCK")
    u, s, cu, cs = (int(fields[i]) / tick for i in (11, 12, 13, 14))
    return u, s, cu, cs


@dataclass(frozen=True)
class CpuSnapshot:
    server: float
    engines: float
    backends: dict[int, float]

    def until(self, later: CpuSnapshot) -> CpuUse:
        return CpuUse(
            server=later.server - self.server,
            engines=later.engines - self.engines,
            db=sum(t - self.backends.get(pid, 0.0) for pid, t in later.backends.items())
            if later.backends
            else None,
        )


@dataclass(frozen=True)
class CpuUse:
    """CPU seconds between two snapshots. ``db`` is None on SQLite (its work is in the
    server process)."""

    server: float
    engines: float
    db: float | None


@dataclass
class Database:
    kind: DbKind
    url: str
    #: set for PostgreSQL: the admin URL and the database name to drop afterwards
    admin_url: str = ""
    name: str = ""

    def engine(self) -> AsyncEngine:
        return create_engine(self.url)


@contextlib.asynccontextmanager
async def database(kind: DbKind, data_dir: Path, pg_admin_url: str) -> AsyncIterator[Database]:
    """A database that exists only for this benchmark: SQLite in the data folder, or a new
    PostgreSQL database dropped at the end."""
    if kind == "sqlite":
        yield Database(kind, f"sqlite+aiosqlite:///{data_dir / 'spindle.db'}")
        return
    name = f"spindle_bench_{os.getpid()}"
    admin = create_async_engine(pg_admin_url, isolation_level="AUTOCOMMIT")
    try:
        async with admin.connect() as conn:
            await conn.execute(text(f'DROP DATABASE IF EXISTS "{name}"'))
            await conn.execute(text(f'CREATE DATABASE "{name}"'))
        url = make_url(pg_admin_url).set(database=name).render_as_string(hide_password=False)
        try:
            yield Database(kind, url, admin_url=pg_admin_url, name=name)
        finally:
            async with admin.connect() as conn:
                await conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    finally:
        await admin.dispose()


class Server:
    """``spindle serve`` with the embedded worker, all settings at their defaults except the
    data folder, port, database and where the engines live."""

    def __init__(self, data_dir: Path, db: Database, log: Path) -> None:
        self.data_dir = data_dir
        self.db = db
        self.log = log
        #: settings beyond the defaults, as SPINDLE_* variables (``pages`` signs in: basic)
        self.settings: dict[str, str] = {}
        #: the ``spindle`` command line (``adoption``: ``serve --no-worker``)
        self.command = ["serve"]
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.api = f"{self.url}{WES}"
        self.proc: asyncio.subprocess.Process | None = None
        #: the benchmark's own connection to the server's database (events, bulk fill)
        self.engine = db.engine()

    async def cpu(self) -> CpuSnapshot:
        """CPU time used so far by the server process, by the engine processes it has
        reaped, and by the PostgreSQL backends connected to its database."""
        assert self.proc is not None
        utime, stime, cutime, cstime = _proc_times(self.proc.pid)
        backends: dict[int, float] = {}
        if self.db.kind == "postgresql":
            async with self.engine.connect() as conn:
                pids = await conn.execute(
                    text(
                        "SELECT pid FROM pg_stat_activity "
                        "WHERE datname = current_database() AND pid <> pg_backend_pid()"
                    )
                )
                for (pid,) in pids.all():
                    with contextlib.suppress(OSError, ValueError):
                        u, s, _, _ = _proc_times(int(pid))
                        backends[int(pid)] = u + s
        return CpuSnapshot(server=utime + stime, engines=cutime + cstime, backends=backends)

    @property
    def runs_dir(self) -> Path:
        return self.data_dir / "runs"

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("SPINDLE_")}
        env.update(
            SPINDLE_DATA_DIR=str(self.data_dir),
            SPINDLE_PORT=str(self.port),
            SPINDLE_ENGINES_DIR=str(REPO / ".engines"),
        )
        env.update(self.settings)
        if self.db.kind == "postgresql":
            env["SPINDLE_DATABASE_URL"] = self.db.url
        return env

    async def start(self, path: str = "/ready") -> None:
        """Start the server and wait until ``path`` answers 200 (``/ready``: every engine
        has been checked)."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        with self.log.open("ab") as out:
            self.proc = await asyncio.create_subprocess_exec(
                *spindle_command(),
                *self.command,
                env=self.env(),
                stdout=out,
                stderr=asyncio.subprocess.STDOUT,
                stdin=asyncio.subprocess.DEVNULL,
                cwd=self.data_dir,
            )
        deadline = time.monotonic() + START_TIMEOUT
        async with httpx.AsyncClient(timeout=2.0) as client:
            while time.monotonic() < deadline:
                if self.proc.returncode is not None:
                    break
                with contextlib.suppress(httpx.HTTPError):
                    if (await client.get(f"{self.api}{path}")).status_code == 200:
                        return
                await asyncio.sleep(0.2)
        tail = self.log.read_text(errors="replace")[-3000:]
        await self.stop()
        raise RuntimeError(f"spindle serve did not start within {START_TIMEOUT:g} s:\n{tail}")

    async def stop(self) -> None:
        proc = self.proc
        if proc is None or proc.returncode is not None:
            return
        proc.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(proc.wait(), 20)
        except TimeoutError:
            proc.kill()
            await asyncio.wait_for(proc.wait(), 10)


@contextlib.asynccontextmanager
async def running_server(kind: DbKind, root: Path, pg_admin_url: str) -> AsyncIterator[Server]:
    """A fresh data folder under ``root``, a fresh database, a started server; all gone after
    (the folder is removed by the caller, who may keep it)."""
    data_dir = root / kind / "data"
    data_dir.mkdir(parents=True, exist_ok=True)
    async with database(kind, data_dir, pg_admin_url) as db:
        server = Server(data_dir, db, root / kind / "server.log")
        try:
            await server.start()
            yield server
        finally:
            await server.stop()
            await server.engine.dispose()


def remove_tree(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)
