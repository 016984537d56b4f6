"""The registry engines and backends register through: Python entry points.

A distribution declares its engines in the entry point group ``spindle.engines`` and its
backends in ``spindle.backends``; each entry point names a class (an ``Engine`` or a
``Backend`` subclass) that declares what the rest of Spindle needs to know of it:

- both: ``name`` (an engine's name; a backend's compute environment ``type``) and
  ``settings_model`` (a pydantic model: an engine's ``[engines.NAME]`` table, a backend's
  ``[compute_envs.NAME]`` table, whose ``type`` field is the discriminator);
- an engine: ``workflow_type``, ``mirror_skip`` (folders of its run folder never listed as
  outputs, e.g. its own bookkeeping) and ``workflow_files`` (file name patterns the CLI
  infers its workflow type from);
- a backend: ``workflow_types`` it runs itself and ``capabilities``.

Spindle's own engines and backends register exactly this way (``pyproject.toml``), so adding
one touches no other module. This module imports neither engines nor backends (both may
import it); :mod:`spindle.engines.registry` and :mod:`spindle.backends.registry` check the
classes they get.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from typing import Any

from pydantic import BaseModel, ConfigDict, TypeAdapter

ENGINE_GROUP = "spindle.engines"
BACKEND_GROUP = "spindle.backends"


class PluginSettings(BaseModel):
    """Base of the settings models of engines (and what backends' models share)."""

    model_config = ConfigDict(extra="forbid", frozen=True)


@dataclass
class Registry:
    """Plugin classes by name: engines by engine name, backends by compute environment type."""

    engines: dict[str, type[Any]] = field(default_factory=dict)
    backends: dict[str, type[Any]] = field(default_factory=dict)

    @classmethod
    def from_entry_points(cls) -> Registry:
        registry = cls()
        for ep in entry_points(group=ENGINE_GROUP):
            registry.engines[ep.name] = _named(ep.load(), ep.name, ENGINE_GROUP)
        for ep in entry_points(group=BACKEND_GROUP):
            registry.backends[ep.name] = _named(ep.load(), ep.name, BACKEND_GROUP)
        return registry

    def engine_settings(self, name: str, raw: Any) -> BaseModel:
        """``raw`` (an ``[engines.NAME]`` table) validated by the engine's own model; an
        error names ``NAME.field``."""
        model: type[BaseModel] = getattr(self.engines[name], "settings_model", PluginSettings)
        if isinstance(raw, model):
            return raw
        checked: dict[str, BaseModel] = TypeAdapter(dict[str, model]).validate_python({name: raw})  # type: ignore[valid-type]
        return checked[name]


def _named(cls: Any, name: str, group: str) -> type[Any]:
    if not isinstance(cls, type) or getattr(cls, "name", None) != name:
        raise TypeError(f"entry point {name!r} of {group} must name a class whose name is {name!r}")
    if not issubclass(getattr(cls, "settings_model", PluginSettings), BaseModel):
        raise TypeError(f"{cls.__qualname__}.settings_model must be a pydantic model")
    return cls


_lock = threading.Lock()
_registry: Registry | None = None


def registry() -> Registry:
    """The plugins installed (entry points, read once per process) and any registered by
    :func:`registered`."""
    global _registry
    with _lock:
        if _registry is None:
            _registry = Registry.from_entry_points()
        return _registry


@contextlib.contextmanager
def registered(
    *, engines: tuple[type[Any], ...] = (), backends: tuple[type[Any], ...] = ()
) -> Iterator[Registry]:
    """Add plugin classes to the registry for a while (tests: :mod:`spindle.testing`)."""
    reg = registry()
    added_e = {c.name: c for c in engines if c.name not in reg.engines}
    added_b = {c.name: c for c in backends if c.name not in reg.backends}
    reg.engines.update(added_e)
    reg.backends.update(added_b)
    try:
        yield reg
    finally:
        for name in added_e:
            reg.engines.pop(name, None)
        for name in added_b:
            reg.backends.pop(name, None)
