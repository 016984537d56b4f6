"""The engines this Spindle can run, found at start-up.

Engines are plugins (:mod:`spindle.plugins`): the built-in ones register through the same
entry point group as an outside one. ``load_catalog`` runs each engine's ``detect`` so that
service-info and request validation speak of what is really installed, not of what the code
knows about.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field

from spindle.config import Settings
from spindle.domain import ComputeEnv
from spindle.engines.base import Engine, EngineInfo
from spindle.errors import EngineUnavailable, InvalidRequest
from spindle.plugins import Registry, registry

log = logging.getLogger(__name__)


def engine_classes(plugins: Registry | None = None) -> dict[str, type[Engine]]:
    """The engine plugins installed, by name; a class that is no ``Engine`` is refused."""
    out: dict[str, type[Engine]] = {}
    for name, cls in (plugins or registry()).engines.items():
        if not issubclass(cls, Engine):
            raise TypeError(f"engine plugin {name!r} ({cls.__qualname__}) is not an Engine")
        out[name] = cls
    return out


def build_engines(settings: Settings, plugins: Registry | None = None) -> list[Engine]:
    """One engine per installed plugin, configured by its ``[engines.NAME]`` table."""
    plugins = plugins or registry()
    return [
        cls.from_settings(settings, plugins.engine_settings(name, settings.engines.get(name, {})))
        for name, cls in engine_classes(plugins).items()
    ]


@dataclass
class Catalog:
    """Installed engines by name, with what ``detect`` found, and the default per type."""

    engines: dict[str, Engine] = field(default_factory=dict)
    infos: dict[str, EngineInfo] = field(default_factory=dict)
    unavailable: dict[str, str] = field(default_factory=dict)

    def add(self, engine: Engine, info: EngineInfo) -> None:
        self.engines[engine.name] = engine
        self.infos[engine.name] = info

    @property
    def workflow_types(self) -> dict[str, list[str]]:
        """workflow_type -> every version some installed engine accepts."""
        out: dict[str, list[str]] = {}
        for info in self.infos.values():
            versions = out.setdefault(info.workflow_type, [])
            versions.extend(v for v in info.workflow_type_versions if v not in versions)
        return out

    def get(self, name: str) -> Engine:
        try:
            return self.engines[name]
        except KeyError:
            raise EngineUnavailable(f"engine {name!r} is not installed") from None

    def resolve(
        self,
        workflow_type: str,
        workflow_type_version: str,
        workflow_engine: str | None,
        workflow_engine_version: str | None,
        env: ComputeEnv | None = None,
    ) -> Engine | None:
        """The engine for a request, or InvalidRequest naming the field that does not fit.
        None: the compute environment ``env`` runs the workflow type itself (a managed
        service), so no local engine is needed."""
        native = env.workflow_types.get(workflow_type, ()) if env is not None else ()
        if (
            workflow_type_version in native
            and workflow_engine in (None, env.type if env else None)
            and workflow_engine_version is None
        ):
            return None
        types = self.workflow_types
        if workflow_type not in types:
            raise InvalidRequest(
                "workflow_type",
                f"{workflow_type!r} is not supported here; supported: " + ", ".join(sorted(types)),
            )
        candidates = [
            name for name, info in self.infos.items() if info.workflow_type == workflow_type
        ]
        if workflow_engine is not None:
            if workflow_engine not in candidates:
                raise InvalidRequest(
                    "workflow_engine",
                    f"{workflow_engine!r} does not run {workflow_type} here; use one of: "
                    + ", ".join(sorted(candidates)),
                )
            candidates = [workflow_engine]
        elif workflow_engine_version is not None:
            raise InvalidRequest(
                "workflow_engine_version", "is given without workflow_engine (WES requires it)"
            )
        for name in candidates:
            info = self.infos[name]
            if workflow_engine_version is not None and workflow_engine_version != info.version:
                raise InvalidRequest(
                    "workflow_engine_version",
                    f"{workflow_engine_version!r} is not installed; {name} is {info.version}",
                )
            if workflow_type_version in info.workflow_type_versions:
                return self.engines[name]
        raise InvalidRequest(
            "workflow_type_version",
            f"{workflow_type_version!r} is not supported for {workflow_type}; supported: "
            + ", ".join(types[workflow_type]),
        )


async def load_catalog(settings: Settings, plugins: Registry | None = None) -> Catalog:
    catalog = Catalog()
    engines = build_engines(settings, plugins)
    results = await asyncio.gather(*(e.detect() for e in engines), return_exceptions=True)
    for engine, result in zip(engines, results, strict=True):
        if isinstance(result, EngineInfo):
            catalog.add(engine, result)
        elif isinstance(result, Exception):
            catalog.unavailable[engine.name] = str(result)
            log.warning("engine %s is unavailable: %s", engine.name, result)
        else:
            raise result
    return catalog
