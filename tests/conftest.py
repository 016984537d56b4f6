from __future__ import annotations

from pathlib import Path

import pytest

from spindle.config import Settings
from tests.support import REPO, missing

pytest_plugins = ["tests.db_fixtures"]


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
