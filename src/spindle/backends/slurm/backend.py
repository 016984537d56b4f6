"""The SLURM backend: each run is one head job that runs the engine in the run's folder on
the cluster (``<work_root>/<run_id>``), reached over SSH or on this host.

- **submit**: look for a job already named after the run (``squeue --name``, then the job id
  the head job records in the run folder), so a worker that died between ``sbatch`` and
  saving the handle finds its job instead of submitting a second one; otherwise copy the
  local run folder to the cluster and ``sbatch`` the head job (``--parsable``).
- **poll**: one ``squeue`` for all the runs of the environment (``--states=all`` also shows
  jobs that ended less than ``MinJobAge`` ago); only jobs it no longer shows are looked up
  with ``sacct`` (then ``sacct -c`` where accounting storage is off). Then each run's logs
  and exit code are fetched incrementally into the local run folder.
- **cancel**: ``scancel``, then wait until SLURM shows the job ended (no longer COMPLETING).
- **files**/**fetch**: a listing of the run's outputs on the cluster; one file on demand.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import time
from collections.abc import Mapping, Sequence
from pathlib import Path, PurePosixPath
from typing import Any

from spindle.backends.base import Backend, Capabilities, Handle, Status
from spindle.backends.remote import mirror
from spindle.backends.remote.transport import Completed, LocalTransport, Transport
from spindle.backends.sandbox import Account, Sandbox
from spindle.backends.slurm import script
from spindle.backends.slurm.states import (
    ACTIVE,
    SACCT_FORMAT,
    SQUEUE_FORMAT,
    Job,
    parse_sacct,
    parse_squeue,
    status_of,
)
from spindle.compute import EnvSettings, SlurmEnv
from spindle.config import Settings
from spindle.errors import BackendError, NotFound, Unreachable
from spindle.execution import Executor, Site
from spindle.execution import Job as JobSpec
from spindle.storage.files import RunFiles
from spindle.storage.rundir import RunDir

log = logging.getLogger(__name__)

#: squeue/sacct/sbatch messages that mean the controller is not answering now (retried),
#: unlike a refused job (an error the run ends with).
_TRANSIENT = re.compile(
    r"Unable to contact slurm controller|Socket timed out|temporarily unavailable|"
    r"Slurm temporarily unable|Transport endpoint|Connection refused|Zero Bytes were "
    r"transmitted|Resource temporarily unavailable",
    re.IGNORECASE,
)
#: sacct when there is no accounting storage (slurmdbd): ``sacct -c`` reads the jobcomp file.
_NO_ACCOUNTING = re.compile(r"accounting storage is disabled", re.IGNORECASE)
#: Runs whose logs are fetched at once.
MIRRORS_AT_ONCE = 8
#: Seconds cancel waits for SLURM to confirm the job ended.
CANCEL_TIMEOUT = 300.0


class SlurmBackend(Backend):
    name = "slurm"
    settings_model = SlurmEnv
    docs = "hpc.md"
    capabilities = Capabilities(local_files=False, waits=False, queues=True)

    @classmethod
    def from_settings(cls, env_name: str, env: EnvSettings, settings: Settings) -> SlurmBackend:
        assert isinstance(env, SlurmEnv)
        accounts = None
        if env.ssh is None and os.geteuid() == 0:
            accounts = Sandbox(run_as_user=settings.run_as_user, run_as_users=settings.run_as_users)
            accounts.check()
        return cls(env_name, env, accounts=accounts)

    def __init__(
        self,
        env_name: str,
        env: SlurmEnv,
        transport: Transport | None = None,
        accounts: Sandbox | None = None,
    ) -> None:
        self.env_name = env_name
        self.env = env
        #: run-as accounts, when Spindle is root and submits with this host's sbatch: each
        #: head job is submitted as the run's account (``sbatch --uid --gid``)
        self.accounts = accounts if accounts is not None and accounts.switches_account else None
        self.poll_interval = env.poll_seconds
        self.transport: Transport = transport or _transport_for(env)
        self._sacct_c: bool | None = None  # None: not known yet whether sacct needs -c

    # --- where -------------------------------------------------------------------------

    def root(self, run_id: str) -> PurePosixPath:
        return self.env.work_root / run_id

    def site(self, run_id: str, rundir: RunDir) -> Site:
        env = self.env
        return Site(
            root=self.root(run_id),
            # an engine without a command of its own is found by its name on the cluster
            executables=env.engines,
            by_name=True,  # an engine without a command of its own: its name on the cluster
            cpus=env.cpus or 1,  # what SLURM allocates a job that asks for nothing
            executor=Executor(
                "slurm",
                defaults={
                    k: v
                    for k, v in (
                        ("partition", env.partition),
                        ("account", env.account),
                        ("qos", env.qos),
                    )
                    if v
                },
                engine_args={"snakemake": tuple(env.snakemake_executor_args)},
            ),
            containers=env.containers,
            container_network=env.container_network,
        )

    # --- submit ------------------------------------------------------------------------

    async def submit(self, job: JobSpec) -> Handle:
        run_id, launch, rundir = job.run_id, job.launch, job.rundir
        if launch is None:
            raise BackendError("SLURM runs an engine's launch; this job has none")
        root = self.root(run_id)
        found = await self._existing_job(run_id, root)
        if found is not None:
            log.info("run %s: found its SLURM job %s; not submitting again", run_id, found)
            return self._handle(run_id, found, root, rundir, job.skip)
        account = self.accounts.account_for(job.owner) if self.accounts else None
        text = script.render(run_id, launch, root, self.env)
        await asyncio.to_thread((rundir.root / script.SCRIPT).write_text, text)
        await self.transport.upload(rundir.root, root)
        argv = script.sbatch_argv(run_id, root, self.env, cpus=launch.cpus)
        if account is not None:
            # the whole folder is the account's (the job writes its id, logs and exit code
            # there), readable by it alone; root's sbatch starts the job as the account
            await asyncio.to_thread(_give, Path(root), account)
            argv[1:1] = [f"--uid={account.uid}", f"--gid={account.gid}"]
        done = await self._command(argv, "sbatch")
        job_id = script.parse_job_id(done.stdout)
        if job_id is None:
            raise BackendError(f"sbatch printed no job id: {done.stdout.strip()[:200]!r}")
        return self._handle(run_id, job_id, root, rundir, job.skip)

    def _handle(
        self,
        run_id: str,
        job_id: str,
        root: PurePosixPath,
        rundir: RunDir,
        skip: Sequence[str] = mirror.SKIPPED,
    ) -> Handle:
        return Handle(
            run_id=run_id,
            data={
                "env": self.env_name,
                "job_id": job_id,
                "job_name": script.job_name(run_id),
                "root": str(root),
                "rundir": str(rundir.root),
                "where": self.transport.where,
                "skip": list(skip),
            },
        )

    async def _existing_job(self, run_id: str, root: PurePosixPath) -> str | None:
        """A job already submitted for this run: by its name while SLURM holds it, else by
        the job id its script recorded when it started."""
        jobs = await self._squeue([script.job_name(run_id)])
        if jobs:
            return max(jobs, key=int)
        recorded = await self.transport.stat(root / script.JOB_ID_FILE)
        if recorded is not None and recorded.kind == "file":
            text = (await self.transport.read(root / script.JOB_ID_FILE, 0, 64)).decode().strip()
            if text.isdigit():
                return text
        return None

    # --- poll --------------------------------------------------------------------------

    async def poll(self, handles: Sequence[Handle]) -> dict[str, Status]:
        if not handles:
            return {}
        jobs = await self._squeue([h.data["job_name"] for h in handles])
        missing = [h.data["job_id"] for h in handles if h.data["job_id"] not in jobs]
        if missing:
            jobs.update(await self._sacct(missing))
        gate = asyncio.Semaphore(MIRRORS_AT_ONCE)

        async def one(handle: Handle) -> tuple[str, Status]:
            job = jobs.get(handle.data["job_id"])
            ended = job is None or job.state not in ACTIVE
            async with gate:
                await mirror.mirror(
                    self.transport,
                    PurePosixPath(handle.data["root"]),
                    RunDir(Path(handle.data["rundir"])),
                    full=ended,
                )
            code = _exit_code(Path(handle.data["rundir"]) / mirror.EXIT_CODE_FILE)
            return handle.run_id, status_of(job, code, job_id=handle.data["job_id"])

        return dict(await asyncio.gather(*(one(h) for h in handles)))

    async def _squeue(self, names: Sequence[str]) -> dict[str, Job]:
        done = await self._command(
            [
                "squeue",
                "--noheader",
                "--states=all",
                f"--format={SQUEUE_FORMAT}",
                f"--name={','.join(names)}",
            ],
            "squeue",
        )
        return parse_squeue(done.stdout)

    async def _sacct(self, job_ids: Sequence[str]) -> dict[str, Job]:
        """Jobs squeue no longer shows. sacct needs accounting storage (slurmdbd); without
        it, ``sacct -c`` reads the job completion file (``JobCompType=jobcomp/filetxt``);
        without either, SLURM no longer knows the jobs: an empty answer."""
        argv = ["sacct", "--noheader", "--parsable2", "--allocations", f"--format={SACCT_FORMAT}"]
        argv.append(f"--jobs={','.join(job_ids)}")
        for completion_file in (False, True) if self._sacct_c is None else (self._sacct_c,):
            done = await self._run([*argv, "-c"] if completion_file else argv)
            if done.code == 0:
                self._sacct_c = completion_file
                return parse_sacct(done.stdout)
            if _TRANSIENT.search(done.stderr):
                raise Unreachable(f"sacct on {self.transport.where}: {done.stderr.strip()}")
            if not _NO_ACCOUNTING.search(done.stderr):
                break
        return {}

    # --- cancel ------------------------------------------------------------------------

    async def cancel(self, handle: Handle) -> None:
        job_id = handle.data["job_id"]
        await self._command(["scancel", job_id], "scancel")
        deadline = time.monotonic() + CANCEL_TIMEOUT
        while True:
            job = (await self._squeue([handle.data["job_name"]])).get(job_id)
            if job is None or job.state not in ACTIVE:
                return
            if time.monotonic() >= deadline:
                raise BackendError(
                    f"SLURM job {job_id} is still {job.state} {CANCEL_TIMEOUT:g} s after scancel"
                )
            await asyncio.sleep(min(1.0, self.env.poll_seconds))

    # --- files -------------------------------------------------------------------------

    async def files(self, handle: Handle, rundir: RunDir) -> RunFiles:
        skip = handle.data.get("skip", mirror.SKIPPED)
        return await mirror.listing(self.transport, PurePosixPath(handle.data["root"]), skip)

    async def fetch(self, handle: Mapping[str, Any], rel: PurePosixPath, dest: Path) -> None:
        root = PurePosixPath(handle["data"]["root"])
        real_root = await self.transport.realpath(root)
        real = await self.transport.realpath(root / rel)
        found = await self.transport.stat(real)
        if not real.is_relative_to(real_root) or found is None or found.kind != "file":
            raise NotFound(f"run {handle['run_id']!r} has no file {rel.as_posix()!r}")
        await self.transport.download(real, dest)

    async def close(self) -> None:
        await self.transport.close()

    # --- commands ----------------------------------------------------------------------

    async def _run(self, argv: Sequence[str]) -> Completed:
        return await self.transport.run(argv, limit=self.env.command_timeout)

    async def _command(self, argv: Sequence[str], what: str) -> Completed:
        """Run a SLURM command that must succeed: Unreachable if the controller does not
        answer (retried by the caller), BackendError with SLURM's message otherwise."""
        done = await self._run(argv)
        if done.code == 0:
            return done
        message = (done.stderr.strip() or done.stdout.strip())[-1000:] or f"exit {done.code}"
        if _TRANSIENT.search(message) or done.code == -1:
            raise Unreachable(f"{what} on {self.transport.where}: {message}")
        raise BackendError(f"{what} on {self.transport.where} failed: {message}")


def _give(root: Path, account: Account) -> None:
    """The run folder on the cluster to ``account``, owner-only, never through a link."""
    for folder, dirs, files in os.walk(root):
        for name in (".", *dirs, *files):
            os.chown(Path(folder) / name, account.uid, account.gid, follow_symlinks=False)
    root.chmod(0o700)


def _transport_for(env: SlurmEnv) -> Transport:
    if env.ssh is None:
        return LocalTransport()
    from spindle.backends.remote.ssh import SshTransport

    return SshTransport(env.ssh)


def _exit_code(path: Path) -> int | None:
    try:
        return int(path.read_text().strip())
    except (FileNotFoundError, ValueError):
        return None
