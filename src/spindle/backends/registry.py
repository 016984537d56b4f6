"""The compute environments of a Spindle: ``local`` and every one in the settings, each a
backend built from its settings. Built-in types register the way a plugin would: a type name
and a factory."""

from __future__ import annotations

from collections.abc import Callable

from spindle.backends.base import Backend
from spindle.compute import LOCAL, ComputeEnvConfig
from spindle.config import Settings
from spindle.domain import ComputeEnv

BackendFactory = Callable[[str, ComputeEnvConfig], Backend]


def _slurm(name: str, env: ComputeEnvConfig) -> Backend:
    from spindle.backends.slurm.backend import SlurmBackend

    return SlurmBackend(name, env)


BACKEND_TYPES: dict[str, BackendFactory] = {"slurm": _slurm}


def build_backends(settings: Settings) -> dict[str, Backend]:
    """One backend per compute environment, by environment name. Nothing connects yet."""
    from spindle.backends.local import LocalBackend
    from spindle.backends.sandbox import Sandbox

    sandbox = Sandbox(
        passthrough=tuple(settings.engine_env_passthrough),
        extra=settings.engine_env,
        run_as_user=settings.run_as_user,
        run_as_users=settings.run_as_users,
    )
    backends: dict[str, Backend] = {
        LOCAL: LocalBackend(
            cancel_grace_seconds=settings.cancel_grace_seconds,
            sandbox=sandbox,
            data_dir=settings.data_dir,
        )
    }
    for name, env in settings.compute_envs.items():
        backends[name] = BACKEND_TYPES[env.type](name, env)
    return backends


def describe(settings: Settings) -> list[ComputeEnv]:
    """What service-info and request validation know of each environment."""
    envs = [ComputeEnv(LOCAL, LOCAL, "Spindle's own machine")]
    envs += [
        ComputeEnv(name, env.type, env.description) for name, env in settings.compute_envs.items()
    ]
    return envs
