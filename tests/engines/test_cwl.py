"""The CWL engine: real cwltool runs of ``examples/cwl`` and its log parser on written logs."""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import signal
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath
from typing import Any

import pytest

from spindle.domain import LogSpan, Run, RunRequest, State, Task
from spindle.engines.cwl import CwltoolEngine
from spindle.engines.cwl_log import CwltoolLog, split_command
from spindle.engines.registry import Catalog
from spindle.errors import EngineUnavailable, InvalidPath, InvalidRequest
from spindle.execution import Launch, Site
from spindle.storage.files import ListedFiles
from spindle.storage.rundir import RunDir
from tests.engines import validate_with
from tests.engines.contract import Finished
from tests.support import EXAMPLES

CWL_EXAMPLES = EXAMPLES / "cwl"


def make_run(
    params: dict[str, Any] | None = None,
    *,
    workflow_url: str = "workflow.cwl",
    engine_parameters: dict[str, str] | None = None,
) -> Run:
    return Run(
        id="run-cwl",
        seq=1,
        state=State.INITIALIZING,
        request=RunRequest(
            workflow_type="CWL",
            workflow_type_version="v1.2",
            workflow_url=workflow_url,
            workflow_params=params or {},
            workflow_engine="cwltool",
            workflow_engine_parameters=engine_parameters or {},
        ),
        engine="cwltool",
        compute_env="local",
        submitted_at=datetime.now(UTC),
    )


def staged(tmp_path: Path, example: str | None = None) -> RunDir:
    """A fresh run directory holding one example's files as attachments."""
    rundir = RunDir(tmp_path / "run")
    rundir.create()
    if example is not None:
        shutil.copytree(CWL_EXAMPLES / example, rundir.attachments, dirs_exist_ok=True)
    return rundir


def example_params(example: str) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((CWL_EXAMPLES / example / "inputs.json").read_text())
    return loaded


async def start(launch: Launch, rundir: RunDir) -> asyncio.subprocess.Process:
    """Start the engine as a backend would: logs to the run's files, its own process group."""
    with rundir.stdout.open("wb") as out, rundir.stderr.open("wb") as err:
        return await asyncio.create_subprocess_exec(
            *launch.argv,
            cwd=launch.cwd,
            env={**os.environ, **launch.env},
            stdin=asyncio.subprocess.DEVNULL,
            stdout=out,
            stderr=err,
            start_new_session=True,
        )


async def run_to_end(launch: Launch, rundir: RunDir) -> int:
    proc = await start(launch, rundir)
    code = await asyncio.wait_for(proc.wait(), 120)
    return code


def span_text(rundir: RunDir, span: LogSpan | None) -> str:
    assert span is not None
    assert span.start is not None
    data = (rundir.root / span.path).read_bytes()
    return data[span.start : span.end].decode()


def ran_cleanly(task: Task) -> None:
    assert task.state is State.COMPLETE
    assert task.exit_code == 0
    assert task.start_time is not None
    assert task.end_time is not None
    assert task.start_time.tzinfo is not None
    assert task.start_time <= task.end_time


# --- detect, validate, prepare --------------------------------------------------------------


def test_detect_reports_version_and_cwl_versions(
    cwltool_engine: CwltoolEngine, detected_catalog: Catalog
) -> None:
    engine = cwltool_engine  # detected once a session, as start-up detects it
    info = detected_catalog.infos[engine.name]
    assert info.name == "cwltool"
    assert info.workflow_type == "CWL"
    assert re.fullmatch(r"\d+\.\d+\.\d+", info.version)
    assert {"v1.0", "v1.1", "v1.2"} <= set(info.workflow_type_versions)
    assert engine.versions == info.workflow_type_versions


async def test_detect_refuses_a_missing_executable(tmp_path: Path) -> None:
    with pytest.raises(EngineUnavailable, match="does not start"):
        await CwltoolEngine(str(tmp_path / "no-cwltool")).detect()


async def test_detect_refuses_an_executable_that_fails(tmp_path: Path) -> None:
    broken = tmp_path / "cwltool"
    broken.write_text("#!/bin/sh\necho broken >&2\nexit 2\n")
    broken.chmod(0o755)
    with pytest.raises(EngineUnavailable, match="exited with 2: broken"):
        await CwltoolEngine(str(broken)).detect()


def test_validate_refuses_an_unsupported_version() -> None:
    with pytest.raises(InvalidRequest) as refused:
        validate_with(CwltoolEngine("cwltool"), "v0.9", {})
    assert refused.value.field == "workflow_type_version"
    assert "v1.2" in refused.value.problem


