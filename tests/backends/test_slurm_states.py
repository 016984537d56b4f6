"""SLURM job states to WES states, case by case (the table in docs/hpc.md), and the parsing
of squeue/sacct output and of the head job script."""

from __future__ import annotations

import shlex
import subprocess
from pathlib import Path, PurePosixPath

import pytest

from spindle.backends.base import Status
from spindle.backends.slurm.backend import SlurmBackend
from spindle.backends.slurm.script import parse_job_id, render, sbatch_argv
from spindle.backends.slurm.states import ACTIVE, STATES, Job, parse_sacct, parse_squeue, status_of
from spindle.compute import SlurmEnv
from spindle.domain import State
from spindle.execution import Launch
from spindle.storage.rundir import RunDir

# SLURM state, exit code the head job recorded (None: none), expected state, exit code,
# and a piece of the reason (None: no reason)
TABLE: list[tuple[str, int | None, State, int | None, str | None]] = [
    ("PENDING", None, State.QUEUED, None, None),
    ("REQUEUED", None, State.QUEUED, None, None),
    ("CONFIGURING", None, State.INITIALIZING, None, None),
    ("RUNNING", None, State.RUNNING, None, None),
    ("COMPLETING", None, State.RUNNING, None, None),
    ("SUSPENDED", None, State.QUEUED, None, None),
    ("COMPLETED", 0, State.COMPLETE, 0, None),
    ("COMPLETED", None, State.COMPLETE, 0, None),
    ("FAILED", 3, State.EXECUTOR_ERROR, 3, None),
    ("FAILED", None, State.EXECUTOR_ERROR, 1, None),
    ("OUT_OF_MEMORY", None, State.EXECUTOR_ERROR, None, "ran out of memory"),
    ("TIMEOUT", None, State.EXECUTOR_ERROR, None, "reached its time limit"),
    ("DEADLINE", None, State.EXECUTOR_ERROR, None, "deadline"),
    ("CANCELLED", None, State.CANCELED, None, "cancelled in SLURM"),
    ("PREEMPTED", None, State.PREEMPTED, None, "preempted"),
    ("NODE_FAIL", None, State.SYSTEM_ERROR, None, "lost its node"),
    ("BOOT_FAIL", None, State.SYSTEM_ERROR, None, "could not boot"),
    ("REVOKED", None, State.SYSTEM_ERROR, None, "revoked"),
]


@pytest.mark.parametrize(("slurm", "recorded", "state", "code", "reason"), TABLE)
def test_state_mapping(
    slurm: str, recorded: int | None, state: State, code: int | None, reason: str | None
) -> None:
    status = status_of(Job("7", "spindle-r", slurm), recorded, job_id="7")
    assert (status.state, status.exit_code) == (state, code)
    if reason is None:
        assert status.reason is None
    else:
        assert status.reason is not None
        assert reason in status.reason
        assert "SLURM job 7" in status.reason


def test_every_state_in_the_table_is_tested() -> None:
    assert {row[0] for row in TABLE} | {"REQUEUE_HOLD", "REQUEUE_FED", "RESIZING", "SIGNALING"} | {
        "STAGE_OUT",
        "STOPPED",
        "SPECIAL_EXIT",
    } == set(STATES)


def test_a_pending_job_carries_slurms_reason() -> None:
    status = status_of(Job("7", "n", "PENDING", reason="Resources"), None, job_id="7")
    assert status == Status(State.QUEUED, reason="Resources")


def test_an_unknown_state_keeps_the_run_going() -> None:
    status = status_of(Job("7", "n", "SOMETHING_NEW"), None, job_id="7")
    assert status.state is State.RUNNING
    assert status.reason == "SLURM job 7 is SOMETHING_NEW"


def test_timeout_keeps_an_exit_code_sacct_reported() -> None:
    status = status_of(Job("7", "n", "TIMEOUT", exit_code=0), None, job_id="7")
    assert status.state is State.EXECUTOR_ERROR
    assert status.reason is not None
    assert "time limit" in status.reason


@pytest.mark.parametrize(
    ("recorded", "state", "code"),
    [(0, State.COMPLETE, 0), (2, State.EXECUTOR_ERROR, 2), (None, State.SYSTEM_ERROR, None)],
)
def test_a_job_slurm_forgot(recorded: int | None, state: State, code: int | None) -> None:
    status = status_of(None, recorded, job_id="42")
    assert (status.state, status.exit_code) == (state, code)
    if state is State.SYSTEM_ERROR:
        assert status.reason is not None
        assert "SLURM no longer knows job 42" in status.reason


def test_active_states_are_the_ones_that_may_still_run() -> None:
    assert "COMPLETING" in ACTIVE
    assert "PENDING" in ACTIVE
    assert "CANCELLED" not in ACTIVE
    assert "COMPLETED" not in ACTIVE


def test_parse_squeue() -> None:
    text = "12|spindle-a|RUNNING|None\n13|spindle-b|PENDING|Priority\n\ngarbage\n"
    assert parse_squeue(text) == {
        "12": Job("12", "spindle-a", "RUNNING"),
        "13": Job("13", "spindle-b", "PENDING", reason="Priority"),
    }


