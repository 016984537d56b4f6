from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from spindle.config import Settings
from spindle.engines.registry import Catalog, load_catalog
from tests.support import REPO, missing

pytest_plugins = ["tests.db_fixtures"]

#: Fixtures that need a real engine installed: they run one, or hand a test the app with its
#: detected engines. Each calls ``tests.support.missing()`` when the engine is absent.
ENGINE_FIXTURES = frozenset(
    {
        "snakemake_exe",
        "cwltool_exe",
        "snakemake_engine",
        "cwltool_engine",
        "catalog",
        "live_server",
        "miniwdl_exe",
        "miniwdl_engine",
    }
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Honest markers: a test that uses an engine fixture, directly or through another
    fixture, is marked ``engine`` whether or not it says so (``-m "not engine"`` then
    leaves out exactly the tests that need one)."""
    for item in items:
        if ENGINE_FIXTURES.intersection(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.engine)


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    """Settings for a test: its own data folder, the repository's engines, quick timings."""
    return Settings(
        data_dir=tmp_path / "data",
        engines_dir=REPO / ".engines",
        lease_seconds=5,
        poll_interval=0.5,
        monitor_interval=0.1,
        cancel_grace_seconds=3,
        snakemake_cores=1,
        # the in-process clients' base URL (http://spindle.test) is not a loopback name
        allowed_hosts=["spindle.test"],
    )


@pytest.fixture
def snakemake_exe(settings: Settings) -> str:
    exe = settings.engine_executable("snakemake")
    if not Path(exe).exists():
        missing(f"snakemake is not installed at {exe} (run `make engines`)")
    return exe


@pytest.fixture
def cwltool_exe(settings: Settings) -> str:
    exe = settings.engine_executable("cwltool")
    if not Path(exe).exists():
        missing(f"cwltool is not installed at {exe} (run `make engines`)")
    return exe


@pytest.fixture
def miniwdl_exe(settings: Settings) -> str:
    exe = settings.engine_executable("miniwdl")
    if not Path(exe).exists():
        missing(f"miniwdl is not installed at {exe} (run `make engines`)")
    return exe


#: The real engines every test of the app expects to find (its forms, its validation and its
#: runs all name them).
REAL_ENGINES = ("snakemake", "cwltool", "miniwdl")


@pytest.fixture(scope="session")
def detected_catalog() -> Catalog:
    """The installed engines, detected once per session (asking Snakemake its version takes
    seconds), as a real start-up detects them. One core for Snakemake, as in the settings
    fixture, so jobs run one at a time."""
    return asyncio.run(load_catalog(Settings(engines_dir=REPO / ".engines", snakemake_cores=1)))


@pytest.fixture
def catalog(detected_catalog: Catalog) -> Catalog:
    """The session's catalog, holding Snakemake and cwltool: a test of the app never passes
    because an engine is silently missing (a 400 "unsupported workflow type" where the test
    meant another 400). Without them the test skips locally and fails under CI=true; a test
    using this fixture is marked ``engine`` (tests/conftest.py)."""
    absent = [name for name in REAL_ENGINES if name not in detected_catalog.infos]
    if absent:
        why = "; ".join(f"{n}: {detected_catalog.unavailable.get(n, 'not found')}" for n in absent)
        missing(f"engines not detected ({why}); run `make engines`")
    return detected_catalog