@pytest.mark.parametrize(
    "ref",
    [
        {"class": "File", "location": "../params.json"},
        {"class": "File", "path": "data/../../x"},
        {"class": "Directory", "location": "a/%2E%2E/%2E%2E/b"},
        {
            "class": "File",
            "location": "ok.txt",
            "secondaryFiles": [{"class": "File", "location": "../x"}],
        },
    ],
)
def test_validate_refuses_relative_inputs_that_leave_the_attachments(ref: dict[str, Any]) -> None:
    with pytest.raises(InvalidPath) as refused:
        validate_with(CwltoolEngine("cwltool"), "v1.2", {"inputs": [ref]})
    assert refused.value.field == "workflow_params"


def test_validate_accepts_urls_allowed_absolute_paths_and_plain_values(tmp_path: Path) -> None:
    (tmp_path / "reference").mkdir()
    validate_with(
        CwltoolEngine("cwltool", input_roots=[tmp_path / "reference"]),
        "v1.2",
        {
            "a": {"class": "File", "location": "https://example.org/x.txt"},
            "b": {"class": "File", "path": str(tmp_path / "reference" / "genome.fa")},
            "c": {"class": "File", "location": "data/x.txt"},
            "d": "../not/a/file",
            "e": [1, 2.5, None, True],
        },
    )


@pytest.mark.parametrize(
    "ref",
    [
        {"class": "File", "location": "file:///etc/hostname"},
        {"class": "File", "path": "/etc/passwd"},
        {"class": "Directory", "location": "file:///etc"},
        {
            "class": "File",
            "location": "data/x.txt",
            "secondaryFiles": [{"class": "File", "location": "file:///etc/shadow"}],
        },
        {"class": "File", "location": "ftp://example.org/x"},
        # inside an allowed folder by name, outside once the link is followed
        {"class": "File", "path": "{allowed}/link-to-etc/passwd"},
    ],
)
def test_validate_refuses_host_files_outside_the_allowed_folders(
    tmp_path: Path, ref: dict[str, Any]
) -> None:
    allowed = tmp_path / "allowed"
    allowed.mkdir()
    (allowed / "link-to-etc").symlink_to("/etc")
    ref = json.loads(json.dumps(ref).replace("{allowed}", str(allowed)))
    with pytest.raises(InvalidRequest) as refused:
        validate_with(CwltoolEngine("cwltool", input_roots=[allowed]), "v1.2", {"reads": ref})
    assert refused.value.field == "workflow_params"
    assert "'reads'" in refused.value.message


def test_no_host_file_is_an_input_by_default() -> None:
    with pytest.raises(InvalidRequest, match="cwl_input_roots, empty"):
        validate_with(
            CwltoolEngine("cwltool"), "v1.2", {"x": {"class": "File", "path": "/srv/genome.fa"}}
        )


def test_prepare_builds_the_command_and_rewrites_relative_inputs(
    tmp_path: Path, cwltool_exe: str
) -> None:
    rundir = staged(tmp_path, "wordcount")
    engine = CwltoolEngine(cwltool_exe)
    launch = engine.prepare(make_run(example_params("wordcount")), rundir)

    root = rundir.root.absolute()
    attachments = rundir.attachments.resolve()
    assert launch.argv == [
        cwltool_exe,
        "--no-container",
        "--disable-color",
        "--timestamps",
        "--no-doc-cache",
        "--outdir",
        str(root / "outputs"),
        "--tmpdir-prefix",
        f"{root / 'work' / 'tmp'}/",
        "--cachedir",
        str(root / "work" / "cwl-cache"),
        str(attachments / "workflow.cwl"),
        str(root / "params.json"),
    ]
    assert launch.cwd == root / "work"
    assert launch.env["PYTHONUNBUFFERED"] == "1"
    assert launch.env["TZ"] == "UTC"
    assert launch.env["TMPDIR"] == str(root / "work" / "tmp")
    assert (root / "work" / "tmp").is_dir()
    assert (root / "work" / "cwl-cache").is_dir()
    written = json.loads(rundir.params_file.read_text())
    assert written == {"text": {"class": "File", "location": (attachments / "poem.txt").as_uri()}}


