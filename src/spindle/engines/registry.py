"""The engines this Spindle can run, found at start-up.

Engines are plugins (:mod:`spindle.plugins`): the built-in ones register through the same
entry point group as an outside one. ``load_catalog`` runs each engine's ``detect`` (all at once, or
from the version cache) so that service-info and request validation speak of what is really
installed, not of what the code knows about; an engine slow to answer is checked on in the
background, never dropped.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from spindle.config import Settings
from spindle.domain import ComputeEnv
from spindle.engines.base import Engine, EngineInfo
from spindle.errors import EngineChecking, EngineSlow, EngineUnavailable, InvalidRequest
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
    #: installed engines whose detection has not answered yet (it goes on in the background)
    checking: dict[str, Engine] = field(default_factory=dict)
    tasks: list[asyncio.Task[None]] = field(default_factory=list)

    async def aclose(self) -> None:
        """Stop the background detection."""
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        self.tasks.clear()

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
        """An installed engine (also one still being checked: it is there, and runs)."""
        engine = self.engines.get(name) or self.checking.get(name)
        if engine is None:
            raise EngineUnavailable(f"engine {name!r} is not installed") from None
        return engine

    def _still_checking(self, workflow_type: str, workflow_engine: str | None) -> None:
        """EngineChecking (503) when an engine that may run the request is installed but has
        not answered its version check yet: "not supported" would be false."""
        names = sorted(
            name
            for name, engine in self.checking.items()
            if engine.workflow_type == workflow_type
            and (workflow_engine is None or workflow_engine == name)
        )
        if names:
            raise EngineChecking(
                f"workflow_type: {workflow_type} is run by {', '.join(names)}, which is "
                "installed but still being checked (its version has not been read yet); "
                "try again shortly"
            )

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
            self._still_checking(workflow_type, workflow_engine)
            if not types:
                checking = ", ".join(sorted(self.checking))
                raise InvalidRequest(
                    "workflow_type",
                    f"{workflow_type!r} is not supported here: no engine is installed for any "
                    "workflow type" + (f" (still being checked: {checking})" if checking else ""),
                )
            raise InvalidRequest(
                "workflow_type",
                f"{workflow_type!r} is not supported here; supported: " + ", ".join(sorted(types)),
            )
        candidates = [
            name for name, info in self.infos.items() if info.workflow_type == workflow_type
        ]
        if workflow_engine is not None:
            if workflow_engine not in candidates:
                self._still_checking(workflow_type, workflow_engine)
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


#: seconds start-up waits for engines to answer before serving without them (they go on
#: being checked in the background, see :meth:`Catalog.checking`)
START_WAIT = 15.0
#: seconds between detection attempts of an engine that did not answer in time (doubling)
RETRY_FIRST, RETRY_MAX = 2.0, 60.0
CACHE_FILE = "engines.json"


def _stamp(executable: str) -> dict[str, Any] | None:
    """What identifies an engine's install: its executable's resolved path, mtime and size
    (None when it does not exist, so there is nothing to cache)."""
    found = shutil.which(executable)
    if found is None:
        return None
    path = Path(found).resolve()
    try:
        st = path.stat()
    except OSError:
        return None
    return {"executable": str(path), "mtime_ns": st.st_mtime_ns, "size": st.st_size}


class VersionCache:
    """Detected engine versions in ``<data_dir>/engines.json``, keyed by engine name and
    valid while the executable's path, mtime and size are the same: a restart needs no
    engine run."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self.entries: dict[str, Any] = {}
        if path is not None:
            with contextlib.suppress(OSError, ValueError):
                loaded = json.loads(path.read_text())
                if isinstance(loaded, dict):
                    self.entries = loaded

    def get(self, engine: Engine) -> EngineInfo | None:
        entry = self.entries.get(engine.name)
        stamp = _stamp(engine_executable(engine))
        if not isinstance(entry, dict) or stamp is None or entry.get("stamp") != stamp:
            return None
        try:
            return EngineInfo(**entry["info"])
        except (KeyError, TypeError):
            return None

    def put(self, engine: Engine, info: EngineInfo) -> None:
        stamp = _stamp(engine_executable(engine))
        if self.path is None or stamp is None:
            return
        self.entries[engine.name] = {"stamp": stamp, "info": dataclasses.asdict(info)}
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            tmp.write_text(json.dumps(self.entries, indent=1))
            os.replace(tmp, self.path)
        except OSError as exc:
            log.warning("cannot cache engine versions in %s: %s", self.path, exc)


def engine_executable(engine: Engine) -> str:
    return str(getattr(engine, "executable", engine.name))


def _restore(engine: Engine, info: EngineInfo) -> None:
    """Give an engine what its ``detect`` would have learnt (the versions it accepts)."""
    if hasattr(engine, "versions"):
        engine.versions = list(info.workflow_type_versions)


async def load_catalog(
    settings: Settings,
    plugins: Registry | None = None,
    *,
    wait: float | None = None,
    cache: Path | None = None,
) -> Catalog:
    """Detect every engine at once. With ``wait``, an engine that has not answered after
    that many seconds, or that answered too slowly, is left *checking*: detection goes on in
    the background (:meth:`Catalog.aclose` stops it) and adds it once it answers. Without
    ``wait``, each engine is asked once and whatever does not answer is unavailable.
    ``cache`` (a JSON file) keeps the versions found, keyed by each executable's path and
    mtime, so that the next start asks no engine."""
    catalog = Catalog()
    versions = VersionCache(cache)
    engines = build_engines(settings, plugins)
    to_detect: list[Engine] = []
    for engine in engines:
        cached = versions.get(engine)
        if cached is not None:
            _restore(engine, cached)
            catalog.add(engine, cached)
        else:
            to_detect.append(engine)

    def settle(engine: Engine, result: EngineInfo | BaseException) -> bool:
        """Record a finished detection; False when it should be tried again."""
        if isinstance(result, EngineInfo):
            catalog.checking.pop(engine.name, None)
            catalog.add(engine, result)
            versions.put(engine, result)
            log.info("engine %s %s is available", engine.name, result.version)
            return True
        if isinstance(result, EngineSlow) and wait is not None:
            if engine.name not in catalog.checking:
                log.warning("engine %s: %s; still checking in the background", engine.name, result)
            catalog.checking[engine.name] = engine
            return False
        if isinstance(result, Exception):
            catalog.checking.pop(engine.name, None)
            catalog.unavailable[engine.name] = str(result)
            log.warning("engine %s is unavailable: %s", engine.name, result)
            return True
        raise result

    async def detect(engine: Engine) -> None:
        pause = RETRY_FIRST
        while True:
            try:
                result: EngineInfo | BaseException = await engine.detect()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                result = exc
            if settle(engine, result):
                return
            await asyncio.sleep(pause)
            pause = min(pause * 2, RETRY_MAX)

    if wait is None:
        results = await asyncio.gather(*(e.detect() for e in to_detect), return_exceptions=True)
        for engine, result in zip(to_detect, results, strict=True):
            settle(engine, result)
        return catalog
    tasks = {
        asyncio.create_task(detect(engine), name=f"detect {engine.name}"): engine
        for engine in to_detect
    }
    if tasks:
        _, pending = await asyncio.wait(tasks, timeout=wait)
        for task in pending:
            engine = tasks[task]
            if engine.name not in catalog.checking:
                log.warning(
                    "engine %s has not answered within %g s; still checking in the background",
                    engine.name,
                    wait,
                )
            catalog.checking[engine.name] = engine
        catalog.tasks.extend(pending)
    return catalog
