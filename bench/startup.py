"""Start-up time: ``spindle --version`` (wall and CPU), and ``spindle serve`` until its port
answers service-info, cold (a fresh data folder: the engines are asked their versions) and
warm (a restart: the versions come from the data folder's cache)."""

from __future__ import annotations

import asyncio
import resource
import time
from pathlib import Path

from bench.server import Database, DbKind, Server, database, spindle_command
from bench.stats import Row


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


async def _version(reps: int) -> tuple[list[float], float]:
    walls: list[float] = []
    before = _children_cpu()
    for _ in range(reps):
        start = time.perf_counter()
        proc = await asyncio.create_subprocess_exec(
            *spindle_command(),
            "--version",
            stdout=asyncio.subprocess.DEVNULL,
            stdin=asyncio.subprocess.DEVNULL,
        )
        await proc.wait()
        walls.append(time.perf_counter() - start)
    return walls, (_children_cpu() - before) / reps


async def _serve_once(data_dir: Path, db: Database, log: Path) -> float:
    server = Server(data_dir, db, log)
    start = time.perf_counter()
    try:
        await server.start()
        return time.perf_counter() - start
    finally:
        await server.stop()
        await server.engine.dispose()


async def measure(kind: DbKind, root: Path, pg_admin_url: str, *, reps: int) -> list[Row]:
    walls, cpu = await _version(reps)
    rows = [Row.of(kind, "startup", "spindle --version", walls, cpu=cpu, unit="s")]
    cold: list[float] = []
    warm: list[float] = []
    for i in range(reps):
        data_dir = root / kind / f"startup-{i}"
        data_dir.mkdir(parents=True, exist_ok=True)
        async with database(kind, data_dir, pg_admin_url) as db:
            log = root / kind / f"startup-{i}.log"
            cold.append(await _serve_once(data_dir, db, log))
            warm.append(await _serve_once(data_dir, db, log))
    rows.append(Row.of(kind, "startup", "serve until it answers, cold", cold, unit="s"))
    rows.append(Row.of(kind, "startup", "serve until it answers, restart", warm, unit="s"))
    return rows
