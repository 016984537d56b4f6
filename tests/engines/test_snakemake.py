"""The Snakemake engine against real Snakemake: launch, tasks from the logger plugin's events,
per-task log spans, outputs, failure and a run caught while it is going.

Each test runs the Launch the way the local backend does (own session, stdout and stderr
appended to the run's log files) and reads back what the engine reports.
"""

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

from spindle.config import Settings
from spindle.domain import ComputeEnv, LogSpan, Run, RunRequest, State, Task
from spindle.engines.registry import Catalog
from spindle.engines.snakemake import (
    EVENTS_FILE,
    PLUGIN_DIR,
    SnakemakeEngine,
    fold_jobs,
    parse_version,
    progress_counts,
    read_events,
)
from spindle.errors import EngineUnavailable, InvalidRequest
from spindle.execution import Executor, Launch, Site
from spindle.storage.files import FileStat, ListedFiles
from spindle.storage.rundir import RunDir
from tests.engines import validate_with
from tests.engines.contract import Finished
from tests.support import EXAMPLES

EXAMPLE = EXAMPLES / "snakemake"
WORDCOUNT_PARAMS: dict[str, Any] = json.loads((EXAMPLE / "wordcount" / "params.json").read_text())
RUN_TIMEOUT = 120.0


# --- helpers -----------------------------------------------------------------------------


def make_run(
    workflow_url: str = "Snakefile",
    params: dict[str, Any] | None = None,
    engine_parameters: dict[str, str] | None = None,
) -> Run:
    request = RunRequest(
        workflow_type="SMK",
        workflow_type_version="9",
        workflow_url=workflow_url,
        workflow_params=params or {},
        workflow_engine="snakemake",
        workflow_engine_parameters=engine_parameters or {},
    )
    return Run(
        id="run-1",
        seq=1,
        state=State.INITIALIZING,
        request=request,
        engine="snakemake",
        compute_env="local",
        submitted_at=datetime.now(UTC),
    )


def stage(example: str, rundir: RunDir, subfolder: str = "") -> None:
    """Copy an example into the attachments, keeping its layout."""
    shutil.copytree(EXAMPLE / example, rundir.attachments / subfolder, dirs_exist_ok=True)


async def start(launch: Launch, rundir: RunDir) -> asyncio.subprocess.Process:
    # The local backend's way: own session, logs appended to the run's files.
    with open(rundir.stdout, "ab") as out, open(rundir.stderr, "ab") as err:  # noqa: ASYNC230
        return await asyncio.create_subprocess_exec(
            *launch.argv,
            cwd=launch.cwd,
            env={**os.environ, **launch.env},
            stdin=asyncio.subprocess.DEVNULL,
            stdout=out,
            stderr=err,
            start_new_session=True,
        )


async def run_to_end(engine: SnakemakeEngine, run: Run, rundir: RunDir) -> int:
    proc = await start(engine.prepare(run, rundir), rundir)
    try:
        return await asyncio.wait_for(proc.wait(), RUN_TIMEOUT)
    finally:
        if proc.returncode is None:
            os.killpg(proc.pid, signal.SIGKILL)
            await proc.wait()


def span_text(rundir: RunDir, span: LogSpan | None) -> str:
    assert span is not None
    assert span.start is not None
    assert span.end is not None
    data = (rundir.root / span.path).read_bytes()
    return data[span.start : span.end].decode()


def by_name(tasks: list[Task]) -> dict[str, Task]:
    return {t.name: t for t in tasks}


def stderr_of(rundir: RunDir) -> str:
    return rundir.stderr.read_text(errors="replace")


@pytest.fixture
def engine(snakemake_exe: str, settings: Settings) -> SnakemakeEngine:
    return SnakemakeEngine(snakemake_exe, settings.snakemake_cores)


@pytest.fixture
def rundir(tmp_path: Path) -> RunDir:
    rd = RunDir(tmp_path / "run")
    rd.create()
    return rd


# --- detect, parameters, validate --------------------------------------------------------


