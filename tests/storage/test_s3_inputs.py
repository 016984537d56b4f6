"""``s3://`` inputs: which strings are inputs, how each engine's params are rewritten to the
staged copy (a CWL File's location by its name in the attachments, any other string by the
copy's path), and what is refused. The download itself is the S3 store's (test_s3.py)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from spindle.domain import RunRequest
from spindle.engines.cwl import CwltoolEngine
from spindle.errors import InvalidRequest
from spindle.storage import s3_inputs
from spindle.storage.rundir import RunDir
from spindle.storage.s3 import S3Location
from spindle.testing import run_record


def test_params_are_rewritten_to_the_staged_copies(tmp_path: Path) -> None:
    rundir = RunDir(tmp_path / "run")
    rundir.create()
    params = {
        "reads": {"class": "File", "location": "s3://lab-data/runs/r1.fq"},
        "reference": "s3://lab-data/ref/genome.fa",
        "samples": ["s3://lab-data/runs/r1.fq", "plain text", 3],
        "note": "not s3://an input in the middle",
    }
    fetched: list[tuple[S3Location, Path]] = []

    def fetch(where: S3Location, dest: Path) -> None:
        fetched.append((where, dest))
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.write_text(str(where))

    staged = s3_inputs.stage(params, rundir, fetch, lambda p: f"/site{p}")

    assert [str(w) for w, _ in fetched] == [
        "s3://lab-data/runs/r1.fq",
        "s3://lab-data/ref/genome.fa",
    ]  # each object once
    copy = rundir.attachments / "s3" / "lab-data" / "runs" / "r1.fq"
    assert copy.read_text() == "s3://lab-data/runs/r1.fq"
    assert staged["reads"] == {"class": "File", "location": "s3/lab-data/runs/r1.fq"}
    ref = rundir.attachments.absolute() / "s3" / "lab-data" / "ref" / "genome.fa"
    assert staged["reference"] == f"/site{ref}"
    assert staged["samples"] == [f"/site{copy.absolute()}", "plain text", 3]
    assert staged["note"] == params["note"]
    assert params["reads"]["location"] == "s3://lab-data/runs/r1.fq"  # not changed in place


def test_a_staged_cwl_input_is_a_file_in_the_attachments(tmp_path: Path) -> None:
    rundir = RunDir(tmp_path / "run")
    rundir.create()
    (rundir.attachments / "wf.cwl").write_text("cwlVersion: v1.2\nclass: Workflow\n")
    engine = CwltoolEngine("cwltool")
    params = {"text": {"class": "File", "location": "s3://lab-data/poem.txt"}}
    request = RunRequest("CWL", "v1.2", "wf.cwl", params)
    engine.validate(request)  # an s3:// location is accepted: Spindle stages it

    def fetch(where: S3Location, dest: Path) -> None:
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.write_text("a poem\n")

    staged = s3_inputs.stage(params, rundir, fetch, str)
    run = run_record(request=RunRequest("CWL", "v1.2", "wf.cwl", staged), engine="cwltool")
    engine.prepare(run, rundir)
    written = json.loads(rundir.params_file.read_text())
    location = written["text"]["location"]
    copy = (rundir.attachments / "s3" / "lab-data" / "poem.txt").resolve()
    assert location == copy.as_uri()


@pytest.mark.parametrize(
    "url",
    [
        "s3://",
        "s3://bucket-name",
        "s3://bucket-name/",
        "s3://bucket-name/folder/",
        "s3://Bad_Bucket/key",
        "s3://bucket-name/a/../../b",
        "s3://bucket-name/a//b",
        "s3://bucket-name/./b",
        "s3://bucket-name/k?versionId=1",
        "s3://bucket-name/k#frag",
    ],
)
def test_a_malformed_s3_url_is_refused(url: str) -> None:
    with pytest.raises(InvalidRequest) as refused:
        s3_inputs.check({"x": [url]})
    assert refused.value.field == "workflow_params"


def test_inputs_may_be_held_to_some_buckets() -> None:
    params = {"a": "s3://lab-data/x.txt", "b": {"class": "File", "location": "s3://other/y"}}
    assert len(s3_inputs.check(params)) == 2
    with pytest.raises(InvalidRequest, match="s3_input_buckets") as refused:
        s3_inputs.check(params, ["lab-data"])
    assert "s3://other/y" in refused.value.problem
    assert len(s3_inputs.check(params, ["lab-data", "other"])) == 2
