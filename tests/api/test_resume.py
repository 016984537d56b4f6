"""Recovering a failed run with real engines: only the steps that did not finish run again.

A three-step workflow fails at step three because of a param; the recovery overrides it.
Each step appends its name to a marker file when it runs, so the markers count what ran:
steps one and two once (in the parent), step three twice (failed, then done). Snakemake
continues in the handed-over working folder (``--rerun-incomplete``), cwltool from its step
cache (``--cachedir``), which moves with the folder."""

from __future__ import annotations

import json
from pathlib import Path

import httpx

from spindle.config import Settings
from spindle.engines.registry import Catalog
from spindle.storage.rundir import RunDir
from tests.api.conftest import FINAL_STATES, WES, make_app, open_client, wait_state

SNAKEFILE = b"""\
rule all:
    input: "c.txt"

rule one:
    output: "a.txt"
    shell: "echo one >> markers.log; echo a > {output}"

rule two:
    input: "a.txt"
    output: "b.txt"
    shell: "echo two >> markers.log; cat {input} > {output}; echo b >> {output}"

rule three:
    input: "b.txt"
    output: "c.txt"
    params: mode=config["mode"]
    shell:
        "echo three >> markers.log; test {params.mode} = good; "
        "cat {input} > {output}; echo c >> {output}"
"""

STEP = b"""\
cwlVersion: v1.2
class: CommandLineTool
baseCommand: [sh, -c]
arguments:
  - position: 0
    valueFrom: >-
      echo "$1" >> "$0/markers.log"; test "$2" = good || exit 1;
      { if [ -n "$3" ]; then cat "$3"; fi; echo "$1"; } > out.txt
inputs:
  marker: {type: string, inputBinding: {position: 1}}
  name: {type: string, inputBinding: {position: 2}}
  mode: {type: string, default: good, inputBinding: {position: 3}}
  previous: {type: "File?", inputBinding: {position: 4}}
outputs:
  out: {type: File, outputBinding: {glob: out.txt}}
"""

WORKFLOW = b"""\
cwlVersion: v1.2
class: Workflow
inputs:
  marker: string
  mode: string
outputs:
  out: {type: File, outputSource: three/out}
steps:
  one:
    run: step.cwl
    in: {marker: marker, name: {default: one}}
    out: [out]
  two:
    run: step.cwl
    in: {marker: marker, name: {default: two}, previous: one/out}
    out: [out]
  three:
    run: step.cwl
    in: {marker: marker, name: {default: three}, mode: mode, previous: two/out}
    out: [out]
"""


async def _submit(
    api: httpx.AsyncClient, data: dict[str, str], files: list[tuple[str, bytes]]
) -> str:
    r = await api.post(
        f"{WES}/runs",
        data=data,
        files=[("workflow_attachment", (name, body)) for name, body in files],
    )
    assert r.status_code == 200, r.text
    return str(r.json()["run_id"])


async def _recover_and_finish(api: httpx.AsyncClient, parent: str, params: dict[str, str]) -> str:
    assert await wait_state(api, parent, FINAL_STATES) == "EXECUTOR_ERROR"
    r = await api.post(
        f"{WES}/runs/{parent}/recover",
        json={"override_params": params, "notes": "step three fixed"},
    )
    assert r.status_code == 200, r.text
    child = str(r.json()["run_id"])
    state = await wait_state(api, child, FINAL_STATES)
    stderr = (await api.get(f"{WES}/runs/{child}/logs/stderr")).text
    assert state == "COMPLETE", stderr[-3000:]
    lineage = (await api.get(f"{WES}/runs/{child}/lineage")).json()
    assert (lineage["parent"]["run_id"], lineage["recovery"], lineage["work_from"]) == (
        parent,
        True,
        parent,
    )
    assert [c["key"] for c in lineage["changes"]] == ["mode"]
    return child


async def test_a_recovered_snakemake_run_runs_only_the_failed_step(
    api: httpx.AsyncClient, settings: Settings
) -> None:
    data = {
        "workflow_type": "SMK",
        "workflow_type_version": "9",
        "workflow_url": "Snakefile",
        "workflow_params": json.dumps({"mode": "bad"}),
    }
    parent = await _submit(api, data, [("Snakefile", SNAKEFILE)])
    child = await _recover_and_finish(api, parent, {"mode": "good"})

    work = RunDir.for_run(settings.data_dir, child).work
    assert (work / "markers.log").read_text().split() == ["one", "two", "three", "three"]
    assert (work / "c.txt").read_text().split() == ["a", "b", "c"]
    run = (await api.get(f"{WES}/runs/{child}")).json()
    assert "--rerun-incomplete" in run["run_log"]["cmd"]
    tasks = (await api.get(f"{WES}/runs/{child}/tasks")).json()["task_logs"]
    assert "three" in [t["name"] for t in tasks]
    assert not {"one", "two"} & {t["name"] for t in tasks}


async def test_a_recovered_cwl_run_reuses_the_cached_steps(
    settings: Settings, catalog: Catalog, tmp_path: Path
) -> None:
    # The markers live outside the run (a marker inside a step's folder would be cached with
    # the step), so the confined engines are let write there, as an operator would a
    # shared folder (confine_write_paths).
    markers = tmp_path / "markers"
    markers.mkdir()
    shared = settings.model_copy(update={"confine_write_paths": [markers]})
    data = {
        "workflow_type": "CWL",
        "workflow_type_version": "v1.2",
        "workflow_url": "workflow.cwl",
        "workflow_params": json.dumps({"marker": str(markers), "mode": "bad"}),
    }
    async for api in open_client(make_app(shared, catalog)):
        parent = await _submit(api, data, [("workflow.cwl", WORKFLOW), ("step.cwl", STEP)])
        child = await _recover_and_finish(api, parent, {"mode": "good"})

        assert (markers / "markers.log").read_text().split() == ["one", "two", "three", "three"]
        outputs = (await api.get(f"{WES}/runs/{child}")).json()["outputs"]
        got = await api.get(outputs["out"]["location"])
        assert got.text.split() == ["one", "two", "three"]
