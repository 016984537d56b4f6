"""Engine tests."""

from __future__ import annotations

import json
import shutil
from typing import Any

from spindle.domain import Run, RunRequest
from spindle.engines.base import Engine
from spindle.storage.rundir import RunDir
from spindle.testing import run_record
from tests.support import EXAMPLES


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


def staged_run(
    rundir: RunDir, language: str, example: str, request: RunRequest, params_file: str
) -> Run:
    """``examples/<language>/<example>`` copied into the run's attachments, and the run that
    submits it with the example's parameters."""
    folder = EXAMPLES / language / example
    shutil.copytree(folder, rundir.attachments, dirs_exist_ok=True)
    params: dict[str, Any] = {}
    if (folder / params_file).exists():
        params = json.loads((folder / params_file).read_text())
    return run_record(
        request=RunRequest(
            request.workflow_type,
            request.workflow_type_version,
            request.workflow_url,
            workflow_params=params,
        ),
        engine=request.workflow_engine or "",
    )
