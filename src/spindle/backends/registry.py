"""The compute environments of a Spindle: ``local`` and every one in the settings, each a
backend built from its settings by the backend plugin its ``type`` names (built-ins register
through the same entry point group as an outside plugin, see :mod:`spindle.plugins`)."""

from __future__ import annotations

from spindle.backends.base import Backend
from spindle.compute import LOCAL, EnvSettings
from spindle.config import Settings
from spindle.domain import ComputeEnv
from spindle.plugins import Registry, registry


def backend_classes(plugins: Registry | None = None) -> dict[str, type[Backend]]:
    """The backend plugins installed, by type; a class that is no ``Backend`` is refused."""
    out: dict[str, type[Backend]] = {}
    for kind, cls in (plugins or registry()).backends.items():
        if not issubclass(cls, Backend):
            raise TypeError(f"backend plugin {kind!r} ({cls.__qualname__}) is not a Backend")
        out[kind] = cls
    return out


def environments(settings: Settings) -> dict[str, EnvSettings]:
    """Every compute environment's settings, ``local`` (always there) first."""
    local = backend_classes()[LOCAL].settings_model.model_validate(
        {
            "type": LOCAL,
            "containers": settings.containers,
            "container_network": settings.container_network,
        }
    )
    return {LOCAL: local, **settings.compute_envs}


def build_backends(settings: Settings) -> dict[str, Backend]:
    """One backend per compute environment, by environment name. Nothing connects yet."""
    classes = backend_classes()
    return {
        name: classes[env.type].from_settings(name, env, settings)
        for name, env in environments(settings).items()
    }


def describe(settings: Settings) -> list[ComputeEnv]:
    """What service-info and request validation know of each environment."""
    classes = backend_classes()
    return [
        ComputeEnv(
            name,
            env.type,
            env.description or ("Spindle's own machine" if name == LOCAL else ""),
            workflow_types=dict(classes[env.type].workflow_types),
            containers=env.containers,
        )
        for name, env in environments(settings).items()
    ]
