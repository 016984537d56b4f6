"""A real single-node SLURM cluster and an sshd in front of it, on loopback, for the tests.

:func:`cluster` (session-scoped; import it into a test module) writes a munge key, a
``slurm.conf`` and an ``sshd_config`` into a fresh folder under /tmp (munged must be able to
reach its socket, so not under pytest's private temp folder), starts munged (as user munge),
slurmctld, slurmd (``-N localhost``) and sshd, all in the foreground as children of the test
process, on free loopback ports, and waits until ``sinfo`` shows the node idle. At the end it
cancels every job and stops every daemon. Recipes from ENVIRONMENT.md: no cgroups
(``proctrack/linuxproc``, ``task/none``), no slurmdbd (``jobcomp/filetxt``, so ``sacct -c``
works).

The cluster's commands find it through ``SLURM_CONF`` (sshd sets it for its sessions with
``SetEnv``; a real cluster has its slurm.conf in /etc). Snakemake's SLURM executor plugins
delete every ``SLURM_*`` variable when they run inside a job, so the compute environments
the tests configure put the SLURM commands on PATH (their ``setup`` line) as small wrappers
that set it again; on a real cluster the commands find /etc/slurm/slurm.conf by themselves.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.live import free_port
from tests.support import REPO, missing

DAEMONS = {
    "munged": "/usr/sbin/munged",
    "slurmctld": "/usr/sbin/slurmctld",
    "slurmd": "/usr/sbin/slurmd",
    "sshd": "/usr/sbin/sshd",
}
#: Client commands that get a wrapper setting SLURM_CONF (see the module docstring).
SLURM_COMMANDS = ("sbatch", "squeue", "sinfo", "sacct", "scancel", "scontrol", "srun")
#: Seconds the daemons may take to be ready (measured: ~1.5 s to an idle node).
START_TIMEOUT = 60.0
#: Seconds a stopping daemon gets before SIGKILL.
STOP_TIMEOUT = 15.0

SLURM_CONF = """\
ClusterName=spindletest
SlurmctldHost=localhost(127.0.0.1)
SlurmctldPort={ctld_port}
SlurmdPort={slurmd_port}
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket={root}/munge/munge.socket
StateSaveLocation={root}/state
SlurmdSpoolDir={root}/spool
SlurmctldPidFile={root}/slurmctld.pid
SlurmdPidFile={root}/slurmd.pid
SlurmctldLogFile={root}/log/slurmctld.log
SlurmdLogFile={root}/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobCompType=jobcomp/filetxt
JobCompLoc={root}/jobcomp.txt
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
SlurmdParameters=config_overrides
ReturnToService=2
KillWait=5
MinJobAge=600
MpiDefault=none
NodeName=localhost NodeAddr=127.0.0.1 CPUs=8 RealMemory=8000 State=UNKNOWN
PartitionName=debug Nodes=localhost Default=YES MaxTime=INFINITE State=UP
"""

SSHD_CONFIG = """\
Port {port}
ListenAddress 127.0.0.1
HostKey {root}/ssh/host_key
PidFile {root}/ssh/sshd.pid
AuthorizedKeysFile {root}/ssh/authorized_keys
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
PermitRootLogin prohibit-password
UsePAM no
StrictModes no
MaxSessions 20
Subsystem sftp internal-sftp
SetEnv SLURM_CONF={root}/slurm.conf
LogLevel ERROR
"""


@dataclass
class Cluster:
    root: Path
    ssh_port: int
    ctld_port: int
    slurmd_port: int
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    # --- paths ---------------------------------------------------------------------------

    @property
    def conf(self) -> Path:
        return self.root / "slurm.conf"

    @property
    def work_root(self) -> Path:
        """The cluster's work folder (``work_root`` of the test compute environments)."""
        return self.root / "work"

    @property
    def key_file(self) -> Path:
        return self.root / "ssh" / "client_key"

    @property
    def known_hosts(self) -> Path:
        return self.root / "ssh" / "known_hosts"

    @property
    def env(self) -> dict[str, str]:
        """The environment SLURM commands need to find this cluster."""
        return {**os.environ, "SLURM_CONF": str(self.conf)}

    # --- asking the cluster ----------------------------------------------------------------

    def slurm(self, *argv: str) -> str:
        done = subprocess.run(argv, env=self.env, capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, f"{argv}: {done.stderr}"
        return done.stdout

    def jobs_named(self, name: str) -> list[tuple[str, str]]:
        """(job id, state) of every job with this name SLURM still holds."""
        out = self.slurm("squeue", "--noheader", "--states=all", "--format=%i|%T", f"--name={name}")
        pairs = (line.split("|", 1) for line in out.split())
        return [(job_id, state) for job_id, state in pairs]

    # --- compute environment settings ------------------------------------------------------

    def env_config(self, *, ssh: bool = True, **overrides: Any) -> dict[str, Any]:
        """Settings of a compute environment on this cluster (over SSH or not)."""
        engines = REPO / ".engines"
        config: dict[str, Any] = {
            "type": "slurm",
            "description": "the test cluster",
            "work_root": str(self.work_root),
            "engines": {
                "snakemake": str(engines / "snakemake" / "bin" / "snakemake"),
                "cwltool": str(engines / "cwltool" / "bin" / "cwltool"),
                "miniwdl": str(engines / "miniwdl" / "bin" / "miniwdl"),
            },
            "setup": f"export PATH={self.root / 'bin'}:$PATH",
            "snakemake_executor_args": [
                "--slurm-status-command",
                "squeue",
                "--slurm-init-seconds-before-status-checks",
                "1",
                "--seconds-between-status-checks",
                "1",
            ],
            "poll_seconds": 0.5,
            "command_timeout": 30,
        }
        if ssh:
            config["ssh"] = {
                "host": "127.0.0.1",
                "port": self.ssh_port,
                "user": pwd.getpwuid(os.getuid()).pw_name,
                "key_file": str(self.key_file),
                "known_hosts": str(self.known_hosts),
                "keepalive_seconds": 2,
                "connect_timeout": 10,
            }
        config.update(overrides)
        return config

    # --- daemons ---------------------------------------------------------------------------

    def _start(self, name: str, argv: list[str], **kw: Any) -> None:
        log = (self.root / "log" / f"{name}.out").open("ab")
        self.procs[name] = subprocess.Popen(
            argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, **kw
        )
        log.close()

    def start_sshd(self) -> None:
        self._start("sshd", [DAEMONS["sshd"], "-D", "-f", str(self.root / "ssh" / "sshd_config")])
        _wait_port(self.ssh_port, self.procs["sshd"], self.root / "log" / "sshd.out")

    def stop_sshd(self) -> None:
        """Stop sshd and every connection it serves (clients see their connection drop)."""
        proc = self.procs.pop("sshd", None)
        if proc is None:
            return
        children = _descendants(proc.pid)
        _stop(proc)
        for pid in children:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, 9)

    def stop(self) -> None:
        self.stop_sshd()
        if "slurmctld" in self.procs:
            with contextlib.suppress(Exception):
                subprocess.run(
                    ["scancel", "--partition=debug"], env=self.env, timeout=30, check=False
                )
                deadline = time.monotonic() + 30
                while time.monotonic() < deadline and self._active_jobs():
                    time.sleep(0.5)
        for name in ("slurmd", "slurmctld", "munged"):
            proc = self.procs.pop(name, None)
            if proc is not None:
                _stop(proc)
        shutil.rmtree(self.root, ignore_errors=True)

    def _active_jobs(self) -> bool:
        out = subprocess.run(
            ["squeue", "--noheader", "--format=%T"],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        ).stdout
        return bool(out.strip())


