"""Compute environments as the settings describe them: ``local`` (always there, no
configuration) and any number of named environments of the installed backends' types (see
:mod:`spindle.plugins`), each validated by its backend's own settings model, chosen by its
``type``: e.g. SLURM environments, reached over SSH or, without an SSH target, through the
``sbatch``/``squeue`` of the machine Spindle runs on.

In ``spindle.toml``::

    [compute_envs.hpc]
    type = "slurm"
    work_root = "/scratch/spindle"
    partition = "short"

    [compute_envs.hpc.ssh]
    host = "login.cluster.example.org"
    user = "spindle"
    key_file = "/etc/spindle/id_ed25519"

or as JSON in ``SPINDLE_COMPUTE_ENVS``. Every value is checked when the settings are built, so
a bad environment stops Spindle at start-up with the field named.
"""

from __future__ import annotations

import re
from pathlib import Path, PurePosixPath
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    FilePath,
    TypeAdapter,
    create_model,
    field_validator,
)

from spindle.plugins import registry

#: Name of the built-in environment that runs engines on Spindle's own machine.
LOCAL = "local"
#: What an environment name may look like (it is also a ``compute_env`` parameter value).
ENV_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
#: ``sbatch --time`` formats: minutes, minutes:seconds, hours:minutes:seconds, days-hours,
#: days-hours:minutes, days-hours:minutes:seconds.
_SLURM_TIME = re.compile(r"^(\d+-\d+(:\d+){0,2}|\d+(:\d+){0,2})$")
#: ``sbatch --mem`` values: a number with an optional K, M, G or T suffix.
_SLURM_MEM = re.compile(r"^\d+[KMGT]?$")


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class EnvSettings(_Model):
    """What the settings of every compute environment have; a backend's own model adds the
    rest (its ``type`` a ``Literal`` of the backend's name)."""

    type: str
    #: Shown in service-info.
    description: str = ""
    #: What runs the containers a workflow's tools name (CWL DockerRequirement, WDL
    #: runtime.docker): "none" (they are refused) or "podman" (docs/containers.md).
    containers: Literal["none", "podman"] = "none"
    #: Whether those containers may reach the network.
    container_network: bool = False


class LocalEnv(EnvSettings):
    """The built-in ``local`` environment (nothing to configure)."""

    type: Literal["local"] = "local"


class SshTarget(_Model):
    """How to reach a cluster's login node."""

    host: str = Field(min_length=1)
    port: int = Field(default=22, ge=1, le=65535)
    #: Remote user; empty: the user Spindle runs as.
    user: str = ""
    #: Private key file; empty: the SSH agent and the usual ``~/.ssh/id_*`` keys.
    key_file: FilePath | None = None
    #: ``known_hosts`` file the host key is checked against; empty: ``~/.ssh/known_hosts``.
    known_hosts: FilePath | None = None
    #: False skips the host key check (only for throwaway test clusters).
    check_host_key: bool = True
    #: Seconds between SSH keepalives on the kept-open connection.
    keepalive_seconds: float = Field(default=30.0, gt=0)
    #: Seconds a connection attempt may take.
    connect_timeout: float = Field(default=30.0, gt=0)

    @field_validator("key_file", "known_hosts", mode="before")
    @classmethod
    def _home(cls, v: object) -> object:
        """``~/.ssh/...`` means the home folder of the user Spindle runs as."""
        return Path(v).expanduser() if isinstance(v, str) and v.startswith("~") else v


