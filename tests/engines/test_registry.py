"""Engine detection: a slow engine is never dropped (checked on in the background, and a
503 meanwhile, not "not supported"); versions are cached by executable path and mtime; with
no engine at all the refusal says so. Fake engine executables are tiny shell scripts."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest

from spindle.config import Settings
from spindle.engines import registry, snakemake
from spindle.engines.registry import Catalog, load_catalog
from spindle.engines.snakemake import SnakemakeEngine
from spindle.errors import EngineChecking, InvalidRequest
from spindle.plugins import Registry

SMK_ONLY = Registry(engines={"snakemake": SnakemakeEngine})


def fake_snakemake(folder: Path, *, slow_calls: int) -> tuple[Path, Path]:
    """A ``snakemake`` whose first ``slow_calls`` runs hang for a minute; every run is
    counted in ``calls``."""
    calls = folder / "calls"
    exe = folder / "snakemake"
    exe.write_text(
        "#!/bin/sh\n"
        f'echo x >> "{calls}"\n'
        f'if [ "$(wc -l < "{calls}")" -le {slow_calls} ]; then exec sleep 60; fi\n'
        "echo 9.1.0\n"
    )
    exe.chmod(0o755)
    return exe, calls


def _count(calls: Path) -> int:
    return len(calls.read_text().splitlines()) if calls.exists() else 0


@pytest.fixture
def quick_detection(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(snakemake, "DETECT_TIMEOUT", 0.5)
    monkeypatch.setattr(registry, "RETRY_FIRST", 0.05)


async def test_slow_engine_is_still_checking_then_added(
    tmp_path: Path, quick_detection: None
) -> None:
    exe, calls = fake_snakemake(tmp_path, slow_calls=2)
    settings = Settings(data_dir=tmp_path / "data", snakemake=str(exe))
    catalog = await load_catalog(settings, SMK_ONLY, wait=0.1)
    try:
        assert "snakemake" in catalog.checking
        assert "snakemake" not in catalog.unavailable
        with pytest.raises(EngineChecking) as refused:
            catalog.resolve("SMK", "9", None, None)
        assert refused.value.status_code == 503
        assert "snakemake" in refused.value.message
        assert "still being checked" in refused.value.message
        assert catalog.get("snakemake").name == "snakemake"  # installed: runs may use it
        await asyncio.wait_for(asyncio.gather(*catalog.tasks), 30)  # the checks go on
        assert catalog.infos["snakemake"].version == "9.1.0"
        assert catalog.checking == {}
        assert catalog.resolve("SMK", "9", None, None).name == "snakemake"
        assert _count(calls) == 3
    finally:
        await catalog.aclose()


async def test_versions_are_cached_by_executable_path_and_mtime(tmp_path: Path) -> None:
    exe, calls = fake_snakemake(tmp_path, slow_calls=0)
    settings = Settings(data_dir=tmp_path / "data", snakemake=str(exe))
    cache = tmp_path / "data" / registry.CACHE_FILE
    first = await load_catalog(settings, SMK_ONLY, wait=5, cache=cache)
    assert first.infos["snakemake"].version == "9.1.0"
    assert _count(calls) == 1

    again = await load_catalog(settings, SMK_ONLY, wait=5, cache=cache)
    assert again.infos["snakemake"].version == "9.1.0"
    assert again.resolve("SMK", "9.1.0", None, None).name == "snakemake"
    assert _count(calls) == 1, "a restart runs no engine"

    stat = exe.stat()
    os.utime(exe, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))
    await load_catalog(settings, SMK_ONLY, wait=5, cache=cache)
    assert _count(calls) == 2, "a changed executable is asked again"


def test_no_engine_installed_says_so() -> None:
    with pytest.raises(InvalidRequest) as refused:
        Catalog().resolve("SMK", "9", None, None)
    assert refused.value.field == "workflow_type"
    assert "no engine is installed for any workflow type" in refused.value.message
    assert not refused.value.message.rstrip().endswith(":")