@pytest.mark.engine
def test_detect_reports_the_installed_version(
    snakemake_engine: SnakemakeEngine, detected_catalog: Catalog
) -> None:
    info = detected_catalog.infos[snakemake_engine.name]  # its detect(), run once a session
    assert info.name == "snakemake"
    assert info.workflow_type == "SMK"
    assert re.fullmatch(r"\d+\.\d+\.\d+\S*", info.version)
    major = info.version.split(".")[0]
    assert int(major) >= 9
    assert info.workflow_type_versions == [major, info.version]


async def test_detect_refuses_a_missing_executable(tmp_path: Path) -> None:
    with pytest.raises(EngineUnavailable, match="does not start"):
        await SnakemakeEngine(str(tmp_path / "no-snakemake"), 1).detect()


async def test_detect_refuses_a_program_that_fails(tmp_path: Path) -> None:
    exe = tmp_path / "broken"
    exe.write_text("#!/bin/sh\necho 'no module named snakemake' >&2\nexit 1\n")
    exe.chmod(0o755)
    with pytest.raises(EngineUnavailable, match="exited with 1: no module named snakemake"):
        await SnakemakeEngine(str(exe), 1).detect()


def test_parse_version_reads_the_last_line() -> None:
    assert parse_version("9.27.1\n") == "9.27.1"
    assert parse_version("some warning\n10.0.0a1\n") == "10.0.0a1"
    with pytest.raises(EngineUnavailable):
        parse_version("")


@pytest.mark.engine
def test_validate_accepts_the_major_and_full_version_only(
    snakemake_engine: SnakemakeEngine, detected_catalog: Catalog
) -> None:
    engine = snakemake_engine  # detected once a session, as start-up detects it
    info = detected_catalog.infos[engine.name]
    validate_with(engine, info.version, {})
    validate_with(engine, info.version.split(".")[0], {})
    with pytest.raises(InvalidRequest) as refused:
        validate_with(engine, "1.0", {})
    assert refused.value.field == "workflow_type_version"
    assert "'1.0'" in refused.value.message
    assert info.version in refused.value.message


def test_parameters_declare_cores_with_the_configured_default() -> None:
    cores, executor, jobs = SnakemakeEngine("snakemake", 4).parameters()
    assert (cores.name, cores.type, cores.default_value) == ("cores", "int", "4")
    assert (executor.name, executor.default_value) == ("executor", "local")
    assert (jobs.name, jobs.type, jobs.default_value) == ("jobs", "int", "10")


@pytest.mark.parametrize("value", ["0", "5", "two", "-1"])
def test_prepare_refuses_cores_out_of_range(rundir: RunDir, value: str) -> None:
    stage("wordcount", rundir)
    run = make_run(engine_parameters={"cores": value})
    with pytest.raises(InvalidRequest) as refused:
        SnakemakeEngine("snakemake", 4).prepare(run, rundir)
    assert refused.value.field == "workflow_engine_parameters"
    assert "from 1 to 4" in refused.value.message


@pytest.mark.parametrize(
    "url", ["/etc/passwd", "../Snakefile", "file:///etc/passwd", "ftp://x/Snakefile", "nothing"]
)
def test_prepare_refuses_a_workflow_url_outside_the_attachments(rundir: RunDir, url: str) -> None:
    stage("wordcount", rundir)
    with pytest.raises(InvalidRequest) as refused:
        SnakemakeEngine("snakemake", 1).prepare(make_run(url), rundir)
    assert refused.value.field == "workflow_url"


def test_prepare_refuses_a_symlink_leaving_the_attachments(rundir: RunDir, tmp_path: Path) -> None:
    outside = tmp_path / "elsewhere.smk"
    outside.write_text("rule all:\n    output: 'x'\n")
    (rundir.attachments / "Snakefile").symlink_to(outside)
    with pytest.raises(InvalidRequest, match="leaves the attachments"):
        SnakemakeEngine("snakemake", 1).prepare(make_run(), rundir)