def test_prepare_refuses_inputs_a_symlink_leads_out_of_the_attachments(tmp_path: Path) -> None:
    rundir = staged(tmp_path, "wordcount")
    outside = tmp_path / "secret"
    outside.mkdir()
    (outside / "key.txt").write_text("secret\n")
    (rundir.attachments / "link").symlink_to(outside)
    run = make_run({"text": {"class": "File", "location": "link/key.txt"}})
    with pytest.raises(InvalidPath, match="leaves the attachments") as refused:
        CwltoolEngine("cwltool").prepare(run, rundir)
    assert refused.value.field == "workflow_params"


def test_prepare_workflow_url_forms(tmp_path: Path) -> None:
    rundir = staged(tmp_path, "wordcount")
    engine = CwltoolEngine("cwltool")
    attachments = rundir.attachments.resolve()

    def workflow(url: str) -> str:
        return engine.prepare(make_run(workflow_url=url), rundir).argv[-2]

    assert workflow("tools/count.cwl") == str(attachments / "tools" / "count.cwl")
    assert workflow("workflow.cwl#main") == f"{(attachments / 'workflow.cwl').as_uri()}#main"
    # an http(s) URL runs from the copy Spindle fetched into the attachments at submission
    (rundir.attachments / "packed.cwl").write_text("cwlVersion: v1.2\n")
    url = "https://example.org/wf/packed.cwl#main"
    assert workflow(url) == f"{(attachments / 'packed.cwl').as_uri()}#main"
    for bad, problem in [
        ("../workflow.cwl", "contains '..'"),
        ("/etc/passwd", "must be a path relative"),
        ("file:///etc/passwd", "must be a path relative"),
        ("missing.cwl", "names no attached file"),
    ]:
        with pytest.raises(InvalidRequest, match=re.escape(problem)) as refused:
            workflow(bad)
        assert refused.value.field == "workflow_url"


def test_prepare_parallel_parameter(tmp_path: Path) -> None:
    rundir = staged(tmp_path, "wordcount")
    engine = CwltoolEngine("cwltool")
    assert [p.name for p in engine.parameters()] == ["parallel", "provenance"]
    on = engine.prepare(make_run(engine_parameters={"parallel": "True"}), rundir)
    assert "--parallel" in on.argv
    off = engine.prepare(make_run(engine_parameters={"compute_env": "local"}), rundir)
    assert "--parallel" not in off.argv
    with pytest.raises(InvalidRequest, match="parallel must be") as refused:
        engine.prepare(make_run(engine_parameters={"parallel": "yes please"}), rundir)
    assert refused.value.field == "workflow_engine_parameters"


# --- real runs ------------------------------------------------------------------------------


@pytest.mark.engine
def test_wordcount_runs_with_tasks_and_outputs(cwltool_wordcount: Finished) -> None:
    # the session's wordcount run on the local backend, shared with the engine contract
    engine, rundir = cwltool_wordcount.engine, cwltool_wordcount.rundir

    assert cwltool_wordcount.exit_code == 0, rundir.stderr.read_text()

    tasks = engine.progress(rundir)
    assert [(t.id, t.name) for t in tasks] == [("shout", "shout"), ("count", "count")]
    shout, count = tasks
    for task in tasks:
        ran_cleanly(task)
    assert shout.end_time is not None
    assert count.start_time is not None
    assert shout.end_time <= count.start_time
    assert shout.cmd[:2] == ["sh", "-c"]
    assert "tr '[:lower:]' '[:upper:]'" in shout.cmd[2]
    assert shout.cmd[3].endswith("/poem.txt")
    assert shout.cmd[-2] == ">"
    assert shout.cmd[-1].endswith("/shouted.txt")
    assert count.cmd[:3] == ["wc", "-l", "-w"]
    assert count.cmd[3] == "<"
    assert count.cmd[4].endswith("/shouted.txt")
    assert shout.stderr == shout.stdout
    assert shout.stderr is not None
    assert shout.stderr.path == "logs/stderr"
    assert "shouting 3 lines" in span_text(rundir, shout.stderr)
    assert "shouting" not in span_text(rundir, count.stderr)
    assert span_text(rundir, count.stderr).rstrip().endswith("[job count] completed success")

    outputs = engine.outputs(rundir)
    assert set(outputs) == {"shouted", "counts"}
    shouted, counts = outputs["shouted"], outputs["counts"]
    assert shouted["location"] == "run:outputs/shouted.txt"
    assert counts["location"] == "run:outputs/counts.txt"
    assert "path" not in shouted
    assert "path" not in counts
    shouted_file = rundir.root / "outputs" / "shouted.txt"
    assert shouted_file.read_text() == "THE QUICK BROWN FOX\nJUMPS OVER\nTHE LAZY DOG\n"
    assert shouted["size"] == shouted_file.stat().st_size
    counts_file = rundir.root / "outputs" / "counts.txt"
    assert counts_file.read_text().split() == ["3", "9"]
    assert counts["size"] == counts_file.stat().st_size
    assert counts["class"] == "File"
    assert counts["basename"] == "counts.txt"


