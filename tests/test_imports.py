"""Import directions (docs/architecture.md): no cycles between Spindle's packages, and the
arrows run one way: api/web/cli → runs → db; scheduler → runs, execution, engines, backends;
engines and backends never import each other, nor api, web, scheduler or cli. Read from the
source (every import, also those inside functions), so nothing is imported to check it."""

from __future__ import annotations

import ast
import functools
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support import REPO

SRC = REPO / "src" / "spindle"

#: package → packages it must never import
FORBIDDEN: dict[str, set[str]] = {
    "engines": {"backends", "api", "web", "scheduler", "cli", "runs", "app"},
    "backends": {"engines", "api", "web", "scheduler", "cli", "runs", "app"},
    "execution": {"engines", "backends", "api", "web", "scheduler", "cli", "runs", "db"},
    "runs": {"api", "web", "cli", "scheduler", "app", "backends"},
    "db": {"runs", "api", "web", "cli", "scheduler", "engines", "backends", "auth"},
    "scheduler": {"api", "web", "cli", "app"},
    "storage": {"runs", "api", "web", "cli", "scheduler", "engines", "backends", "db"},
    "domain": {"runs", "api", "web", "cli", "scheduler", "engines", "backends", "db"},
    "api": {"cli", "scheduler", "backends", "app"},
    "web": {"cli", "scheduler", "backends", "app"},
}


def package_of(path: Path) -> str:
    """``src/spindle/runs/store.py`` → ``runs``; ``src/spindle/config.py`` → ``config``."""
    return path.relative_to(SRC).with_suffix("").parts[0]


def module_of(path: Path) -> list[str]:
    parts = ["spindle", *path.relative_to(SRC).with_suffix("").parts]
    return parts[:-1] if parts[-1] == "__init__" else parts


def imported(path: Path) -> Iterator[str]:
    """Every ``spindle.*`` module ``path`` imports, relative imports resolved."""
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            yield from (a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = module_of(path)
                if path.name != "__init__.py":
                    base = base[:-1]
                base = base[: len(base) - node.level + 1]
                name = ".".join([*base, *([node.module] if node.module else [])])
            else:
                name = node.module or ""
            if name == "spindle":  # from spindle import x: x is a module or the root's
                yield from (f"spindle.{a.name}" for a in node.names)
            else:
                yield name


@functools.cache
def graph() -> dict[str, set[str]]:
    arrows: dict[str, set[str]] = {}
    packages = {p.stem if p.is_file() else p.name for p in SRC.iterdir()}
    for path in SRC.rglob("*.py"):
        if "migrations" in path.parts or "snakemake_logger" in path.parts:
            continue  # Alembic's scripts; a package run inside Snakemake, not Spindle
        source = package_of(path)
        for name in imported(path):
            parts = name.split(".")
            if parts[0] != "spindle" or len(parts) < 2 or parts[1] not in packages:
                continue
            if parts[1] != source:
                arrows.setdefault(source, set()).add(parts[1])
    return arrows


def find_cycle(arrows: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}  # 1: on the path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(arrows.get(node, ())):
            if state.get(nxt) == 1:
                return [*path[path.index(nxt) :], nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        path.pop()
        state[node] = 2
        return None

    for node in sorted(arrows):
        if node not in state and (found := visit(node)):
            return found
    return None


def test_no_cycles_between_packages() -> None:
    cycle = find_cycle(graph())
    assert cycle is None, " → ".join(cycle or [])


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_arrows_run_one_way(package: str) -> None:
    wrong = graph().get(package, set()) & FORBIDDEN[package]
    assert not wrong, f"{package} imports {sorted(wrong)}"


def test_nothing_imports_cli() -> None:
    importers = {p for p, to in graph().items() if "cli" in to} - {"__main__"}
    assert not importers, f"{sorted(importers)} import cli"


def test_the_check_sees_a_cycle_and_a_wrong_arrow() -> None:
    """The checks above can fail: a cycle is found, and a backend importing an engine is
    an arrow the graph shows."""
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": {"c"}}) is None
    assert "execution" in graph()["backends"]
    assert "engines" in graph()["scheduler"]