def test_prepare_builds_the_command_line(rundir: RunDir) -> None:
    stage("wordcount", rundir)
    engine = SnakemakeEngine("/opt/snakemake", 2)
    launch = engine.prepare(make_run(params=WORDCOUNT_PARAMS), rundir)
    work = rundir.work.absolute()
    assert launch.argv == [
        "/opt/snakemake",
        "--snakefile",
        str((rundir.attachments / "Snakefile").resolve()),
        "--directory",
        str(work),
        "--configfile",
        str(rundir.params_file.absolute()),
        "--cores",
        "2",
        "--nocolor",
        "--printshellcmds",
        "--logger",
        "spindle",
        "--logger-spindle-events-file",
        str((rundir.logs / EVENTS_FILE).absolute()),
    ]
    assert launch.cwd == work
    # The plugin is copied into the run folder (which then holds all the run needs, wherever
    # it is started), and that folder holds the plugin package and nothing else.
    plugin_dir = rundir.support / "snakemake"
    assert launch.env == {"PYTHONPATH": str(plugin_dir.absolute()), "PYTHONUNBUFFERED": "1"}
    assert json.loads(rundir.params_file.read_text()) == WORDCOUNT_PARAMS
    assert [p.name for p in plugin_dir.iterdir()] == ["snakemake_logger_plugin_spindle"]
    package = plugin_dir / "snakemake_logger_plugin_spindle"
    for source in (PLUGIN_DIR / "snakemake_logger_plugin_spindle").glob("*.py"):
        assert (package / source.name).read_bytes() == source.read_bytes()


def test_prepare_runs_the_fetched_copy_of_an_http_url(rundir: RunDir) -> None:
    """Snakemake never fetches a URL itself: it runs the copy Spindle fetched at submission
    (spindle.storage.fetch), which is among the attachments."""
    url = "https://example.org/workflows/main.smk"
    (rundir.attachments / "main.smk").write_text("rule all:\n")
    launch = SnakemakeEngine("snakemake", 1).prepare(make_run(url), rundir)
    assert launch.argv[1:3] == ["--snakefile", str(rundir.attachments.resolve() / "main.smk")]
    (rundir.attachments / "main.smk").unlink()
    with pytest.raises(InvalidRequest, match="names no attached file"):
        SnakemakeEngine("snakemake", 1).prepare(make_run(url), rundir)


# --- real runs ---------------------------------------------------------------------------


@pytest.mark.engine
def test_wordcount_reports_each_job_its_logs_and_outputs(snakemake_wordcount: Finished) -> None:
    # the session's wordcount run on the local backend, shared with the engine contract
    engine, rundir, code = (
        snakemake_wordcount.engine,
        snakemake_wordcount.rundir,
        snakemake_wordcount.exit_code,
    )
    assert code == 0, stderr_of(rundir)

    tasks = engine.progress(rundir)
    samples = sorted(WORDCOUNT_PARAMS["samples"])
    assert len(tasks) == len(samples) + 2
    assert sorted(t.name for t in tasks[:-2]) == [f"count[sample={s}]" for s in samples]
    assert [t.name for t in tasks[-2:]] == ["summary", "all"]
    assert len({t.id for t in tasks}) == len(tasks)
    for task in tasks:
        assert task.state is State.COMPLETE
        assert task.exit_code == 0
        assert task.start_time is not None
        assert task.end_time is not None
        assert task.start_time.tzinfo is not None
        assert task.start_time <= task.end_time
        assert task.stdout is not None
        assert task.stdout.path == "logs/stdout"
        assert task.stderr is not None
        assert task.stderr.path == "logs/stderr"

    named = by_name(tasks)
    for sample in samples:
        task = named[f"count[sample={sample}]"]
        assert task.cmd == [
            f"echo counting {sample}; echo 'count {sample} on stderr' >&2; "
            f"echo '{WORDCOUNT_PARAMS['samples'][sample]}' | wc -w | tr -d ' ' "
            f"> results/{sample}.count"
        ]
        assert span_text(rundir, task.stdout) == f"counting {sample}\n"
        assert f"count {sample} on stderr\n" in span_text(rundir, task.stderr)
    assert span_text(rundir, named["summary"].stdout) == "Hello from summary\n"
    assert "summary of alpha beta gamma\n" in span_text(rundir, named["summary"].stderr)
    assert named["all"].cmd == []
    assert span_text(rundir, named["all"].stdout) == ""

    # The plugin adds events; Snakemake's usual log is still on stderr.
    log = stderr_of(rundir)
    assert "Finished jobid" in log
    assert "5 of 5 steps (100%) done" in log
    assert engine.progress_counts(rundir) == (5, 5)

    files = engine.outputs(rundir)["files"]
    expected = [f"results/{s}.count" for s in samples] + ["results/summary.txt"]
    assert [f["path"] for f in files] == expected
    for f in files:
        path = rundir.work / f["path"]
        assert f["class"] == "File"
        assert f["basename"] == path.name
        assert f["size"] == path.stat().st_size
        assert f["location"] == f"run:work/{f['path']}"
    assert (rundir.work / "results" / "alpha.count").read_text() == "4\n"
    summary = (rundir.work / "results" / "summary.txt").read_text()
    assert summary.startswith("sample\twords\n")  # read through workflow.basedir