def test_parse_sacct_leaves_out_steps_and_reads_exit_codes() -> None:
    text = (
        "12|spindle-a|COMPLETED|0:0\n12.batch|batch|COMPLETED|0:0\n"
        "13|spindle-b|CANCELLED by 0|0:15\n14|spindle-c|FAILED|2:0\n"
    )
    jobs = parse_sacct(text)
    assert jobs == {
        "12": Job("12", "spindle-a", "COMPLETED", exit_code=0),
        "13": Job("13", "spindle-b", "CANCELLED", exit_code=0),
        "14": Job("14", "spindle-c", "FAILED", exit_code=2),
    }


@pytest.mark.parametrize(
    ("printed", "job_id"), [("123\n", "123"), ("123;cluster\n", "123"), ("", None), ("x", None)]
)
def test_parse_job_id(printed: str, job_id: str | None) -> None:
    assert parse_job_id(printed) == job_id


def env(**kw: object) -> SlurmEnv:
    return SlurmEnv.model_validate({"type": "slurm", "work_root": "/scratch/s", **kw})


def test_sbatch_options_come_from_the_environment() -> None:
    root = PurePosixPath("/scratch/s/r1")
    argv = sbatch_argv(
        "r1",
        root,
        env(
            partition="short",
            account="lab",
            qos="high",
            time="1:00:00",
            mem="4G",
            cpus=2,
            sbatch_args=["--constraint=ib"],
        ),
    )
    assert argv == [
        "sbatch",
        "--parsable",
        "--job-name=spindle-r1",
        "--chdir=/scratch/s/r1",
        "--output=/scratch/s/r1/logs/slurm.out",
        "--error=/scratch/s/r1/logs/slurm.out",
        "--partition=short",
        "--account=lab",
        "--qos=high",
        "--time=1:00:00",
        "--mem=4G",
        "--cpus-per-task=2",
        "--constraint=ib",
        "/scratch/s/r1/job.sh",
    ]
    # what the engine process uses wins over the environment's default
    assert "--cpus-per-task=6" in sbatch_argv("r1", root, env(cpus=2), cpus=6)
    assert sbatch_argv("r1", root, env())[-2:] == [
        "--error=/scratch/s/r1/logs/slurm.out",
        "/scratch/s/r1/job.sh",
    ]


def test_the_head_job_script_runs_the_engine_in_the_run_folder() -> None:
    root = PurePosixPath("/scratch/s/r 1")
    launch = Launch(
        argv=["snakemake", "--snakefile", "/scratch/s/r 1/attachments/Snakefile"],
        cwd=root / "work",
        env={"PYTHONPATH": "/scratch/s/r 1/support/snakemake"},
    )
    text = render("r 1", launch, root, env(setup="module load snakemake"))
    q = shlex.quote
    lines = text.splitlines()
    assert lines[0] == "#!/bin/bash"
    assert f"printf '%s\\n' \"$SLURM_JOB_ID\" > {q('/scratch/s/r 1/slurm_job_id')}" in lines
    setup = lines.index("module load snakemake")
    cd = lines.index(f"cd {q('/scratch/s/r 1/work')} || exit 1")
    assert setup < cd
    assert f"export PYTHONPATH={q('/scratch/s/r 1/support/snakemake')}" in lines
    assert (
        f"snakemake --snakefile {q('/scratch/s/r 1/attachments/Snakefile')} </dev/null"
        f" >>{q('/scratch/s/r 1/logs/stdout')} 2>>{q('/scratch/s/r 1/logs/stderr')}"
    ) in lines
    assert lines[-1] == 'exit "$code"'


def test_the_head_job_script_records_the_engines_exit_code(tmp_path: Path) -> None:
    """Run by bash as SLURM would (without SLURM): logs appended, exit code recorded."""
    root = PurePosixPath(tmp_path / "run")
    for sub in ("work", "logs"):
        (tmp_path / "run" / sub).mkdir(parents=True)
    (tmp_path / "run" / "logs" / "stdout").write_text("before\n")
    launch = Launch(
        argv=["/bin/sh", "-c", 'echo "$GREETING from $(pwd)"; echo oops >&2; exit 7'],
        cwd=root / "work",
        env={"GREETING": "hello world"},
    )
    script = tmp_path / "run" / "job.sh"
    script.write_text(render("r1", launch, root, env(setup="GREETING=overwritten")))
    done = subprocess.run(
        ["bash", str(script)], env={"PATH": "/usr/bin:/bin", "SLURM_JOB_ID": "55"}, check=False
    )
    assert done.returncode == 7
    run = tmp_path / "run"
    assert (run / "exit_code").read_text() == "7\n"
    assert not (run / "exit_code.tmp").exists()
    assert (run / "slurm_job_id").read_text() == "55\n"
    assert (run / "logs" / "stdout").read_text() == f"before\nhello world from {root}/work\n"
    assert (run / "logs" / "stderr").read_text() == "oops\n"


def test_engines_without_a_command_are_found_by_name_on_the_cluster() -> None:
    backend = SlurmBackend("hpc", env(engines={"snakemake": "/opt/sm/bin/snakemake"}, cpus=3))
    site = backend.site("r1", RunDir(Path("/local/runs/r1")))
    assert site.root == PurePosixPath("/scratch/s/r1")
    here = "/local/engines/bin/x"  # the executable Spindle found on its own host
    assert site.executable("snakemake", here) == "/opt/sm/bin/snakemake"
    assert site.executable("cwltool", here) == "cwltool"
    assert site.cpus == 3
    assert site.executor is not None
    assert site.executor.name == "slurm"
