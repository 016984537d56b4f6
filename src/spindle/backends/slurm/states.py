"""SLURM job states and what they mean for a run (docs/hpc.md has the same table).

``squeue --states=all`` reports jobs the controller still holds (pending, running, and
finished ones for ``MinJobAge`` seconds); ``sacct`` reports older ones. Both are parsed
from their ``--parsable``/``--format`` text, which has not changed across SLURM versions
(unlike their ``--json`` schemas).
"""

from __future__ import annotations

from dataclasses import dataclass

from spindle.backends.base import Status
from spindle.domain import State

#: ``squeue`` output format: job id, name, state (long form), reason.
SQUEUE_FORMAT = "%i|%j|%T|%r"
#: ``sacct`` fields, printed with ``--parsable2`` (``|`` between fields).
SACCT_FORMAT = "JobIDRaw,JobName,State,ExitCode"

#: SLURM state -> the state a run takes (``QUEUED``: waiting in SLURM's queue; the run
#: itself shows INITIALIZING until the job runs).
STATES: dict[str, State] = {
    "PENDING": State.QUEUED,
    "REQUEUED": State.QUEUED,
    "REQUEUE_HOLD": State.QUEUED,
    "REQUEUE_FED": State.QUEUED,
    "SUSPENDED": State.QUEUED,
    "CONFIGURING": State.INITIALIZING,
    "RUNNING": State.RUNNING,
    "COMPLETING": State.RUNNING,
    "RESIZING": State.RUNNING,
    "SIGNALING": State.RUNNING,
    "STAGE_OUT": State.RUNNING,
    "STOPPED": State.RUNNING,
    "COMPLETED": State.COMPLETE,
    "FAILED": State.EXECUTOR_ERROR,
    "OUT_OF_MEMORY": State.EXECUTOR_ERROR,
    "TIMEOUT": State.EXECUTOR_ERROR,
    "DEADLINE": State.EXECUTOR_ERROR,
    "SPECIAL_EXIT": State.EXECUTOR_ERROR,
    "CANCELLED": State.CANCELED,
    "PREEMPTED": State.PREEMPTED,
    "NODE_FAIL": State.SYSTEM_ERROR,
    "BOOT_FAIL": State.SYSTEM_ERROR,
    "REVOKED": State.SYSTEM_ERROR,
}

#: Why a job ended that way, for the run's system_logs.
REASONS: dict[str, str] = {
    "OUT_OF_MEMORY": "ran out of memory (SLURM OUT_OF_MEMORY); ask for more with mem",
    "TIMEOUT": "reached its time limit (SLURM TIMEOUT); ask for more with time",
    "DEADLINE": "reached its deadline (SLURM DEADLINE)",
    "SPECIAL_EXIT": "was held by SLURM after a special exit (SLURM SPECIAL_EXIT)",
    "CANCELLED": "was cancelled in SLURM (SLURM CANCELLED)",
    "PREEMPTED": "was preempted by SLURM (SLURM PREEMPTED)",
    "NODE_FAIL": "lost its node (SLURM NODE_FAIL)",
    "BOOT_FAIL": "could not boot its node (SLURM BOOT_FAIL)",
    "REVOKED": "was revoked by SLURM (SLURM REVOKED)",
}

#: States in which the job may still have processes (cancel waits until it leaves them).
ACTIVE = frozenset(name for name, state in STATES.items() if not state.terminal)


@dataclass(frozen=True)
class Job:
    """One SLURM job as ``squeue`` or ``sacct`` reports it."""

    job_id: str
    name: str
    state: str
    reason: str = ""
    #: from sacct's ExitCode ``code:signal`` (squeue has none)
    exit_code: int | None = None


def parse_squeue(text: str) -> dict[str, Job]:
    """``squeue --noheader --format=SQUEUE_FORMAT`` output, by job id."""
    jobs: dict[str, Job] = {}
    for line in text.splitlines():
        fields = line.strip().split("|")
        if len(fields) != 4 or not fields[0]:
            continue
        job_id, name, state, reason = fields
        jobs[job_id] = Job(job_id, name, _state_name(state), "" if reason == "None" else reason)
    return jobs


def parse_sacct(text: str) -> dict[str, Job]:
    """``sacct --noheader --parsable2 --format=SACCT_FORMAT`` output, by job id (job steps
    such as ``123.batch`` are left out)."""
    jobs: dict[str, Job] = {}
    for line in text.splitlines():
        fields = line.strip().split("|")
        if len(fields) != 4 or not fields[0] or "." in fields[0]:
            continue
        job_id, name, state, exit_code = fields
        code, _, _signal = exit_code.partition(":")
        jobs[job_id] = Job(
            job_id, name, _state_name(state), exit_code=int(code) if code.isdigit() else None
        )
    return jobs


def _state_name(raw: str) -> str:
    """``CANCELLED by 1000`` (sacct) -> ``CANCELLED``; ``RUNNING+`` -> ``RUNNING``."""
    return raw.split(" ", 1)[0].rstrip("+").upper()


def status_of(job: Job | None, exit_code: int | None, *, job_id: str) -> Status:
    """The run's status from its SLURM job (None: SLURM no longer knows it) and the exit
    code the head job recorded in the run folder (None: it recorded none)."""
    if job is None:
        if exit_code is not None:
            # SLURM forgot the job, but it ended and said how
            return _ended(State.COMPLETE if exit_code == 0 else State.EXECUTOR_ERROR, exit_code)
        return Status(
            State.SYSTEM_ERROR,
            reason=(
                f"SLURM no longer knows job {job_id} and the job recorded no exit code: it "
                "was removed from SLURM's records before it could report how it ended"
            ),
        )
    state = STATES.get(job.state)
    if state is None:
        # A state this table does not know yet: not an end, so keep following the job.
        return Status(State.RUNNING, reason=f"SLURM job {job_id} is {job.state}")
    if not state.terminal:
        return Status(state, reason=job.reason or None)
    code = exit_code if exit_code is not None else job.exit_code
    reason = REASONS.get(job.state)
    if reason is not None:
        reason = f"SLURM job {job_id} {reason}"
    if state is State.COMPLETE:
        return _ended(State.COMPLETE, 0 if code is None else code)
    if state is State.EXECUTOR_ERROR and job.state == "FAILED":
        # the engine's own exit code says it all; SLURM adds nothing
        return _ended(state, code if code not in (None, 0) else 1)
    return Status(state, exit_code=code, reason=reason)


def _ended(state: State, code: int) -> Status:
    if state is State.COMPLETE and code != 0:
        state = State.EXECUTOR_ERROR
    return Status(state, exit_code=code)