@pytest.mark.engine
def test_failing_step_is_an_executor_error(cwltool_fail: Finished) -> None:
    # the session's failing run on the local backend, shared with the engine contract
    engine, rundir = cwltool_fail.engine, cwltool_fail.rundir

    assert cwltool_fail.exit_code == 1

    [task] = engine.progress(rundir)
    assert (task.id, task.name) == ("break", "break")
    assert task.state is State.EXECUTOR_ERROR
    assert task.exit_code == 3
    assert task.end_time is not None
    assert task.cmd == ["sh", "-c", 'echo "about to fail" >&2; exit 3']
    assert "about to fail" in span_text(rundir, task.stderr)
    assert "WARNING exited with status: 3" in task.system_logs
    assert engine.outputs(rundir) == {}


@pytest.mark.engine
async def test_a_sleeping_run_shows_a_running_task(tmp_path: Path, cwltool_exe: str) -> None:
    rundir = staged(tmp_path, "sleep")
    engine = CwltoolEngine(cwltool_exe)
    launch = engine.prepare(make_run(example_params("sleep")), rundir)
    proc = await start(launch, rundir)
    try:
        tasks: list[Task] = []
        for _ in range(600):
            tasks = engine.progress(rundir)
            if tasks:
                break
            assert proc.returncode is None, rundir.stderr.read_text()
            await asyncio.sleep(0.1)
        [task] = tasks
        assert (task.id, task.name, task.state) == ("nap", "nap", State.RUNNING)
        assert task.cmd == ["sleep", "300"]
        assert task.start_time is not None
        assert task.end_time is None
        assert task.exit_code is None
        assert task.stderr is not None
        assert task.stderr.end is None
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        await proc.wait()
    assert engine.outputs(rundir) == {}


@pytest.mark.engine
async def test_a_fragment_picks_the_workflow_in_a_packed_document(
    tmp_path: Path, cwltool_exe: str
) -> None:
    rundir = staged(tmp_path, "wordcount")
    packer = await asyncio.create_subprocess_exec(
        cwltool_exe,
        "--pack",
        str(rundir.attachments / "workflow.cwl"),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL,
    )
    packed, _ = await asyncio.wait_for(packer.communicate(), 120)
    assert packer.returncode == 0
    (rundir.attachments / "packed.cwl").write_bytes(packed)
    engine = CwltoolEngine(cwltool_exe)
    run = make_run(example_params("wordcount"), workflow_url="packed.cwl#main")
    launch = engine.prepare(run, rundir)

    assert await run_to_end(launch, rundir) == 0, rundir.stderr.read_text()
    assert [t.id for t in engine.progress(rundir)] == ["shout", "count"]
    assert set(engine.outputs(rundir)) == {"shouted", "counts"}


def test_progress_before_the_engine_wrote_anything(tmp_path: Path) -> None:
    assert CwltoolEngine("cwltool").progress(staged(tmp_path)) == []


# --- the log parser on written logs ---------------------------------------------------------