@pytest.mark.engine
def test_a_failing_job_is_an_executor_error_with_its_exit_code(snakemake_fail: Finished) -> None:
    # the session's failing run on the local backend, shared with the engine contract
    engine, rundir, code = snakemake_fail.engine, snakemake_fail.rundir, snakemake_fail.exit_code
    assert code != 0

    first, second = engine.progress(rundir)
    assert (first.name, first.state, first.exit_code) == ("first", State.COMPLETE, 0)
    assert (second.name, second.state, second.exit_code) == ("second", State.EXECUTOR_ERROR, 3)
    assert second.end_time is not None
    assert span_text(rundir, second.stdout) == "second is about to fail\n"
    assert "second fails on purpose" in span_text(rundir, second.stderr)
    # Snakemake removes a failed job's outputs; only the first job's file is an output.
    assert [f["path"] for f in engine.outputs(rundir)["files"]] == ["results/first.txt"]
    assert "Error in rule second" in stderr_of(rundir)


@pytest.mark.engine
async def test_a_snakefile_in_a_subfolder_runs_with_its_includes(
    engine: SnakemakeEngine, rundir: RunDir
) -> None:
    stage("wordcount", rundir, "pipelines/wordcount")
    run = make_run("pipelines/wordcount/Snakefile", params={"samples": {"x": "a b c d e"}})
    code = await run_to_end(engine, run, rundir)
    assert code == 0, stderr_of(rundir)
    assert [t.name for t in engine.progress(rundir)] == ["count[sample=x]", "summary", "all"]
    assert (rundir.work / "results" / "x.count").read_text() == "5\n"


@pytest.mark.engine
async def test_the_standard_layout_runs_unchanged(engine: SnakemakeEngine, rundir: RunDir) -> None:
    """workflow/Snakefile, config/config.yaml, workflow/rules/*.smk and resources/, run as on
    a laptop: ``configfile:`` and resources/ resolve from the layout's root, and
    workflow_params are merged over the config file."""
    stage("layout", rundir)
    params = json.loads((EXAMPLE / "layout" / "params.json").read_text())
    code = await run_to_end(engine, make_run("workflow/Snakefile", params=params), rundir)
    assert code == 0, stderr_of(rundir)
    assert sorted(t.name for t in engine.progress(rundir)) == [
        "all", "count[sample=alpha]", "count[sample=beta]", "summary"
    ]  # fmt: skip
    summary = (rundir.work / "results" / "summary.txt").read_text()
    assert summary == ("Hello from workflow_params\nresults/alpha.count:3\nresults/beta.count:2\n")
    assert [f["path"] for f in engine.outputs(rundir)["files"]] == [
        "results/alpha.count", "results/beta.count", "results/summary.txt"
    ]  # fmt: skip


def test_the_layout_root_is_above_a_workflow_folder(rundir: RunDir) -> None:
    stage("layout", rundir, "project")
    (rundir.work / "config").mkdir()
    (rundir.work / "config" / "config.yaml").write_text("kept: true\n")
    SnakemakeEngine("snakemake", 1).prepare(make_run("project/workflow/Snakefile"), rundir)
    # The root's content is the working directory's; a file already there is kept.
    assert (rundir.work / "resources" / "alpha.txt").read_text() == "one two three\n"
    assert (rundir.work / "workflow" / "rules" / "count.smk").is_file()
    assert (rundir.work / "config" / "config.yaml").read_text() == "kept: true\n"
    assert not (rundir.work / "project").exists()


