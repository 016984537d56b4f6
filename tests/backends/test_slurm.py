"""The SLURM backend against a real single-node cluster (tests/hpc.py), over SSH and on this
host: the backend contract, plus what only a cluster has (jobs found again by name, one
``squeue`` per poll for all runs, jobs SLURM forgot, outputs listed and fetched on demand,
an SSH connection that drops and comes back)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Sequence
from pathlib import Path, PurePosixPath
from typing import Any

import pytest

from spindle.backends.base import Handle
from spindle.backends.remote.ssh import SshTransport
from spindle.backends.remote.transport import Completed, LocalTransport, Transport
from spindle.backends.slurm.backend import SlurmBackend
from spindle.compute import SlurmEnv
from spindle.domain import State
from spindle.errors import NotFound, Unreachable
from spindle.storage.rundir import RunDir
from spindle.testing import job
from tests.backends.contract import BackendContract, launch, wait_running, wait_terminal
from tests.hpc import Cluster, cluster

__all__ = ["cluster"]  # the session fixture, imported to be found here

pytestmark = pytest.mark.slurm


def new_run_id() -> str:
    return str(uuid.uuid4())


class Counting(Transport):
    """A real transport that also records every command it runs (to count squeue calls)."""

    def __init__(self, inner: Transport) -> None:
        self.inner = inner
        self.where = inner.where
        self.commands: list[list[str]] = []

    async def run(self, argv: Sequence[str], *, limit: float) -> Completed:
        self.commands.append(list(argv))
        return await self.inner.run(argv, limit=limit)

    async def upload(self, local: Path, remote: PurePosixPath) -> None:
        await self.inner.upload(local, remote)

    async def listdir(self, path: PurePosixPath) -> Any:
        return await self.inner.listdir(path)

    async def stat(self, path: PurePosixPath) -> Any:
        return await self.inner.stat(path)

    async def read(self, path: PurePosixPath, offset: int, length: int) -> bytes:
        return await self.inner.read(path, offset, length)

    async def realpath(self, path: PurePosixPath) -> PurePosixPath:
        return await self.inner.realpath(path)

    async def download(self, remote: PurePosixPath, dest: Path) -> None:
        await self.inner.download(remote, dest)

    async def close(self) -> None:
        await self.inner.close()

    def named(self, program: str) -> list[list[str]]:
        return [c for c in self.commands if c[0] == program]


def ssh_env(cluster: Cluster, **overrides: Any) -> SlurmEnv:
    return SlurmEnv.model_validate(cluster.env_config(ssh=True, **overrides))


@pytest.fixture
async def ssh_backend(cluster: Cluster) -> AsyncIterator[SlurmBackend]:
    b = SlurmBackend("hpc", ssh_env(cluster))
    yield b
    await b.close()


class TestSlurmOverSsh(BackendContract):
    @pytest.fixture
    def run_id(self) -> str:
        return new_run_id()

    @pytest.fixture
    async def backend(self, cluster: Cluster) -> AsyncIterator[SlurmBackend]:
        b = SlurmBackend("hpc", ssh_env(cluster))
        yield b
        await b.close()

    @pytest.fixture
    async def fresh_backend(self, cluster: Cluster) -> AsyncIterator[SlurmBackend]:
        b = SlurmBackend("hpc", ssh_env(cluster))
        yield b
        await b.close()


class TestSlurmOnThisHost(BackendContract):
    """No SSH target: the cluster's commands and work folder are on Spindle's machine."""

    @pytest.fixture
    def run_id(self) -> str:
        return new_run_id()

    @pytest.fixture
    async def backend(
        self, cluster: Cluster, monkeypatch: pytest.MonkeyPatch
    ) -> AsyncIterator[SlurmBackend]:
        monkeypatch.setenv("SLURM_CONF", str(cluster.conf))
        b = SlurmBackend("cluster", SlurmEnv.model_validate(cluster.env_config(ssh=False)))
        assert isinstance(b.transport, LocalTransport)
        yield b
        await b.close()

    @pytest.fixture
    async def fresh_backend(
        self, cluster: Cluster, monkeypatch: pytest.MonkeyPatch
    ) -> AsyncIterator[SlurmBackend]:
        monkeypatch.setenv("SLURM_CONF", str(cluster.conf))
        b = SlurmBackend("cluster", SlurmEnv.model_validate(cluster.env_config(ssh=False)))
        yield b
        await b.close()


def made_rundir(tmp_path: Path, run_id: str) -> RunDir:
    rundir = RunDir(tmp_path / run_id)
    rundir.create()
    return rundir


async def test_a_worker_that_died_after_sbatch_finds_the_job_again(
    cluster: Cluster, tmp_path: Path
) -> None:
    """A second backend (a new worker after a crash between sbatch and saving the handle)
    submits the same run: it gets the first job, and SLURM holds one job of that name."""
    run_id = new_run_id()
    rundir = made_rundir(tmp_path, run_id)
    first = SlurmBackend("hpc", ssh_env(cluster))
    second = SlurmBackend("hpc", ssh_env(cluster))
    try:
        started = launch(first, "sleep 2; echo done", rundir, run_id)
        handle = await first.submit(job(run_id, started, rundir))
        again = await second.submit(job(run_id, started, rundir))
        assert again.data["job_id"] == handle.data["job_id"]
        assert len(cluster.jobs_named(f"spindle-{run_id}")) == 1
        status = await wait_terminal(second, again)
        assert status.state is State.COMPLETE
        assert rundir.stdout.read_text() == "done\n"
    finally:
        await first.close()
        await second.close()


async def test_the_job_id_recorded_in_the_run_folder_is_found(
    cluster: Cluster, ssh_backend: SlurmBackend, tmp_path: Path
) -> None:
    """A job SLURM no longer lists by name is found through the id its script recorded."""
    run_id = new_run_id()
    rundir = made_rundir(tmp_path, run_id)
    remote = cluster.work_root / run_id
    remote.mkdir()
    (remote / "slurm_job_id").write_text("424242\n")
    handle = await ssh_backend.submit(
        job(run_id, launch(ssh_backend, "true", rundir, run_id), rundir)
    )
    assert handle.data["job_id"] == "424242"
    assert cluster.jobs_named(f"spindle-{run_id}") == []


async def test_one_squeue_per_poll_for_all_runs(cluster: Cluster, tmp_path: Path) -> None:
    transport = Counting(SshTransport(ssh_env(cluster).ssh))  # type: ignore[arg-type]
    backend = SlurmBackend("hpc", ssh_env(cluster), transport)
    try:
        handles = []
        for _ in range(3):
            run_id = new_run_id()
            rundir = made_rundir(tmp_path, run_id)
            handles.append(
                await backend.submit(
                    job(run_id, launch(backend, "sleep 5", rundir, run_id), rundir)
                )
            )
        transport.commands.clear()
        statuses = await backend.poll(handles)
        assert set(statuses) == {h.run_id for h in handles}
        assert [c[0] for c in transport.commands] == ["squeue"]
        names = transport.commands[0][-1].removeprefix("--name=").split(",")
        assert sorted(names) == sorted(f"spindle-{h.run_id}" for h in handles)
        for h in handles:
            await backend.cancel(h)
    finally:
        await backend.close()


async def test_a_job_slurm_no_longer_knows_is_a_system_error_with_the_reason(
    cluster: Cluster, tmp_path: Path
) -> None:
    """Without slurmdbd, sacct is off: the backend falls back to ``sacct -c`` (the job
    completion file), remembers that, and a job found nowhere is a SYSTEM_ERROR."""
    transport = Counting(SshTransport(ssh_env(cluster).ssh))  # type: ignore[arg-type]
    backend = SlurmBackend("hpc", ssh_env(cluster), transport)
    run_id = new_run_id()
    rundir = made_rundir(tmp_path, run_id)
    handle = Handle(
        run_id,
        {
            "env": "hpc",
            "job_id": "999999",
            "job_name": f"spindle-{run_id}",
            "root": str(cluster.work_root / run_id),
            "rundir": str(rundir.root),
        },
    )
    try:
        status = (await backend.poll([handle]))[run_id]
        assert status.state is State.SYSTEM_ERROR
        assert status.reason is not None
        assert "SLURM no longer knows job 999999" in status.reason
        assert [c[0] for c in transport.commands] == ["squeue", "sacct", "sacct"]
        assert "-c" in transport.commands[2]
        transport.commands.clear()
        await backend.poll([handle])
        assert [c[0] for c in transport.commands] == ["squeue", "sacct"]
        assert "-c" in transport.commands[1]

        # the same job, had it recorded an exit code before SLURM forgot it
        (cluster.work_root / run_id).mkdir()
        (cluster.work_root / run_id / "exit_code").write_text("4\n")
        status = (await backend.poll([handle]))[run_id]
        assert (status.state, status.exit_code) == (State.EXECUTOR_ERROR, 4)
    finally:
        await backend.close()


async def test_outputs_are_listed_and_fetched_one_by_one(
    cluster: Cluster, ssh_backend: SlurmBackend, tmp_path: Path
) -> None:
    run_id = new_run_id()
    rundir = made_rundir(tmp_path, run_id)
    outside = cluster.root / "outside.txt"
    outside.write_text("not yours")
    script = (
        "mkdir -p results/deep .snakemake/big && printf 12345 > results/a.txt"
        " && echo x > results/deep/b.txt && echo meta > .snakemake/big/m"
        f" && ln -s {outside} leak.txt && ln -s results/a.txt alias.txt"
    )
    # the engine's own bookkeeping (its mirror_skip) comes with the job
    started = launch(ssh_backend, script, rundir, run_id)
    handle = await ssh_backend.submit(job(run_id, started, rundir, skip=("work/.snakemake",)))
    assert (await wait_terminal(ssh_backend, handle)).state is State.COMPLETE

    files = await ssh_backend.files(handle, rundir)
    assert files.root == PurePosixPath(cluster.work_root / run_id)
    a = files.stat("work/results/a.txt")
    assert a is not None
    assert (a.size, a.is_dir) == (5, False)
    deep = files.stat("work/results/deep")
    assert deep is not None
    assert deep.is_dir
    alias = files.stat("work/alias.txt")
    assert alias is not None
    assert alias.path == PurePosixPath("work/results/a.txt")
    assert files.stat("work/leak.txt") is None  # leads outside the run folder
    assert files.stat("work/.snakemake/big/m") is None  # never listed
    assert not (rundir.work / "results").exists()  # nothing copied back eagerly

    dest = rundir.work / "results" / "a.txt"
    await ssh_backend.fetch(handle.to_json(), PurePosixPath("work/results/a.txt"), dest)
    assert dest.read_text() == "12345"
    with pytest.raises(NotFound):
        await ssh_backend.fetch(handle.to_json(), PurePosixPath("work/leak.txt"), tmp_path / "x")
    with pytest.raises(NotFound):
        await ssh_backend.fetch(handle.to_json(), PurePosixPath("work/none.txt"), tmp_path / "y")


async def test_cancel_waits_until_slurm_shows_the_job_cancelled(
    cluster: Cluster, ssh_backend: SlurmBackend, tmp_path: Path
) -> None:
    run_id = new_run_id()
    rundir = made_rundir(tmp_path, run_id)
    handle = await ssh_backend.submit(
        job(run_id, launch(ssh_backend, "sleep 300", rundir, run_id), rundir)
    )
    await wait_running(ssh_backend, handle)
    await ssh_backend.cancel(handle)
    assert cluster.jobs_named(f"spindle-{run_id}") == [(handle.data["job_id"], "CANCELLED")]
    status = (await ssh_backend.poll([handle]))[run_id]
    assert status.state is State.CANCELED


async def test_a_dropped_ssh_connection_is_unreachable_then_comes_back(
    cluster: Cluster, ssh_backend: SlurmBackend, tmp_path: Path
) -> None:
    run_id = new_run_id()
    rundir = made_rundir(tmp_path, run_id)
    handle = await ssh_backend.submit(
        job(run_id, launch(ssh_backend, "sleep 4", rundir, run_id), rundir)
    )
    await ssh_backend.poll([handle])
    cluster.stop_sshd()
    try:
        with pytest.raises(Unreachable):
            await ssh_backend.poll([handle])
        with pytest.raises(Unreachable):  # the next call tries to connect again, and fails
            await ssh_backend.poll([handle])
    finally:
        cluster.start_sshd()
    status = await wait_terminal(ssh_backend, handle)
    assert status.state is State.COMPLETE


async def test_a_connection_that_dropped_while_idle_is_opened_again(
    cluster: Cluster, ssh_backend: SlurmBackend, tmp_path: Path
) -> None:
    run_id = new_run_id()
    rundir = made_rundir(tmp_path, run_id)
    started = launch(ssh_backend, "echo x > made.txt", rundir, run_id)
    handle = await ssh_backend.submit(job(run_id, started, rundir))
    await ssh_backend.poll([handle])
    cluster.stop_sshd()
    await asyncio.sleep(0.5)  # the client notices the connection is gone; nobody calls
    cluster.start_sshd()
    assert (await wait_terminal(ssh_backend, handle)).state is State.COMPLETE
    files = await ssh_backend.files(handle, rundir)  # SFTP works again too
    assert files.stat("work/made.txt") is not None


async def test_an_unreachable_host_is_unreachable(cluster: Cluster) -> None:
    env = ssh_env(cluster)
    assert env.ssh is not None
    closed = env.model_copy(update={"ssh": env.ssh.model_copy(update={"port": 1})})
    backend = SlurmBackend("hpc", closed)
    try:
        with pytest.raises(Unreachable, match="cannot connect to ssh://"):
            await asyncio.wait_for(backend.poll([_dummy_handle()]), 30)
    finally:
        await backend.close()


def _dummy_handle() -> Handle:
    return Handle("x", {"job_id": "1", "job_name": "spindle-x", "root": "/", "rundir": "/"})


async def test_as_root_on_this_host_each_head_job_runs_as_its_users_account(
    cluster: Cluster, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Spindle as root with run_as_users and this host's sbatch: ``sbatch --uid --gid``
    starts the head job as the run's account, which alone owns its folder on the cluster."""
    import dataclasses
    import pwd
    import stat

    from spindle.backends.sandbox import Sandbox
    from tests.backends.test_sandbox import os_accounts

    monkeypatch.setenv("SLURM_CONF", str(cluster.conf))
    with os_accounts("alice") as (alice,):
        # the accounts must pass through to their run folders (a real cluster's work root
        # is on a shared file system every account reaches)
        for folder in (cluster.root, cluster.work_root):
            folder.chmod(0o711)
        env = SlurmEnv.model_validate(cluster.env_config(ssh=False))
        backend = SlurmBackend("cluster", env, accounts=Sandbox(run_as_users={"alice": alice}))
        run_id = new_run_id()
        rundir = made_rundir(tmp_path, run_id)
        spec = job(run_id, launch(backend, "id -un", rundir, run_id), rundir)
        try:
            handle = await backend.submit(dataclasses.replace(spec, owner="alice"))
            status = await wait_terminal(backend, handle)
        finally:
            await backend.close()
        assert status.state is State.COMPLETE, (rundir.logs / "slurm.out").read_text()
        assert rundir.stdout.read_text().split() == [alice]
        there = (cluster.work_root / run_id).stat()
        uid = pwd.getpwnam(alice).pw_uid
        assert (there.st_uid, stat.S_IMODE(there.st_mode)) == (uid, 0o700)