LOG = """\
[2026-03-01 10:00:00] INFO /engines/cwltool/bin/cwltool 3.3.20260925135507
[2026-03-01 10:00:00] INFO [workflow ] start
[2026-03-01 10:00:00] INFO [workflow ] starting step echo
[2026-03-01 10:00:00] INFO [step echo] start
[2026-03-01 10:00:01] INFO [job echo] /run/work/jobs/a1$ sh \\
    -c \\
    'echo "word $0" >&2
echo $0' \\
    a > /run/work/jobs/a1/o.txt
word a
[2026-03-01 10:00:02] INFO [job echo] completed success
[2026-03-01 10:00:02] INFO [step echo] start
[2026-03-01 10:00:02] INFO [job echo_2] /run/work/jobs/b2$ sh \\
    -c \\
    'echo "word $0" >&2
echo $0' \\
    b > /run/work/jobs/b2/o.txt
word b
[2026-03-01 10:00:03] WARNING [job echo_2] was terminated by signal: SIGKILL
[2026-03-01 10:00:03] ERROR [job echo_2] Job error:
Error collecting output for parameter 'out'
[2026-03-01 10:00:03] WARNING [job echo_2] completed permanentFail
[2026-03-01 10:00:03] WARNING [step echo] completed permanentFail
[2026-03-01 10:00:03] INFO [workflow ] starting step expr
[2026-03-01 10:00:03] INFO [step expr] start
[2026-03-01 10:00:04] INFO [step expr] completed success
[2026-03-01 10:00:04] INFO [step skipped] will be skipped
[2026-03-01 10:00:04] INFO [step skipped] completed skipped
[2026-03-01 10:00:04] INFO [step sub] start
[2026-03-01 10:00:04] INFO [workflow sub] start
[2026-03-01 10:00:04] INFO [step inner] start
[2026-03-01 10:00:05] INFO [job inner] /run/work/jobs/c3$ wc \\
    -l < /run/work/tmp/x/in.txt > /run/work/jobs/c3/n.txt
[2026-03-01 10:00:06] INFO [job inner] Max memory used: 1MiB
[2026-03-01 10:00:06] INFO [job inner] completed success
[2026-03-01 10:00:06] INFO [step inner] completed success
[2026-03-01 10:00:06] INFO [workflow sub] completed success
[2026-03-01 10:00:06] INFO [step sub] completed success
[2026-03-01 10:00:06] INFO [step late] start
[2026-03-01 10:00:07] INFO [job late] /run/work/jobs/d4$ sleep \\
    30
[2026-03-01 10:00:07] INFO [job la"""


def at(second: int) -> datetime:
    return datetime(2026, 3, 1, 10, 0, second, tzinfo=UTC)


def check_written_log(tasks: list[Task]) -> None:
    assert [(t.id, t.name, t.state) for t in tasks] == [
        ("echo", "echo", State.COMPLETE),
        ("echo_2", "echo", State.EXECUTOR_ERROR),
        ("expr", "expr", State.COMPLETE),
        ("inner", "inner", State.COMPLETE),
        ("late", "late", State.RUNNING),
    ]
    echo, echo_2, expr, inner, late = tasks
    assert echo.cmd == [
        "sh",
        "-c",
        'echo "word $0" >&2\necho $0',
        "a",
        ">",
        "/run/work/jobs/a1/o.txt",
    ]
    assert (echo.start_time, echo.end_time, echo.exit_code) == (at(1), at(2), 0)
    assert echo_2.exit_code == -signal.SIGKILL
    assert echo_2.system_logs == [
        "WARNING was terminated by signal: SIGKILL",
        "ERROR Job error:\nError collecting output for parameter 'out'",
    ]
    assert expr.cmd == []
    assert expr.exit_code is None
    assert (expr.start_time, expr.end_time) == (at(3), at(4))
    assert inner.cmd == ["wc", "-l", "<", "/run/work/tmp/x/in.txt", ">", "/run/work/jobs/c3/n.txt"]
    assert late.cmd == ["sleep", "30"]
    assert (late.start_time, late.end_time, late.exit_code) == (at(7), None, None)
    assert late.stderr is not None
    assert late.stderr.end is None


def test_log_parser_reads_a_written_log_with_a_cut_off_last_line() -> None:
    data = LOG.encode()
    log = CwltoolLog()
    log.feed(data)
    check_written_log(log.tasks("logs/stderr"))
    assert log.offset == data.rindex(b"\n") + 1
    echo = log.tasks("logs/stderr")[0]
    assert echo.stderr is not None
    assert echo.stderr.start is not None
    text = data[echo.stderr.start : echo.stderr.end].decode()
    assert text.startswith("[2026-03-01 10:00:01] INFO [job echo] /run/work/jobs/a1$ sh")
    assert "word a\n" in text
    assert text.endswith("[job echo] completed success\n")


def test_log_parser_gives_the_same_tasks_fed_a_few_bytes_at_a_time() -> None:
    data = LOG.encode()
    log = CwltoolLog()
    seen: set[str] = set()
    for end in range(0, len(data) + 1, 7):
        log.feed(data[log.offset : end])
        ids = {t.id for t in log.tasks("logs/stderr")}
        assert seen <= ids, "a task once reported must stay reported"
        seen = ids
    log.feed(data[log.offset :])
    check_written_log(log.tasks("logs/stderr"))