def test_any_other_snakefile_runs_from_the_top_of_the_attachments(
    rundir: RunDir, tmp_path: Path
) -> None:
    stage("wordcount", rundir, "pipelines/wordcount")
    (tmp_path / "secret").write_text("secret")
    (rundir.attachments / "link").symlink_to(tmp_path / "secret")
    SnakemakeEngine("snakemake", 1).prepare(make_run("pipelines/wordcount/Snakefile"), rundir)
    assert (rundir.work / "pipelines" / "wordcount" / "rules" / "count.smk").is_file()
    # A link is copied as a link: nothing outside the attachments is read.
    assert (rundir.work / "link").readlink() == tmp_path / "secret"


@pytest.mark.engine
async def test_a_job_still_going_is_running(engine: SnakemakeEngine, rundir: RunDir) -> None:
    stage("sleep", rundir)
    proc = await start(engine.prepare(make_run(params={"seconds": 60}), rundir), rundir)
    try:
        tasks: list[Task] = []
        for _ in range(int(RUN_TIMEOUT / 0.2)):
            tasks = engine.progress(rundir)
            if tasks:
                break
            assert proc.returncode is None, stderr_of(rundir)
            await asyncio.sleep(0.2)
        (nap,) = tasks
        assert nap.name == "nap"
        assert nap.state is State.RUNNING
        assert nap.cmd == ["echo sleeping 60s; sleep 60; echo done > results/slept.txt"]
        assert nap.start_time is not None
        assert (nap.end_time, nap.exit_code) == (None, None)
        assert nap.stdout is not None
        assert nap.stdout.end is None
        assert engine.progress_counts(rundir) == (0, 2)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        await proc.wait()
    assert engine.outputs(rundir) == {"files": []}


# --- the events file, hand-written -------------------------------------------------------

EVENTS = [
    {"time": "2026-01-02T03:04:05+00:00", "event": "run_info", "stats": {"total": 3}, "total": 3},
    {"time": "2026-01-02T03:04:06+00:00", "event": "job_started", "stdout": 0, "stderr": 10,
     "jobs": [2, 1]},
    {"time": "2026-01-02T03:04:06+00:00", "event": "job_info", "stdout": 0, "stderr": 12,
     "jobid": 2, "rule_name": "count", "wildcards": {"sample": "a", "lane": "1"},
     "output": ["results/a.txt"], "shellcmd": "echo a"},
    {"time": "2026-01-02T03:04:06+00:00", "event": "job_info", "stdout": 0, "stderr": 30,
     "jobid": 1, "rule_name": "other", "wildcards": {}, "output": ["results/b.txt"],
     "shellcmd": None},
    {"time": "2026-01-02T03:04:07+00:00", "event": "job_finished", "stdout": 2, "stderr": 40,
     "jobid": 2},
    {"time": "2026-01-02T03:04:08+00:00", "event": "job_error", "stdout": 2, "stderr": 50,
     "jobid": 1, "rule_name": "other", "exit_code": None},
]  # fmt: skip


def write_events(rundir: RunDir, events: list[dict[str, Any]], tail: str = "") -> None:
    lines = "".join(json.dumps(e) + "\n" for e in events)
    (rundir.logs / EVENTS_FILE).write_text(lines + tail)


def test_a_truncated_last_line_is_ignored(rundir: RunDir) -> None:
    write_events(rundir, EVENTS, tail='{"time": "2026-01-02T03:04:09+00:00", "event": "prog')
    assert len(read_events(rundir.logs / EVENTS_FILE)) == len(EVENTS)


def test_events_fold_into_tasks(rundir: RunDir) -> None:
    write_events(rundir, EVENTS, tail='{"event": "job_finished", "jobid": 1')
    a, b = SnakemakeEngine("snakemake", 1).progress(rundir)
    assert a == Task(
        id="2",
        name="count[sample=a,lane=1]",
        state=State.COMPLETE,
        cmd=["echo a"],
        start_time=datetime(2026, 1, 2, 3, 4, 6, tzinfo=UTC),
        end_time=datetime(2026, 1, 2, 3, 4, 7, tzinfo=UTC),
        exit_code=0,
        stdout=LogSpan("logs/stdout", 0, 2),
        stderr=LogSpan("logs/stderr", 12, 40),
    )
    # No exit code in the error (a run: block or missing output): still a failure.
    assert (b.name, b.state, b.exit_code, b.cmd) == ("other", State.EXECUTOR_ERROR, 1, [])
    assert b.stderr == LogSpan("logs/stderr", 30, 50)


