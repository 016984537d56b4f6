"""Models of Spindle's documented API extensions (docs/api.md), shared by the server and
the client."""

from __future__ import annotations

from pydantic import BaseModel, Field

from spindle.domain import State


class RunProgress(BaseModel):
    """``GET /runs/{run_id}/progress``: tasks done out of those the engine planned."""

    run_id: str
    state: State
    done: int = Field(description="Tasks finished successfully.")
    total: int | None = Field(
        description="Tasks the engine planned; null when the engine does not say."
    )
    current: list[str] = Field(description="Names of the tasks running now.")