def _wait_port(port: int, proc: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"exited with {proc.returncode}: {_tail(log)}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 1):
            return
        time.sleep(0.1)
    raise RuntimeError(f"did not listen on {port} within {START_TIMEOUT:g} s: {_tail(log)}")


def _tail(path: Path) -> str:
    return path.read_text(errors="replace")[-2000:] if path.exists() else "(no log)"


def _descendants(pid: int) -> list[int]:
    parents: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, ValueError, IndexError):
            text = stat.read_text()
            ppid = int(text[text.rindex(")") + 2 :].split()[1])
            parents.setdefault(ppid, []).append(int(stat.parent.name))
    found: list[int] = []
    todo = [pid]
    while todo:
        for child in parents.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(STOP_TIMEOUT)


def _prepare(root: Path, c: Cluster) -> None:
    for sub in ("state", "spool", "log", "bin", "work", "ssh"):
        (root / sub).mkdir()
    munge = pwd.getpwnam("munge")
    (root / "munge").mkdir(mode=0o755)
    os.chown(root / "munge", munge.pw_uid, munge.pw_gid)
    key = root / "munge" / "munge.key"
    key.write_bytes(os.urandom(1024))
    os.chown(key, munge.pw_uid, munge.pw_gid)
    key.chmod(0o400)
    (root / "slurm.conf").write_text(
        SLURM_CONF.format(root=root, ctld_port=c.ctld_port, slurmd_port=c.slurmd_port)
    )
    # the SLURM commands again with SLURM_CONF (see the module docstring)
    for command in SLURM_COMMANDS:
        wrapper = root / "bin" / command
        wrapper.write_text(
            f'#!/bin/sh\nSLURM_CONF={root}/slurm.conf exec /usr/bin/{command} "$@"\n'
        )
        wrapper.chmod(0o755)
    ssh = root / "ssh"
    for name in ("host_key", "client_key"):
        subprocess.run(
            ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(ssh / name)], check=True
        )
    shutil.copy(ssh / "client_key.pub", ssh / "authorized_keys")
    host_key = (ssh / "host_key.pub").read_text().split()
    (ssh / "known_hosts").write_text(f"[127.0.0.1]:{c.ssh_port} {host_key[0]} {host_key[1]}\n")
    (ssh / "sshd_config").write_text(SSHD_CONFIG.format(root=root, port=c.ssh_port))
    Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)  # sshd's privilege separation folder