def test_progress_counts_follow_the_latest_event() -> None:
    assert progress_counts([]) is None
    assert progress_counts(EVENTS) == (0, 3)
    later = [*EVENTS, {"event": "progress", "done": 1, "total": 3}]
    assert progress_counts(later) == (1, 3)


def test_no_events_file_means_no_tasks(rundir: RunDir) -> None:
    engine = SnakemakeEngine("snakemake", 1)
    assert engine.progress(rundir) == []
    assert engine.progress_counts(rundir) is None
    assert engine.outputs(rundir) == {"files": []}


def test_jobs_keep_the_order_they_started_in() -> None:
    started = [{"event": "job_started", "jobs": [5]}, {"event": "job_started", "jobs": [3, 9]}]
    assert [j.jobid for j in fold_jobs(started)] == [5, 3, 9]


def test_a_job_is_reported_once_its_rule_is_known(rundir: RunDir) -> None:
    """Between ``job_started`` and the job's ``job_info`` a poll found a task with no name."""
    engine = SnakemakeEngine("snakemake", 1)
    write_events(rundir, EVENTS[:2])  # run_info, job_started [2, 1]
    assert engine.progress(rundir) == []
    write_events(rundir, EVENTS[:3])  # job 2 described
    assert [(t.id, t.name) for t in engine.progress(rundir)] == [("2", "count[sample=a,lane=1]")]


def test_outputs_stay_inside_the_work_folder(rundir: RunDir, tmp_path: Path) -> None:
    outside = tmp_path / "secret.txt"
    outside.write_text("secret")
    (rundir.work / "results" / "plots").mkdir(parents=True)
    (rundir.work / "results" / "plots" / "p.svg").write_text("<svg/>")
    (rundir.work / "results" / "piped.txt").write_text("piped")
    (rundir.work / "link.txt").symlink_to(outside)
    outputs = ["results/plots", "results/piped.txt (pipe)", "link.txt", str(outside)]
    outputs += ["../secret.txt", "gone.txt", "."]
    events = [
        {"event": "job_info", "jobid": 1, "rule_name": "r", "output": outputs},
        {"event": "job_finished", "jobid": 1},
        {"event": "job_info", "jobid": 2, "rule_name": "r", "output": ["results/piped.txt"]},
        {"event": "job_error", "jobid": 2},
    ]
    write_events(rundir, events)
    files = SnakemakeEngine("snakemake", 1).outputs(rundir)["files"]
    assert files == [
        {
            "class": "File",
            "path": "results/piped.txt",
            "basename": "piped.txt",
            "size": 5,
            "location": "run:work/results/piped.txt",
        },
        {
            "class": "Directory",
            "path": "results/plots",
            "basename": "plots",
            "location": "run:work/results/plots",
        },
    ]


# --- on another site (a cluster's work folder) -------------------------------------------

SITE_ROOT = PurePosixPath("/scratch/spindle/run-1")


def test_prepare_for_a_site_builds_every_path_there(rundir: RunDir) -> None:
    stage("wordcount", rundir)
    site = Site(root=SITE_ROOT, executables={"snakemake": "snakemake"}, cpus=3)
    launch = SnakemakeEngine("/local/snakemake", 8).prepare(make_run(), rundir, site)
    assert launch.argv[:3] == ["snakemake", "--snakefile", f"{SITE_ROOT}/attachments/Snakefile"]
    assert launch.argv[launch.argv.index("--directory") + 1] == f"{SITE_ROOT}/work"
    assert launch.argv[launch.argv.index("--configfile") + 1] == f"{SITE_ROOT}/params.json"
    assert launch.argv[launch.argv.index("--cores") + 1] == "3"  # the site's CPUs
    assert launch.cpus == 3
    assert launch.argv[-1] == f"{SITE_ROOT}/logs/{EVENTS_FILE}"
    assert launch.cwd == SITE_ROOT / "work"
    assert launch.env["PYTHONPATH"] == f"{SITE_ROOT}/support/snakemake"
    assert "--executor" not in launch.argv
    # the cores a run asks for win over the site's
    asked = make_run(engine_parameters={"cores": "2"})
    assert SnakemakeEngine("s", 8).prepare(asked, rundir, site).argv[8] == "2"