def test_log_parser_reads_logs_without_timestamps_and_a_lone_tool() -> None:
    log = CwltoolLog()
    log.feed(
        b"INFO [job count.cwl] /w/jobs/x$ wc \\\n    -l \\\n    -w\n"
        b"WARNING [job count.cwl] exited with status: 2\n"
        b"WARNING [job count.cwl] completed permanentFail\n"
    )
    [task] = log.tasks("logs/stderr")
    assert (task.id, task.name, task.state, task.exit_code) == (
        "count.cwl",
        "count.cwl",
        State.EXECUTOR_ERROR,
        2,
    )
    assert task.cmd == ["wc", "-l", "-w"]
    assert task.start_time is None


def test_log_parser_reports_a_step_that_could_not_make_its_job() -> None:
    log = CwltoolLog()
    log.feed(
        b"[2026-03-01 10:00:00] INFO [workflow ] starting step shout\n"
        b"[2026-03-01 10:00:00] INFO [step shout] start\n"
        b"Syntax error in parameter reference '(wc -l)'.\n"
        b"[2026-03-01 10:00:01] ERROR Exception on step 'shout'\n"
        b"[2026-03-01 10:00:01] ERROR [step shout] Cannot make job: shout.cwl:8:5: "
        b"Expression evaluation error:\n"
        b"shout.cwl:8:5: Syntax error in parameter reference '(wc -l)'.\n"
        b"[2026-03-01 10:00:01] INFO [workflow ] completed permanentFail\n"
    )
    [task] = log.tasks("logs/stderr")
    assert (task.id, task.state, task.exit_code) == ("shout", State.EXECUTOR_ERROR, None)
    assert (task.start_time, task.end_time) == (at(0), at(1))
    assert task.system_logs == [
        "ERROR Cannot make job: shout.cwl:8:5: Expression evaluation error:\n"
        "shout.cwl:8:5: Syntax error in parameter reference '(wc -l)'."
    ]


def test_progress_reads_only_what_was_added(tmp_path: Path) -> None:
    rundir = staged(tmp_path)
    engine = CwltoolEngine("cwltool")
    head, tail = LOG.split("[2026-03-01 10:00:03] INFO [workflow ] starting step expr\n")
    rundir.stderr.write_text(head)
    assert [t.id for t in engine.progress(rundir)] == ["echo", "echo_2"]
    with rundir.stderr.open("a") as f:
        f.write("[2026-03-01 10:00:03] INFO [workflow ] starting step expr\n" + tail)
    check_written_log(engine.progress(rundir))


def test_split_command_keeps_quoted_newlines_and_redirections() -> None:
    text = "printf \\\n    'a b\nc' \\\n    '$x' > /o/out.txt"
    assert split_command(text) == ["printf", "a b\nc", "$x", ">", "/o/out.txt"]


# --- outputs --------------------------------------------------------------------------------


def test_outputs_become_run_references(tmp_path: Path) -> None:
    rundir = staged(tmp_path)
    out = rundir.outputs.resolve()
    (out / "dir").mkdir()
    (out / "dir" / "a b.txt").write_text("x")
    (out / "reads.bam").write_text("bam")
    (out / "reads.bam.bai").write_text("bai")
    printed = {
        "bam": {
            "class": "File",
            "location": (out / "reads.bam").as_uri(),
            "path": str(out / "reads.bam"),
            "size": 3,
            "secondaryFiles": [
                {"class": "File", "location": (out / "reads.bam.bai").as_uri(), "path": "x"}
            ],
        },
        "folder": {
            "class": "Directory",
            "location": (out / "dir").as_uri(),
            "listing": [{"class": "File", "location": (out / "dir" / "a b.txt").as_uri()}],
        },
        "elsewhere": {"class": "File", "location": "file:///srv/ref/genome.fa"},
        "remote": [{"class": "File", "location": "https://example.org/x"}],
        "count": 3,
        "none": None,
    }
    rundir.stdout.write_text(json.dumps(printed, indent=4))
    assert CwltoolEngine("cwltool").outputs(rundir) == {
        "bam": {
            "class": "File",
            "location": "run:outputs/reads.bam",
            "size": 3,
            "secondaryFiles": [{"class": "File", "location": "run:outputs/reads.bam.bai"}],
        },
        "folder": {
            "class": "Directory",
            "location": "run:outputs/dir",
            "listing": [{"class": "File", "location": "run:outputs/dir/a b.txt"}],
        },
        "elsewhere": {"class": "File", "location": "file:///srv/ref/genome.fa"},
        "remote": [{"class": "File", "location": "https://example.org/x"}],
        "count": 3,
        "none": None,
    }


