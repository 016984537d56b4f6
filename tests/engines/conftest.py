"""One real run per (engine, example), shared by the session: the engine contract
(test_contract.py) and each engine's own tests (test_snakemake.py, test_cwl.py) assert on the
same finished run folder instead of each starting the engine again (a real run costs seconds;
these four were run twice before)."""

from __future__ import annotations

import asyncio

import pytest

from spindle.domain import RunRequest
from spindle.engines.base import Engine
from spindle.engines.cwl import CwltoolEngine
from spindle.engines.registry import Catalog
from spindle.engines.snakemake import SnakemakeEngine
from spindle.engines.wdl import MiniwdlEngine
from spindle.storage.rundir import RunDir
from tests.containers import build_image
from tests.engines import staged_run
from tests.engines.contract import Finished, run_to_end
from tests.support import missing


def _detected(catalog: Catalog, name: str) -> Engine:
    if name not in catalog.infos:
        why = catalog.unavailable.get(name, "not found")
        missing(f"{name} was not detected ({why}); run `make engines`")
    return catalog.engines[name]


@pytest.fixture(scope="session")
def snakemake_engine(detected_catalog: Catalog) -> SnakemakeEngine:
    """The session's Snakemake as start-up detected it (``detect`` ran once, in
    ``load_catalog``; one core, as the settings fixture)."""
    engine = _detected(detected_catalog, "snakemake")
    assert isinstance(engine, SnakemakeEngine)
    return engine


@pytest.fixture(scope="session")
def cwltool_engine(detected_catalog: Catalog) -> CwltoolEngine:
    """The session's cwltool as start-up detected it (``detect`` ran once)."""
    engine = _detected(detected_catalog, "cwltool")
    assert isinstance(engine, CwltoolEngine)
    return engine


@pytest.fixture(scope="session")
def miniwdl_engine(detected_catalog: Catalog) -> MiniwdlEngine:
    """The session's miniwdl as start-up detected it (``detect`` ran once)."""
    engine = _detected(detected_catalog, "miniwdl")
    assert isinstance(engine, MiniwdlEngine)
    return engine


def _finished(
    factory: pytest.TempPathFactory, engine: Engine, language: str, example: str
) -> Finished:
    rundir = RunDir(factory.mktemp(f"{engine.name}-{example}") / "run")
    rundir.create()
    if language == "snakemake":
        request = RunRequest("SMK", "9", "Snakefile", workflow_engine="snakemake")
        run = staged_run(rundir, language, example, request, "params.json")
    elif language == "wdl":
        request = RunRequest("WDL", "1.1", "workflow.wdl", workflow_engine="miniwdl")
        run = staged_run(rundir, language, example, request, "inputs.json")
    else:
        request = RunRequest("CWL", "v1.2", "workflow.cwl", workflow_engine="cwltool")
        run = staged_run(rundir, language, example, request, "inputs.json")
    return asyncio.run(run_to_end(engine, run, rundir))


@pytest.fixture(scope="session")
def snakemake_wordcount(
    tmp_path_factory: pytest.TempPathFactory, snakemake_engine: SnakemakeEngine
) -> Finished:
    """examples/snakemake/wordcount run to its end on the local backend, once."""
    return _finished(tmp_path_factory, snakemake_engine, "snakemake", "wordcount")


@pytest.fixture(scope="session")
def snakemake_fail(
    tmp_path_factory: pytest.TempPathFactory, snakemake_engine: SnakemakeEngine
) -> Finished:
    """examples/snakemake/fail run to its end on the local backend, once."""
    return _finished(tmp_path_factory, snakemake_engine, "snakemake", "fail")


@pytest.fixture(scope="session")
def cwltool_wordcount(
    tmp_path_factory: pytest.TempPathFactory, cwltool_engine: CwltoolEngine
) -> Finished:
    """examples/cwl/wordcount run to its end on the local backend, once."""
    return _finished(tmp_path_factory, cwltool_engine, "cwl", "wordcount")


@pytest.fixture(scope="session")
def cwltool_fail(
    tmp_path_factory: pytest.TempPathFactory, cwltool_engine: CwltoolEngine
) -> Finished:
    """examples/cwl/fail run to its end on the local backend, once."""
    return _finished(tmp_path_factory, cwltool_engine, "cwl", "fail")


@pytest.fixture(scope="session")
def wdl_scatter(
    tmp_path_factory: pytest.TempPathFactory, miniwdl_engine: MiniwdlEngine
) -> Finished:
    """examples/wdl/scatter (its File input attached) run to its end on the local backend,
    once."""
    return _finished(tmp_path_factory, miniwdl_engine, "wdl", "scatter")


@pytest.fixture(scope="session")
def wdl_fail(tmp_path_factory: pytest.TempPathFactory, miniwdl_engine: MiniwdlEngine) -> Finished:
    """examples/wdl/fail run to its end on the local backend, once."""
    return _finished(tmp_path_factory, miniwdl_engine, "wdl", "fail")


@pytest.fixture(scope="session")
def podman_image(tmp_path_factory: pytest.TempPathFactory) -> str:
    """The test image (tests/containers.py), built once per session; its name."""
    return build_image(tmp_path_factory.mktemp("image"))