def slurm_run(**parameters: str) -> Run:
    return make_run(engine_parameters={"executor": "slurm", **parameters})


@pytest.mark.parametrize(
    ("cluster", "expected"),
    [
        (
            Executor("slurm", engine_args={"snakemake": ("--slurm-status-command", "squeue")}),
            ["--slurm-no-account", "--slurm-status-command", "squeue"],
        ),
        (
            Executor("slurm", {"partition": "short", "account": "lab", "qos": "high"}),
            [
                "--default-resources",
                "slurm_partition=short",
                "slurm_account=lab",
                "--slurm-qos",
                "high",
            ],
        ),
    ],
)
def test_the_slurm_executor_takes_the_environments_settings(
    rundir: RunDir, cluster: Executor, expected: list[str]
) -> None:
    stage("wordcount", rundir)
    site = Site(root=SITE_ROOT, executor=cluster)
    argv = SnakemakeEngine("snakemake", 1).prepare(slurm_run(jobs="4"), rundir, site).argv
    tail = argv[argv.index("--executor") :]
    assert tail == ["--executor", "slurm", "--jobs", "4", *expected]


def test_the_slurm_executor_needs_a_slurm_site(rundir: RunDir) -> None:
    stage("wordcount", rundir)
    with pytest.raises(InvalidRequest, match="needs a compute_env of type slurm"):
        SnakemakeEngine("snakemake", 1).prepare(slurm_run(), rundir)


@pytest.mark.parametrize(
    ("parameters", "env", "problem"),
    [
        ({"executor": "slurm"}, None, "executor 'slurm' needs a compute_env of type slurm"),
        (
            {"executor": "slurm"},
            ComputeEnv("local", "local"),
            "needs a compute_env of type slurm; 'local' is local",
        ),
        ({"executor": "pbs"}, ComputeEnv("hpc", "slurm"), "executor must be one of local, slurm"),
        ({"executor": "slurm", "jobs": "0"}, ComputeEnv("hpc", "slurm"), "jobs must be"),
        ({"jobs": "many"}, None, "jobs must be an integer from 1 to 1000, got 'many'"),
    ],
)
def test_validate_refuses_bad_executor_parameters(
    parameters: dict[str, str], env: ComputeEnv | None, problem: str
) -> None:
    request = make_run(engine_parameters=parameters).request
    with pytest.raises(InvalidRequest) as refused:
        SnakemakeEngine("snakemake", 1).validate(request, env)
    assert refused.value.field == "workflow_engine_parameters"
    assert problem in refused.value.message


def test_validate_accepts_the_slurm_executor_in_a_slurm_environment() -> None:
    request = make_run(engine_parameters={"executor": "slurm", "jobs": "20"}).request
    SnakemakeEngine("snakemake", 1).validate(request, ComputeEnv("hpc", "slurm"))


def test_outputs_of_a_run_on_a_site_come_from_its_listing(rundir: RunDir) -> None:
    events = [
        {"event": "job_info", "jobid": 1, "rule_name": "r", "output": ["a.txt", "d", "gone"]},
        {"event": "job_finished", "jobid": 1},
        {"event": "job_info", "jobid": 2, "rule_name": "r", "output": ["alias.txt"]},
        {"event": "job_finished", "jobid": 2},
    ]
    write_events(rundir, events)
    listing = ListedFiles(
        SITE_ROOT,
        {
            PurePosixPath("work/a.txt"): FileStat(PurePosixPath("work/a.txt"), False, 7),
            PurePosixPath("work/d"): FileStat(PurePosixPath("work/d"), True, 0),
            PurePosixPath("work/alias.txt"): FileStat(PurePosixPath("work/a.txt"), False, 7),
        },
    )
    files = SnakemakeEngine("snakemake", 1).outputs(rundir, listing)["files"]
    assert files == [
        {
            "class": "File",
            "path": "a.txt",
            "basename": "a.txt",
            "size": 7,
            "location": "run:work/a.txt",
        },
        {"class": "Directory", "path": "d", "basename": "d", "location": "run:work/d"},
    ]