def _start_all(c: Cluster) -> None:
    root = c.root
    munge = pwd.getpwnam("munge")
    c._start(
        "munged",
        [
            DAEMONS["munged"],
            "--foreground",
            f"--socket={root}/munge/munge.socket",
            f"--key-file={root}/munge/munge.key",
            f"--pid-file={root}/munge/munged.pid",
            f"--log-file={root}/munge/munged.log",
            f"--seed-file={root}/munge/munged.seed",
        ],
        user=munge.pw_uid,
        group=munge.pw_gid,
        extra_groups=[],
    )
    deadline = time.monotonic() + START_TIMEOUT
    while not (root / "munge" / "munge.socket").exists():
        if c.procs["munged"].poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"munged did not start: {_tail(root / 'munge' / 'munged.log')}")
        time.sleep(0.05)
    c._start("slurmctld", [DAEMONS["slurmctld"], "-D", "-i"], env=c.env)
    c._start("slurmd", [DAEMONS["slurmd"], "-D", "-N", "localhost"], env=c.env)
    while True:
        for name in ("slurmctld", "slurmd"):
            if c.procs[name].poll() is not None:
                raise RuntimeError(f"{name} exited: {_tail(root / 'log' / f'{name}.log')}")
        state = subprocess.run(
            ["sinfo", "--noheader", "--format=%t"],
            env=c.env,
            capture_output=True,
            text=True,
            check=False,
        ).stdout.strip()
        if state == "idle":
            break
        if time.monotonic() > deadline:
            raise RuntimeError(
                f"the node is {state!r}, not idle, after {START_TIMEOUT:g} s: "
                f"{_tail(root / 'log' / 'slurmd.log')}"
            )
        time.sleep(0.1)
    c.start_sshd()


@pytest.fixture(scope="session")
def cluster() -> Iterator[Cluster]:
    """A running single-node SLURM cluster with an sshd in front of it."""
    if os.geteuid() != 0:
        missing("the test SLURM cluster runs its daemons as root (SlurmUser=root)")
    for name, path in DAEMONS.items():
        if not Path(path).exists():
            missing(f"{name} is not installed (apt-get install slurm-wlm munge openssh-server)")
    try:
        pwd.getpwnam("munge")
    except KeyError:
        missing("there is no munge user (apt-get install munge)")
    root = Path(tempfile.mkdtemp(prefix="spindle-slurm-", dir="/tmp"))
    root.chmod(0o755)
    ports: set[int] = set()
    while len(ports) < 3:
        ports.add(free_port())
    ssh_port, ctld_port, slurmd_port = sorted(ports)
    c = Cluster(root=root, ssh_port=ssh_port, ctld_port=ctld_port, slurmd_port=slurmd_port)
    try:
        _prepare(root, c)
        _start_all(c)
    except Exception as exc:
        c.stop()
        missing(f"the test SLURM cluster did not start: {exc}")
    try:
        yield c
    finally:
        c.stop()