@pytest.mark.parametrize("stdout", [None, "", '{\n    "out": {', "[1, 2]"])
def test_outputs_of_a_run_that_printed_none(tmp_path: Path, stdout: str | None) -> None:
    rundir = staged(tmp_path)
    if stdout is not None:
        rundir.stdout.write_text(stdout)
    assert CwltoolEngine("cwltool").outputs(rundir) == {}


# --- on another site (a cluster's work folder) -------------------------------------------

SITE = Site(root=PurePosixPath("/scratch/spindle/run-cwl"), executables={"cwltool": "cwltool"})


def test_prepare_for_a_site_builds_every_path_there(tmp_path: Path) -> None:
    rundir = staged(tmp_path, "wordcount")
    launch = CwltoolEngine("/local/cwltool").prepare(
        make_run(example_params("wordcount")), rundir, SITE
    )
    there = "/scratch/spindle/run-cwl"
    assert launch.argv[0] == "cwltool"
    assert launch.argv[launch.argv.index("--outdir") + 1] == f"{there}/outputs"
    assert launch.argv[-2:] == [f"{there}/attachments/workflow.cwl", f"{there}/params.json"]
    assert launch.cwd == PurePosixPath(f"{there}/work")
    assert launch.env["TMPDIR"] == f"{there}/work/tmp"
    assert not any(str(tmp_path) in arg for arg in [*launch.argv, *launch.env.values()])
    written = json.loads(rundir.params_file.read_text())  # written locally, for the site
    assert written == {
        "text": {"class": "File", "location": f"file://{there}/attachments/poem.txt"}
    }
    assert (rundir.work / "tmp").is_dir()  # made locally, copied to the site with the folder


def test_outputs_of_a_run_on_a_site_become_run_references(tmp_path: Path) -> None:
    rundir = staged(tmp_path)
    there = SITE.root / "outputs"
    printed = {
        "out": {"class": "File", "location": f"file://{there}/a%20b.txt", "path": "x", "size": 1},
        "local_path": {"class": "File", "location": (rundir.outputs / "x").resolve().as_uri()},
    }
    rundir.stdout.write_text(json.dumps(printed))
    files = ListedFiles(SITE.root, {})
    assert CwltoolEngine("cwltool").outputs(rundir, files) == {
        "out": {"class": "File", "location": "run:outputs/a b.txt", "size": 1},
        # a path on Spindle's host means nothing for a run that ran on the site
        "local_path": {"class": "File", "location": (rundir.outputs / "x").resolve().as_uri()},
    }


def test_outputs_that_link_out_of_the_run_are_left_out(tmp_path: Path) -> None:
    rundir = staged(tmp_path)
    out = rundir.outputs.resolve()
    (out / "passwd").symlink_to("/etc/passwd")
    (out / "dir").mkdir()
    (out / "dir" / "p").symlink_to("/etc/passwd")
    (out / "dir" / "ok.txt").write_text("ok")
    printed = {
        "stolen": {"class": "File", "location": (out / "passwd").as_uri()},
        "folder": {
            "class": "Directory",
            "location": (out / "dir").as_uri(),
            "listing": [
                {"class": "File", "location": (out / "dir" / "p").as_uri()},
                {"class": "File", "location": (out / "dir" / "ok.txt").as_uri()},
            ],
        },
    }
    rundir.stdout.write_text(json.dumps(printed))
    assert CwltoolEngine("cwltool").outputs(rundir) == {
        "stolen": None,
        "folder": {
            "class": "Directory",
            "location": "run:outputs/dir",
            "listing": [{"class": "File", "location": "run:outputs/dir/ok.txt"}],
        },
    }


def test_a_stdout_swapped_for_a_link_gives_no_outputs(tmp_path: Path) -> None:
    rundir = staged(tmp_path)
    elsewhere = tmp_path / "elsewhere.json"
    elsewhere.write_text(json.dumps({"x": 1}))
    rundir.stdout.symlink_to(elsewhere)
    assert CwltoolEngine("cwltool").outputs(rundir) == {}


LINKING_TOOL = """
cwlVersion: v1.2
class: CommandLineTool
baseCommand: [sh, -c, "ln -s /etc/hostname stolen.txt; echo fine > ok.txt"]
inputs: []
outputs:
  stolen: {type: File, outputBinding: {glob: stolen.txt}}
  ok: {type: File, outputBinding: {glob: ok.txt}}
"""