class SlurmEnv(EnvSettings):
    """A SLURM cluster: each run is one head job that runs the engine in the run's folder
    under ``work_root``."""

    type: Literal["slurm"]
    #: Where to reach the cluster; absent: the ``sbatch`` on Spindle's machine, with
    #: ``work_root`` on a file system Spindle's machine shares with the cluster.
    ssh: SshTarget | None = None
    #: Absolute folder on the cluster that holds one folder per run.
    work_root: PurePosixPath
    partition: str = ""
    account: str = ""
    qos: str = ""
    #: Defaults for the head job: ``--time``, ``--mem``, ``--cpus-per-task``.
    time: str = ""
    mem: str = ""
    cpus: int | None = Field(default=None, gt=0)
    #: More ``sbatch`` options, one list item per argument (e.g. ``["--constraint=ib"]``).
    sbatch_args: list[str] = Field(default_factory=list)
    #: Shell lines the head job runs before the engine (e.g. ``module load snakemake``).
    setup: str = ""
    #: Engine commands on the cluster, by engine name; absent: the engine's name (on the
    #: cluster's ``PATH`` once ``setup`` ran).
    engines: dict[str, str] = Field(default_factory=dict)
    #: More arguments for Snakemake when a run spreads its jobs over the cluster with
    #: Snakemake's own SLURM executor (``executor`` engine parameter).
    snakemake_executor_args: list[str] = Field(default_factory=list)
    #: Seconds between two looks at the cluster (one ``squeue`` for all of its runs).
    poll_seconds: float = Field(default=10.0, gt=0)
    #: Seconds one command on the cluster (``sbatch``, ``squeue``, ...) may take.
    command_timeout: float = Field(default=60.0, gt=0)

    @field_validator("work_root")
    @classmethod
    def _absolute(cls, v: PurePosixPath) -> PurePosixPath:
        if not v.is_absolute():
            raise ValueError(f"must be an absolute path on the cluster, not {str(v)!r}")
        return v

    @field_validator("time")
    @classmethod
    def _time(cls, v: str) -> str:
        if v and not _SLURM_TIME.match(v):
            raise ValueError(f"{v!r} is not an sbatch --time value (minutes, h:m:s or days-h:m:s)")
        return v

    @field_validator("mem")
    @classmethod
    def _mem(cls, v: str) -> str:
        if v and not _SLURM_MEM.match(v):
            raise ValueError(f"{v!r} is not an sbatch --mem value (e.g. 4000M or 16G)")
        return v

    @field_validator("engines")
    @classmethod
    def _engines(cls, v: dict[str, str]) -> dict[str, str]:
        known = sorted(registry().engines)
        for name, command in v.items():
            if name not in known:
                raise ValueError(f"{name!r} is not an engine; known: {', '.join(known)}")
            if not command.strip():
                raise ValueError(f"the command for {name} is empty")
        return v


#: The settings of a configured environment (a backend's own model).
ComputeEnvConfig = EnvSettings


def validate_envs(raw: Any) -> Any:
    """``compute_envs`` as given (TOML tables or JSON) → each environment validated by the
    model of the backend its ``type`` names: a union discriminated by ``type`` over the
    installed backends. Errors name the field (``hpc.work_root``)."""
    if not isinstance(raw, dict) or not raw:
        return raw  # pydantic says what is wrong with it
    check_env_names(raw)
    models: dict[str, type[BaseModel]] = {
        kind: cls.settings_model
        for kind, cls in registry().backends.items()
        if kind != LOCAL and isinstance(getattr(cls, "settings_model", None), type)
    }
    kinds: Any = Literal[tuple(models)]  # the installed types, as pydantic shows them
    tag = create_model("ComputeEnvType", __config__=ConfigDict(extra="allow"), type=(kinds, ...))
    TypeAdapter(dict[str, tag]).validate_python(raw)
    out: dict[str, Any] = {}
    for name, env in raw.items():
        model = models[env["type"]]
        out.update(TypeAdapter(dict[str, model]).validate_python({name: env}))  # type: ignore[valid-type]
    return out


def check_env_names(envs: dict[str, Any]) -> dict[str, Any]:
    for name in envs:
        if name == LOCAL:
            raise ValueError(f"{LOCAL!r} is built in and cannot be configured")
        if not ENV_NAME.match(name):
            raise ValueError(
                f"{name!r} is not a valid environment name (letters, digits, '_', '.', '-')"
            )
    return envs
