"""Compute environments in the settings: TOML tables and JSON in SPINDLE_COMPUTE_ENVS, checked
at start-up with every wrong field named."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path, PurePosixPath

import pytest

from spindle.backends.local import LocalBackend
from spindle.backends.registry import build_backends, describe
from spindle.backends.remote.ssh import SshTransport
from spindle.backends.remote.transport import LocalTransport
from spindle.backends.slurm.backend import SlurmBackend
from spindle.config import Settings, load_settings
from spindle.domain import ComputeEnv
from spindle.errors import ConfigError
from spindle.storage.rundir import RunDir
from tests.support import REPO

TOML = """
[compute_envs.hpc]
type = "slurm"
description = "the lab cluster"
work_root = "/scratch/spindle"
partition = "short"
account = "lab"
qos = "normal"
time = "2-00:00:00"
mem = "16G"
cpus = 4
sbatch_args = ["--constraint=ib"]
setup = "module load snakemake"
engines = { snakemake = "/opt/snakemake/bin/snakemake" }

[compute_envs.hpc.ssh]
host = "login.example.org"
port = 2222
user = "spindle"
key_file = "{key}"
known_hosts = "{known}"

[compute_envs.shared]
type = "slurm"
work_root = "/shared/runs"
"""


@pytest.fixture
def key_files(tmp_path: Path) -> tuple[Path, Path]:
    key = tmp_path / "id_ed25519"
    key.write_text("not really a key")
    known = tmp_path / "known_hosts"
    known.write_text("")
    return key, known


def test_environments_from_a_toml_file(
    tmp_path: Path, key_files: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    key, known = key_files
    config = tmp_path / "spindle.toml"
    config.write_text(TOML.replace("{key}", str(key)).replace("{known}", str(known)))
    monkeypatch.setenv("SPINDLE_CONFIG", str(config))
    settings = Settings()
    hpc = settings.compute_envs["hpc"]
    assert hpc.work_root == PurePosixPath("/scratch/spindle")
    assert (hpc.partition, hpc.account, hpc.qos, hpc.time, hpc.mem, hpc.cpus) == (
        "short",
        "lab",
        "normal",
        "2-00:00:00",
        "16G",
        4,
    )
    assert hpc.ssh is not None
    assert (hpc.ssh.host, hpc.ssh.port, hpc.ssh.user, hpc.ssh.key_file) == (
        "login.example.org",
        2222,
        "spindle",
        key,
    )
    assert hpc.engines == {"snakemake": "/opt/snakemake/bin/snakemake"}
    assert settings.compute_envs["shared"].ssh is None

    backends = build_backends(settings)
    assert isinstance(backends["local"], LocalBackend)
    assert isinstance(backends["hpc"], SlurmBackend)
    assert isinstance(backends["hpc"].transport, SshTransport)
    assert isinstance(backends["shared"], SlurmBackend)
    assert isinstance(backends["shared"].transport, LocalTransport)
    assert describe(settings) == [
        ComputeEnv("local", "local", "Spindle's own machine"),
        ComputeEnv("hpc", "slurm", "the lab cluster"),
        ComputeEnv("shared", "slurm", ""),
    ]


@pytest.fixture(autouse=True)
def no_config_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Settings from what each test gives, not from the machine's environment or files."""
    monkeypatch.setenv("SPINDLE_CONFIG", str(tmp_path / "absent.toml"))
    monkeypatch.delenv("SPINDLE_COMPUTE_ENVS", raising=False)


def test_environments_from_json_in_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    envs = {"hpc": {"type": "slurm", "work_root": "/w", "ssh": {"host": "h"}}}
    monkeypatch.setenv("SPINDLE_COMPUTE_ENVS", json.dumps(envs))
    settings = Settings()
    assert list(settings.compute_envs) == ["hpc"]
    assert settings.compute_envs["hpc"].poll_seconds == 10.0


def test_local_needs_no_configuration() -> None:
    settings = Settings()
    assert settings.compute_envs == {}
    assert list(build_backends(settings)) == ["local"]


def test_each_environment_says_what_runs_its_containers(monkeypatch: pytest.MonkeyPatch) -> None:
    """``containers``: a setting for ``local``, a field of each configured environment; the
    backends' sites carry it to the engines and service-info shows it."""
    envs = {"hpc": {"type": "slurm", "work_root": "/w", "containers": "podman"}}
    monkeypatch.setenv("SPINDLE_COMPUTE_ENVS", json.dumps(envs))
    settings = Settings(containers="podman", container_network=True)
    assert {e.name: e.containers for e in describe(settings)} == {
        "local": "podman",
        "hpc": "podman",
    }
    backends = build_backends(settings)
    rundir = RunDir(Path("/data/runs/r1"))
    local, hpc = backends["local"].site("r1", rundir), backends["hpc"].site("r1", rundir)
    assert (local.containers, local.container_network) == ("podman", True)
    assert (hpc.containers, hpc.container_network) == ("podman", False)
    monkeypatch.delenv("SPINDLE_COMPUTE_ENVS")
    assert [e.containers for e in describe(Settings())] == ["none"]