@pytest.mark.engine
async def test_an_output_that_links_out_of_the_run_is_refused_not_copied(
    tmp_path: Path, cwltool_exe: str
) -> None:
    rundir = staged(tmp_path)
    (rundir.attachments / "workflow.cwl").write_text(LINKING_TOOL)
    engine = CwltoolEngine(cwltool_exe)
    launch = engine.prepare(make_run(), rundir)

    assert await run_to_end(launch, rundir) == 1
    assert "links out of the run folder" in rundir.stderr.read_text()
    assert "stolen.txt" in rundir.stderr.read_text()
    assert not (rundir.outputs / "stolen.txt").exists()
    assert engine.outputs(rundir) == {}


# --- failures said for the user ----------------------------------------------------------

DOCKER_TOOL = """\
cwlVersion: v1.2
class: CommandLineTool
requirements:
  DockerRequirement:
    dockerPull: alpine:3
baseCommand: [echo, hi]
inputs: []
outputs: []
"""


@pytest.mark.engine
async def test_a_docker_requirement_says_this_environment_runs_no_containers(
    cwltool_exe: str, tmp_path: Path
) -> None:
    rundir = staged(tmp_path)
    (rundir.attachments / "workflow.cwl").write_text(DOCKER_TOOL)
    launch = CwltoolEngine(cwltool_exe).prepare(make_run(), rundir)
    assert await run_to_end(launch, rundir) != 0
    (note,) = CwltoolEngine(cwltool_exe).failure_notes(rundir)
    assert note.startswith(
        "a CommandLineTool of the workflow has a DockerRequirement under 'requirements', "
        "but this compute environment runs no containers"
    )
    assert "its setting containers is 'none'" in note
    assert "--no-container" not in note


@pytest.mark.engine
async def test_a_missing_input_file_is_named_by_its_input(cwltool_exe: str, tmp_path: Path) -> None:
    rundir = staged(tmp_path, "wordcount")
    params = {"text": {"class": "File", "location": "nothere.txt"}}
    launch = CwltoolEngine(cwltool_exe).prepare(make_run(params), rundir)
    assert await run_to_end(launch, rundir) != 0
    assert "params.json" in rundir.stderr.read_text()  # what cwltool says
    assert CwltoolEngine(cwltool_exe).failure_notes(rundir) == [
        "input 'text' of workflow_params: 'nothere.txt' does not exist (not attached?)"
    ]


def test_a_run_that_failed_otherwise_has_no_notes(tmp_path: Path) -> None:
    rundir = staged(tmp_path)
    assert CwltoolEngine("cwltool").failure_notes(rundir) == []
    rundir.stderr.write_text("ERROR [job x] Job error:\nexit 3\n")
    assert CwltoolEngine("cwltool").failure_notes(rundir) == []


def linking_tool(target: Path) -> str:
    return LINKING_TOOL.replace("/etc/hostname", str(target))


@pytest.mark.engine
async def test_an_output_that_links_into_an_allowed_input_root_is_kept(
    tmp_path: Path, cwltool_exe: str
) -> None:
    """A file under ``cwl_input_roots`` could be named as an input: an output linking to it
    is no escape, and cwltool copies it into the outputs as for an input passed on."""
    refdata = tmp_path / "refdata"
    refdata.mkdir()
    (refdata / "genome.fa").write_text(">chr1\nACGT\n")
    rundir = staged(tmp_path)
    (rundir.attachments / "workflow.cwl").write_text(linking_tool(refdata / "genome.fa"))
    engine = CwltoolEngine(cwltool_exe, input_roots=[refdata])
    launch = engine.prepare(make_run(), rundir)

    assert await run_to_end(launch, rundir) == 0, rundir.stderr.read_text()
    outputs = engine.outputs(rundir)
    assert outputs["stolen"]["location"] == "run:outputs/stolen.txt"
    assert (rundir.outputs / "stolen.txt").read_text() == ">chr1\nACGT\n"
    assert not (rundir.outputs / "stolen.txt").is_symlink()

    # the same link with no roots allowed is refused, as any other link out of the run
    rundir = staged(tmp_path / "again")
    (rundir.attachments / "workflow.cwl").write_text(linking_tool(refdata / "genome.fa"))
    launch = CwltoolEngine(cwltool_exe).prepare(make_run(), rundir)
    assert await run_to_end(launch, rundir) == 1
    assert "links out of the run folder" in rundir.stderr.read_text()
