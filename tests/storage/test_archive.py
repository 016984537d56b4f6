"""The log archive: a valid zip of the run's logs, each task's share of them and the engine's
reports, made while it is read, and nothing from outside the run folder."""

from __future__ import annotations

import io
import json
import zipfile
from dataclasses import replace
from pathlib import Path

from spindle.domain import LogSpan, State, Task
from spindle.storage import archive
from spindle.storage.rundir import RunDir
from spindle.testing import run_record


def test_the_archive_holds_logs_task_logs_and_reports(tmp_path: Path) -> None:
    rundir = RunDir(tmp_path / "run")
    rundir.create()
    rundir.stdout.write_bytes(b"first task says hi\nsecond task says bye\n")
    rundir.stderr.write_bytes(b"warning\n")
    (rundir.logs / "engine-events.jsonl").write_text('{"event": 1}\n')
    (rundir.work / "report.html").write_text("<html>report</html>")
    (rundir.work / "provenance" / "metadata").mkdir(parents=True)
    (rundir.work / "provenance" / "metadata" / "manifest.json").write_text("{}")
    (rundir.outputs / "result.txt").write_text("not a log")
    secret = tmp_path / "secret.txt"
    secret.write_text("outside the run")
    (rundir.logs / "leak").symlink_to(secret)
    tasks = [
        Task(id="1", name="first", state=State.COMPLETE, stdout=LogSpan("logs/stdout", 0, 19)),
        Task(id="a/b", name="second", state=State.COMPLETE, stdout=LogSpan("logs/stdout", 19)),
        Task(id="3", name="nolog", state=State.COMPLETE),
    ]
    run = replace(run_record("run-1", state=State.COMPLETE), exit_code=0, cmd=["wf", "go"])

    data = b"".join(archive.stream(run, rundir, tasks))

    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        assert zf.testzip() is None
        assert sorted(zf.namelist()) == [
            "logs/engine-events.jsonl",
            "logs/stderr",
            "logs/stdout",
            "reports/cwltool-provenance/metadata/manifest.json",
            "reports/snakemake-report.html",
            "run.json",
            "tasks/1/stdout.log",
            "tasks/a_b/stdout.log",
        ]
        assert zf.read("tasks/1/stdout.log") == b"first task says hi\n"
        assert zf.read("tasks/a_b/stdout.log") == b"second task says bye\n"
        assert zf.read("logs/stderr") == b"warning\n"
        summary = json.loads(zf.read("run.json"))
        assert (summary["run_id"], summary["state"], summary["exit_code"]) == (
            "run-1",
            "COMPLETE",
            0,
        )
        assert summary["cmd"] == ["wf", "go"]
