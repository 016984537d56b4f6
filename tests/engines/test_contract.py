"""The engine contract (tests/engines/contract.py) for the fake engine and the real ones."""

from __future__ import annotations

from pathlib import Path

import pytest

from spindle.config import Settings
from spindle.domain import Run, RunRequest
from spindle.engines.base import Engine, EngineInfo
from spindle.engines.cwl import CwltoolEngine
from spindle.engines.registry import Catalog
from spindle.engines.snakemake import SnakemakeEngine
from spindle.engines.wdl import MiniwdlEngine
from spindle.storage.rundir import RunDir
from spindle.testing import FakeEngine, run_record
from tests.engines import staged_run
from tests.engines.contract import EngineContract, Finished, Stage


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
        return catalog.infos["snakemake"]

    @pytest.fixture
    def engine(self, snakemake_engine: SnakemakeEngine) -> Engine:
        return snakemake_engine

    @pytest.fixture
    def runs(self) -> Stage:
        def stage(rundir: RunDir, kind: str) -> Run:
            request = RunRequest("SMK", "9", "Snakefile", workflow_engine="snakemake")
            example = "wordcount" if kind == "good" else "fail"
            return staged_run(rundir, "snakemake", example, request, "params.json")

        return stage

    @pytest.fixture
    def good(self, snakemake_wordcount: Finished) -> Finished:
        return snakemake_wordcount  # shared with test_snakemake.py's wordcount test

    @pytest.fixture
    def bad(self, snakemake_fail: Finished) -> Finished:
        return snakemake_fail  # shared with test_snakemake.py's failing-job test


@pytest.mark.engine
class TestCwltool(EngineContract):
    @pytest.fixture
    def info(self, catalog: Catalog) -> EngineInfo:
        return catalog.infos["cwltool"]

    @pytest.fixture
    def engine(self, cwltool_engine: CwltoolEngine) -> Engine:
        return cwltool_engine

    @pytest.fixture
    def runs(self) -> Stage:
        def stage(rundir: RunDir, kind: str) -> Run:
            request = RunRequest("CWL", "v1.2", "workflow.cwl", workflow_engine="cwltool")
            example = "wordcount" if kind == "good" else "fail"
            return staged_run(rundir, "cwl", example, request, "inputs.json")

        return stage

    @pytest.fixture
    def good(self, cwltool_wordcount: Finished) -> Finished:
        return cwltool_wordcount  # shared with test_cwl.py's wordcount test

    @pytest.fixture
    def bad(self, cwltool_fail: Finished) -> Finished:
        return cwltool_fail  # shared with test_cwl.py's failing-step test


@pytest.mark.engine
class TestMiniwdl(EngineContract):
    @pytest.fixture
    def info(self, catalog: Catalog) -> EngineInfo:
        return catalog.infos["miniwdl"]

    @pytest.fixture
    def engine(self, miniwdl_engine: MiniwdlEngine) -> Engine:
        return miniwdl_engine

    @pytest.fixture
    def runs(self) -> Stage:
        def stage(rundir: RunDir, kind: str) -> Run:
            request = RunRequest("WDL", "1.1", "workflow.wdl", workflow_engine="miniwdl")
            example = "scatter" if kind == "good" else "fail"
            return staged_run(rundir, "wdl", example, request, "inputs.json")

        return stage

    @pytest.fixture
    def good(self, wdl_scatter: Finished) -> Finished:
        return wdl_scatter  # shared with test_wdl.py's scatter test

    @pytest.fixture
    def bad(self, wdl_fail: Finished) -> Finished:
        return wdl_fail  # shared with test_wdl.py's failing-task test


def test_the_built_in_engines_are_installed_plugins() -> None:
    """Snakemake and cwltool come through the entry points, as an outside engine would."""
    from spindle.engines.registry import engine_classes

    classes = engine_classes()
    assert classes["snakemake"] is SnakemakeEngine
    assert classes["cwltool"] is CwltoolEngine
    assert classes["miniwdl"] is MiniwdlEngine
    assert Settings().engines == {}
    assert Path(__file__).exists()
