"""Helpers shared by the tests."""

from __future__ import annotations

import os
from pathlib import Path
from typing import NoReturn

import pytest

REPO = Path(__file__).resolve().parent.parent
EXAMPLES = REPO / "examples"


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() in {"1", "true", "yes"}


def missing(reason: str) -> NoReturn:
    """A server or program a test needs is missing: skip locally, fail under CI=true
    (CI must never pass by skipping)."""
    if in_ci():
        pytest.fail(f"CI=true and {reason}", pytrace=False)
    pytest.skip(reason)  # only outside CI: under CI=true the line above fails instead


def require_engines() -> None:
    """Snakemake and cwltool are installed in ``.engines`` (a Spindle process started for a
    test detects them); otherwise ``missing``: no test passes by an engine silently absent."""
    for name in ("snakemake", "cwltool"):
        exe = REPO / ".engines" / name / "bin" / name
        if not exe.exists():
            missing(f"{name} is not installed at {exe} (run `make engines`)")