@pytest.mark.parametrize(
    ("envs", "problem"),
    [
        ({"local": {"type": "slurm", "work_root": "/w"}}, "compute_envs: 'local' is built in"),
        ({"a b": {"type": "slurm", "work_root": "/w"}}, "'a b' is not a valid environment name"),
        ({"hpc": {"type": "pbs", "work_root": "/w"}}, "compute_envs.hpc.type: Input should be"),
        ({"hpc": {"type": "slurm", "work_root": "w"}}, "compute_envs.hpc.work_root: must be an"),
        ({"hpc": {"type": "slurm"}}, "compute_envs.hpc.work_root: Field required"),
        (
            {"hpc": {"type": "slurm", "work_root": "/w", "time": "an hour"}},
            "compute_envs.hpc.time: 'an hour' is not an sbatch --time value",
        ),
        (
            {"hpc": {"type": "slurm", "work_root": "/w", "mem": "lots"}},
            "compute_envs.hpc.mem: 'lots' is not an sbatch --mem value",
        ),
        (
            {"hpc": {"type": "slurm", "work_root": "/w", "cpus": 0}},
            "compute_envs.hpc.cpus: Input should be greater than 0",
        ),
        (
            {"hpc": {"type": "slurm", "work_root": "/w", "engines": {"nextflow": "nf"}}},
            "compute_envs.hpc.engines: 'nextflow' is not an engine",
        ),
        (
            {"hpc": {"type": "slurm", "work_root": "/w", "ssh": {"host": "h", "port": 0}}},
            "compute_envs.hpc.ssh.port: Input should be greater than or equal to 1",
        ),
        (
            {"hpc": {"type": "slurm", "work_root": "/w", "ssh": {"host": "h", "key_file": "/no"}}},
            "compute_envs.hpc.ssh.key_file: Path does not point to a file",
        ),
        (
            {"hpc": {"type": "slurm", "work_root": "/w", "partiton": "typo"}},
            "compute_envs.hpc.partiton: Extra inputs are not permitted",
        ),
        (
            {"hpc": {"type": "slurm", "work_root": "/w", "containers": "docker"}},
            "compute_envs.hpc.containers: Input should be 'none' or 'podman'",
        ),
    ],
)
def test_a_bad_environment_is_refused_with_the_field_named(
    envs: dict[str, object], problem: str
) -> None:
    with pytest.raises(ConfigError) as refused:
        load_settings(compute_envs=envs)
    assert problem in refused.value.message


def test_spindle_refuses_to_start_with_a_bad_environment(tmp_path: Path) -> None:
    envs = {"hpc": {"type": "slurm", "work_root": "relative"}}
    done = subprocess.run(
        [sys.executable, "-m", "spindle", "serve", "--port", "0"],
        env={"SPINDLE_COMPUTE_ENVS": json.dumps(envs), "SPINDLE_DATA_DIR": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 1
    assert "invalid settings" in done.stderr
    assert "compute_envs.hpc.work_root: must be an absolute path on the cluster" in done.stderr
    assert "Traceback" not in done.stderr


def test_ssh_files_may_start_with_the_home_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    (tmp_path / ".ssh").mkdir()
    (tmp_path / ".ssh" / "id_ed25519").write_text("key")
    ssh = {"host": "h", "key_file": "~/.ssh/id_ed25519"}
    settings = load_settings(compute_envs={"hpc": {"type": "slurm", "work_root": "/w", "ssh": ssh}})
    target = settings.compute_envs["hpc"].ssh
    assert target is not None
    assert target.key_file == tmp_path / ".ssh" / "id_ed25519"


def test_the_example_configuration_is_valid(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    (tmp_path / ".ssh").mkdir()
    for name in ("id_ed25519", "known_hosts"):
        (tmp_path / ".ssh" / name).write_text("")
    monkeypatch.setenv("SPINDLE_CONFIG", str(REPO / "examples" / "hpc" / "spindle.toml"))
    hpc = load_settings().compute_envs["hpc"]
    assert hpc.work_root == PurePosixPath("/scratch/spindle/runs")
    assert "module load" in hpc.setup
