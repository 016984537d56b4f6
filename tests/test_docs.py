"""Docs that tests keep honest: every setting and every served path is documented, and
README opens with the two commands."""

from __future__ import annotations

import pytest

from spindle.app import create_app
from spindle.config import Settings
from tests.support import REPO

DOCS = REPO / "docs"


@pytest.mark.parametrize("name", sorted(Settings.model_fields))
def test_every_setting_is_documented(name: str) -> None:
    text = (DOCS / "configuration.md").read_text()
    assert f"| `{name}` | `SPINDLE_{name.upper()}` |" in text


def test_every_engine_setting_is_documented() -> None:
    """The configuration page documents every field of every installed engine's own
    settings model (the registry says which)."""
    from spindle.engines.registry import engine_classes

    text = (DOCS / "configuration.md").read_text()
    for name, cls in engine_classes().items():
        for field in cls.settings_model.model_fields:
            assert f"| `engines.{name}.{field}` |" in text, f"engines.{name}.{field}"


def test_every_compute_env_setting_is_documented() -> None:
    """Every key of every installed backend's settings model is in its page's table."""
    from spindle.backends.registry import backend_classes

    for kind, cls in backend_classes().items():
        if kind == "local":
            continue  # nothing to configure
        text = (DOCS / cls.docs).read_text()
        for field in cls.settings_model.model_fields:
            assert f"| `{field}`" in text or f", `{field}`" in text, f"{kind}: {field}"


def test_every_served_path_is_documented(settings: Settings) -> None:
    text = (DOCS / "api.md").read_text()
    app = create_app(settings, worker=False)
    paths = [p.removeprefix("/ga4gh/wes/v1") for p in app.openapi()["paths"]]
    assert "/runs/{run_id}/tasks/{task_id}" in paths
    # api.md writes the stream parameter as its two values
    text = text.replace("{stdout\\|stderr}", "{stream}")
    for path in paths:
        methods = ("GET", "POST", "PUT", "PATCH", "DELETE")
        assert any(f"`{method} {path}" in text for method in methods), path


def test_readme_opens_with_the_two_commands() -> None:
    readme = (REPO / "README.md").read_text()
    block = readme.split("```sh\n", 1)[1].split("```", 1)[0]
    commands = [line.split("#")[0].strip() for line in block.splitlines() if line.strip()]
    assert commands == ["make run", "make test"]
