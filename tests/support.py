"""Helpers shared by the tests."""

from __future__ import annotations

import asyncio
import atexit
import functools
import os
import shutil
import tempfile
import threading
from pathlib import Path
from typing import NoReturn

import pytest

REPO = Path(__file__).resolve().parent.parent
EXAMPLES = REPO / "examples"


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() in {"1", "true", "yes"}


def missing(reason: str) -> NoReturn:
    """A server or program a test needs is missing: skip locally, fail under CI=true
    (CI must never pass by skipping)."""
    if in_ci():
        pytest.fail(f"CI=true and {reason}", pytrace=False)
    pytest.skip(reason)  # only outside CI: under CI=true the line above fails instead


def require_engines() -> None:
    """Snakemake, cwltool and miniwdl are installed in ``.engines`` (a Spindle process started
    for a test detects them); otherwise ``missing``: no test passes by an engine silently absent."""
    for name in ("snakemake", "cwltool", "miniwdl"):
        exe = REPO / ".engines" / name / "bin" / name
        if not exe.exists():
            missing(f"{name} is not installed at {exe} (run `make engines`)")


@functools.cache
def _engine_versions() -> Path:
    """The engines' versions detected once per test process, in the version cache's format
    (``engines.json``; detected in a thread, so any caller may be inside an event loop)."""
    from spindle.config import Settings
    from spindle.engines.registry import CACHE_FILE, load_catalog

    folder = Path(tempfile.mkdtemp(prefix="spindle-test-engines-"))
    atexit.register(shutil.rmtree, folder, True)
    path = folder / CACHE_FILE
    settings = Settings(engines_dir=REPO / ".engines", snakemake_cores=1)
    thread = threading.Thread(target=lambda: asyncio.run(load_catalog(settings, cache=path)))
    thread.start()
    thread.join()
    return path


def seed_engine_versions(data_dir: Path) -> None:
    """Give a Spindle process a test starts the version cache a restart would find, so it
    does not ask Snakemake and cwltool their versions again (seconds each start). The cache
    holds each executable's path, mtime and size: a process whose engines differ (another
    executable, one removed) still detects them itself."""
    target = data_dir / _engine_versions().name
    if not target.exists() and _engine_versions().exists():
        data_dir.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(_engine_versions(), target)
