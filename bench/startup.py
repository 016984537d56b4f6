"""Start-up time: ``spindle --version`` (wall and CPU), and ``spindle serve`` until its port
answers service-info and until ``GET /ready`` (every engine checked), on a first start (a fresh
data folder: the engines are asked their versions) and on a restart (the versions come from
the data folder's cache)."""

from __future__ import annotations

import asyncio
import resource
import time
from pathlib import Path

import httpx

from bench.server import START_TIMEOUT, Database, DbKind, Server, database, spindle_command
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


async def _serve_once(data_dir: Path, db: Database, log: Path) -> tuple[float, float]:
    """Seconds until service-info answers, and until ``GET /ready`` says every engine has
    been checked (and so their versions are cached for the next start)."""
    server = Server(data_dir, db, log)
    start = time.perf_counter()
    try:
        await server.start("/service-info")
        answers = time.perf_counter() - start
        async with httpx.AsyncClient(timeout=5) as client:
            for _ in range(int(START_TIMEOUT * 10)):
                if (await client.get(f"{server.api}/ready")).status_code == 200:
                    break
                await asyncio.sleep(0.1)
        return answers, time.perf_counter() - start
    finally:
        await server.stop()
        await server.engine.dispose()


async def measure(kind: DbKind, root: Path, pg_admin_url: str, *, reps: int) -> list[Row]:
    walls, cpu = await _version(reps)
    rows = [Row.of(kind, "startup", "spindle --version", walls, cpu=cpu, unit="s")]
    cold: list[float] = []
    cold_ready: list[float] = []
    warm: list[float] = []
    warm_ready: list[float] = []
    for i in range(reps):
        data_dir = root / kind / f"startup-{i}"
        data_dir.mkdir(parents=True, exist_ok=True)
        async with database(kind, data_dir, pg_admin_url) as db:
            log = root / kind / f"startup-{i}.log"
            answers, ready = await _serve_once(data_dir, db, log)
            cold.append(answers)
            cold_ready.append(ready)
            answers, ready = await _serve_once(data_dir, db, log)
            warm.append(answers)
            warm_ready.append(ready)
    for measure, seconds in (
        ("serve until it answers, first start", cold),
        ("serve until engines checked, first start", cold_ready),
        ("serve until it answers, restart", warm),
        ("serve until engines checked, restart", warm_ready),
    ):
        rows.append(Row.of(kind, "startup", measure, seconds, unit="s"))
    return rows
