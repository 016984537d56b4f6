"""The head job: the batch script that runs the engine in the run folder on the cluster, and
the ``sbatch`` command that submits it.

The script records its SLURM job id in the run folder when it starts (so the job can be
found even after SLURM forgot it), runs the environment's setup lines, then the engine with
its stdout/stderr appended to ``logs/stdout``/``logs/stderr``, and records the engine's exit
code in ``exit_code`` (written under another name, then renamed, so it is never half
written). SLURM's own output for the job (setup messages, SLURM errors) goes to
``logs/slurm.out``.
"""

from __future__ import annotations

import shlex
from pathlib import PurePosixPath

from spindle.backends.remote.mirror import EXIT_CODE_FILE
from spindle.compute import SlurmEnv
from spindle.execution import Launch

#: Job name prefix: the job of run X is named ``spindle-X``.
JOB_PREFIX = "spindle-"
#: In the run folder.
SCRIPT = "job.sh"
JOB_ID_FILE = "slurm_job_id"
SLURM_OUT = "logs/slurm.out"


def job_name(run_id: str) -> str:
    return f"{JOB_PREFIX}{run_id}"


def render(run_id: str, launch: Launch, root: PurePosixPath, env: SlurmEnv) -> str:
    q = shlex.quote
    exports = "".join(f"export {name}={q(value)}\n" for name, value in sorted(launch.env.items()))
    setup = env.setup.strip()
    return (
        "#!/bin/bash\n"
        f"# Spindle run {run_id}: runs the engine in its run folder.\n"
        f"printf '%s\\n' \"$SLURM_JOB_ID\" > {q(str(root / JOB_ID_FILE))}\n"
        + (f"# setup (compute environment settings)\n{setup}\n" if setup else "")
        + f"cd {q(str(launch.cwd))} || exit 1\n"
        + exports
        + f"{shlex.join(launch.argv)} </dev/null"
        f" >>{q(str(root / 'logs' / 'stdout'))} 2>>{q(str(root / 'logs' / 'stderr'))}\n"
        "code=$?\n"
        f"printf '%s\\n' \"$code\" > {q(str(root / (EXIT_CODE_FILE + '.tmp')))}"
        f" && mv -f {q(str(root / (EXIT_CODE_FILE + '.tmp')))} {q(str(root / EXIT_CODE_FILE))}\n"
        'exit "$code"\n'
    )


def sbatch_argv(
    run_id: str, root: PurePosixPath, env: SlurmEnv, *, cpus: int | None = None
) -> list[str]:
    """``sbatch`` for the head job: the environment's options, and ``cpus`` (what the engine
    process uses) over the environment's default."""
    argv = [
        "sbatch",
        "--parsable",
        f"--job-name={job_name(run_id)}",
        f"--chdir={root}",
        f"--output={root / SLURM_OUT}",
        f"--error={root / SLURM_OUT}",
    ]
    for option, value in (
        ("partition", env.partition),
        ("account", env.account),
        ("qos", env.qos),
        ("time", env.time),
        ("mem", env.mem),
        ("cpus-per-task", str(cpus or env.cpus or "")),
    ):
        if value:
            argv.append(f"--{option}={value}")
    return [*argv, *env.sbatch_args, str(root / SCRIPT)]


def parse_job_id(stdout: str) -> str | None:
    """``sbatch --parsable`` prints ``<job id>[;<cluster>]``."""
    first = stdout.strip().splitlines()[-1:] if stdout.strip() else []
    if not first:
        return None
    job_id = first[0].split(";", 1)[0].strip()
    return job_id if job_id.isdigit() else None
