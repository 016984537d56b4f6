"""Engine tests."""

from __future__ import annotations

from typing import Any

from spindle.domain import RunRequest
from spindle.engines.base import Engine


def validate_with(
    engine: Engine,
    version: str,
    params: dict[str, Any],
    engine_parameters: dict[str, str] | None = None,
) -> None:
    """Call ``engine.validate`` with a request carrying these fields."""
    engine.validate(
        RunRequest(
            workflow_type=engine.workflow_type,
            workflow_type_version=version,
            workflow_url="x",
            workflow_params=params,
            workflow_engine_parameters=engine_parameters or {},
        )
    )
