"""Helpers for testing engines, backends and the worker without real ones.

Importable by out-of-tree plugins' tests too: ``job`` builds the :class:`~spindle.execution.Job`
a backend receives from a launch alone.
"""

from __future__ import annotations

from datetime import UTC, datetime

from spindle.domain import Run, RunRequest, State
from spindle.execution import Job, Launch
from spindle.storage.rundir import RunDir


def run_record(
    run_id: str = "run-1",
    *,
    request: RunRequest | None = None,
    engine: str = "fake",
    compute_env: str = "local",
    state: State = State.INITIALIZING,
) -> Run:
    """A run as the worker holds it once claimed (nothing stored)."""
    return Run(
        id=run_id,
        seq=1,
        state=state,
        request=request or RunRequest("FAKE", "1", "workflow"),
        engine=engine,
        compute_env=compute_env,
        submitted_at=datetime.now(UTC),
    )


def job(run_id: str, launch: Launch | None, rundir: RunDir) -> Job:
    """The job a backend receives for ``launch`` in ``rundir``."""
    return Job(run_record(run_id), rundir, launch)
