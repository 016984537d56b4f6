"""The engine contract (tests/engines/contract.py) for the fake engine and the real ones."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from spindle.config import Settings
from spindle.domain import Run, RunRequest
from spindle.engines.base import Engine, EngineInfo
from spindle.engines.cwl import CwltoolEngine
from spindle.engines.registry import Catalog
from spindle.engines.snakemake import SnakemakeEngine
from spindle.storage.rundir import RunDir
from spindle.testing import FakeEngine, run_record
from tests.api.conftest import catalog
from tests.engines.contract import EngineContract, Stage
from tests.support import EXAMPLES, missing

__all__ = ["catalog"]  # the session's fixture, imported so pytest finds it here


def staged_run(
    rundir: RunDir, language: str, example: str, request: RunRequest, params_file: str
) -> Run:
    folder = EXAMPLES / language / example
    shutil.copytree(folder, rundir.attachments, dirs_exist_ok=True)
    params: dict[str, Any] = {}
    if (folder / params_file).exists():
        params = json.loads((folder / params_file).read_text())
    return run_record(
        request=RunRequest(
            request.workflow_type,
            request.workflow_type_version,
            request.workflow_url,
            workflow_params=params,
        ),
        engine=request.workflow_engine or "",
    )


class TestFakeEngine(EngineContract):
    @pytest.fixture
    def engine(self) -> Engine:
        return FakeEngine()

    @pytest.fixture
    def runs(self) -> Stage:
        def stage(rundir: RunDir, kind: str) -> Run:
            params = {"sleep": 0.05, "tasks": 2, "exit": 0 if kind == "good" else 4}
            return run_record(request=RunRequest("FAKE", "1", "workflow.fake", params))

        return stage


@pytest.mark.engine
class TestSnakemake(EngineContract):
    @pytest.fixture
    def info(self, catalog: Catalog) -> EngineInfo:
        if "snakemake" not in catalog.infos:
            missing("snakemake is not installed (run `make engines`)")
        return catalog.infos["snakemake"]

    @pytest.fixture
    def engine(self, snakemake_exe: str) -> Engine:
        return SnakemakeEngine(snakemake_exe, 1)

    @pytest.fixture
    def runs(self) -> Stage:
        def stage(rundir: RunDir, kind: str) -> Run:
            request = RunRequest("SMK", "9", "Snakefile", workflow_engine="snakemake")
            example = "wordcount" if kind == "good" else "fail"
            return staged_run(rundir, "snakemake", example, request, "params.json")

        return stage


@pytest.mark.engine
class TestCwltool(EngineContract):
    @pytest.fixture
    def info(self, catalog: Catalog) -> EngineInfo:
        if "cwltool" not in catalog.infos:
            missing("cwltool is not installed (run `make engines`)")
        return catalog.infos["cwltool"]

    @pytest.fixture
    def engine(self, cwltool_exe: str) -> Engine:
        return CwltoolEngine(cwltool_exe)

    @pytest.fixture
    def runs(self) -> Stage:
        def stage(rundir: RunDir, kind: str) -> Run:
            request = RunRequest("CWL", "v1.2", "workflow.cwl", workflow_engine="cwltool")
            example = "wordcount" if kind == "good" else "fail"
            return staged_run(rundir, "cwl", example, request, "inputs.json")

        return stage


def test_the_built_in_engines_are_installed_plugins() -> None:
    """Snakemake and cwltool come through the entry points, as an outside engine would."""
    from spindle.engines.registry import engine_classes

    classes = engine_classes()
    assert classes["snakemake"] is SnakemakeEngine
    assert classes["cwltool"] is CwltoolEngine
    assert Settings().engines == {}
    assert Path(__file__).exists()
