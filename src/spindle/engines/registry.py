"""The engines this Spindle can run, found at start-up.

Built-in engines register the same way a plugin would: a name and a factory taking the
settings. ``load_catalog`` runs each engine's ``detect`` so that service-info and request
validation speak of what is really installed, not of what the code knows about.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass, field

from spindle.config import Settings
from spindle.engines.base import Engine, EngineInfo
from spindle.errors import EngineUnavailable, InvalidRequest

log = logging.getLogger(__name__)

EngineFactory = Callable[[Settings], Engine]


def _snakemake(settings: Settings) -> Engine:
    from spindle.engines.snakemake import SnakemakeEngine

    return SnakemakeEngine(settings.engine_executable("snakemake"), settings.snakemake_cores)


def _cwltool(settings: Settings) -> Engine:
    from spindle.engines.cwl import CwltoolEngine

    return CwltoolEngine(settings.engine_executable("cwltool"), settings.cwl_input_roots)


BUILTIN_ENGINES: dict[str, EngineFactory] = {"snakemake": _snakemake, "cwltool": _cwltool}


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
    ) -> Engine:
        """The engine for a request, or InvalidRequest naming the field that does not fit."""
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


async def load_catalog(
    settings: Settings, factories: dict[str, EngineFactory] | None = None
) -> Catalog:
    catalog = Catalog()
    engines = [make(settings) for make in (factories or BUILTIN_ENGINES).values()]
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
