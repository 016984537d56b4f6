"""Schemathesis with every check (``--checks all``) against a live ``spindle serve``, on a
throwaway data folder: once against the OpenAPI document Spindle serves, once against the
official WES 1.1.0 spec. Zero failures, with a bounded number of examples per operation.

The server runs without a worker, so the runs schemathesis submits stay QUEUED and none
starts an engine. The allowances each run needs are in ``tests/data/schemathesis-*.toml``,
each with its reason.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.live import running_server
from tests.support import REPO, missing

#: The server detects Snakemake and cwltool (what submissions are validated against):
#: running_server requires both installed, so the tests need engines, though none runs.
pytestmark = pytest.mark.engine

DATA = REPO / "tests" / "data"
SPEC = DATA / "workflow_execution_service.openapi.bundled.yaml"
#: Examples per operation and phase: enough to reach every operation and its limits, few
#: enough to keep both runs within about a minute.
EXAMPLES = 5
#: The same cases every time: a failure is reproducible with the seed.
SEED = 1212
TIMEOUT = 600


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with running_server(tmp_path_factory.mktemp("schemathesis"), worker=False) as url:
        yield url


@pytest.fixture(autouse=True)
def _in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Schemathesis keeps a cache folder where it runs: in the test's folder, not the repo."""
    monkeypatch.chdir(tmp_path)


def schemathesis(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    exe = Path(sys.executable).parent / "schemathesis"
    if not exe.exists():
        missing(f"schemathesis is not installed beside {sys.executable} (uv sync)")
    command = [str(exe), "--config-file", str(config), "run", *args]
    command += ["--checks", "all", "--max-examples", str(EXAMPLES), "--seed", str(SEED)]
    command += ["--phases", "examples,coverage,fuzzing", "--workers", "2", "--no-color"]
    return subprocess.run(command, capture_output=True, text=True, timeout=TIMEOUT, check=False)


def passed(result: subprocess.CompletedProcess[str]) -> None:
    assert result.returncode == 0, result.stdout[-12000:] + result.stderr[-4000:]
    assert "No issues found" in result.stdout or " passed" in result.stdout, result.stdout


def test_the_served_schema_holds(server: str) -> None:
    passed(schemathesis(DATA / "schemathesis-served.toml", f"{server}/openapi.json"))


def test_the_official_spec_holds(server: str) -> None:
    spec = DATA / "schemathesis-spec.toml"
    url = f"{server}/ga4gh/wes/v1"
    passed(schemathesis(spec, str(SPEC), "--url", url, "--exclude-operation-id", "ListTasks"))
    # The spec documents no 400 for ListTasks, though its page_size and page_token are
    # ListRuns', which documents the 400 for a bad one; Spindle refuses them alike, so only
    # the status-code check is left out there.
    only = ["--include-operation-id", "ListTasks", "--exclude-checks", "status_code_conformance"]
    passed(schemathesis(spec, str(SPEC), "--url", url, *only))
