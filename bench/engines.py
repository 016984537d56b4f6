"""Engine start-up: how long each engine environment in ``.engines/`` takes to answer
``--version`` with ``PYTHONDONTWRITEBYTECODE=1`` (as on the CI machines, where Python never
caches the bytecode it compiles), and how much of the environment has its bytecode compiled.
Without compiled bytecode every run pays for compiling the engine's imports again: the
figure that ``make engines`` (``uv pip sync --compile-bytecode``) exists to keep low."""

from __future__ import annotations

import asyncio
import importlib.util
import os
import tempfile
import time
from pathlib import Path

from bench.stats import Row

ENGINES_DIR = Path(__file__).resolve().parent.parent / ".engines"


def bytecode_share(venv: Path) -> tuple[int, int]:
    """(modules with their bytecode cached for this interpreter, modules) in ``venv``'s
    site-packages. The engine environments use the same Python minor version as the bench."""
    compiled = total = 0
    for site in venv.glob("lib/python3*/site-packages"):
        for source in site.rglob("*.py"):
            total += 1
            if Path(importlib.util.cache_from_source(str(source))).exists():
                compiled += 1
    return compiled, total


async def _version_walls(executable: Path, reps: int, *, cold: bool = False) -> list[float]:
    """``cold``: as if the environment had no bytecode (Python looks for it under an empty
    PYTHONPYCACHEPREFIX and, told not to write, compiles every import again each time)."""
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
    with tempfile.TemporaryDirectory(prefix="spindle-bench-nopyc-") as empty:
        if cold:
            env["PYTHONPYCACHEPREFIX"] = empty
        return [await _one_version(executable, env) for _ in range(reps)]


async def _one_version(executable: Path, env: dict[str, str]) -> float:
    start = time.perf_counter()
    proc = await asyncio.create_subprocess_exec(
        str(executable),
        "--version",
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
        stdin=asyncio.subprocess.DEVNULL,
        env=env,
    )
    await proc.wait()
    return time.perf_counter() - start


def _environments(engines_dir: Path) -> list[tuple[Path, Path, int, int]]:
    """(venv, executable, compiled modules, modules) of each engine environment."""
    found = []
    for venv in sorted(p for p in engines_dir.iterdir() if p.is_dir()):
        executable = venv / "bin" / venv.name
        if executable.exists():
            found.append((venv, executable, *bytecode_share(venv)))
    return found


async def measure(*, reps: int, engines_dir: Path = ENGINES_DIR) -> list[Row]:
    rows: list[Row] = []
    for venv, executable, compiled, total in await asyncio.to_thread(_environments, engines_dir):
        share = 100.0 * compiled / total if total else 0.0
        cold = await _version_walls(executable, reps, cold=True)
        rows.append(
            Row.of(
                "-",
                "engines",
                f"{venv.name} --version, no bytecode",
                cold,
                unit="s",
                note="what every run paid before make engines compiled bytecode",
            )
        )
        walls = await _version_walls(executable, reps)
        rows.append(
            Row.of(
                "-",
                "engines",
                f"{venv.name} --version",
                walls,
                unit="s",
                note=f"bytecode for {compiled:,} of {total:,} modules ({share:.1f} %)",
            )
        )
    return rows
