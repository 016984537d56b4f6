"""Models of the recover, lineage and delete extensions (docs/api.md)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from spindle.domain import State

_STRICT = ConfigDict(extra="forbid", strict=True)


class RecoverRequest(BaseModel):
    """The body of ``POST /runs/{run_id}/recover`` (every field optional)."""

    model_config = _STRICT

    reuse_work_dir: bool = Field(
        default=True,
        description="Continue in the parent's working folder (handed over to the new run), "
        "so what it finished is reused; false: a plain resubmission with the overrides.",
    )
    notes: str = Field(default="", max_length=4000, description="Why, for the lineage.")
    override_params: dict[str, Any] = Field(
        default_factory=dict,
        description="Merged over the parent's workflow_params (a key given null is removed).",
    )
    override_engine_parameters: dict[str, str] = Field(
        default_factory=dict,
        description="Merged over the parent's workflow_engine_parameters.",
    )


class Relative(BaseModel):
    run_id: str
    state: State
    recovery: bool = Field(description="Made by POST /runs/{run_id}/recover.")
    deleted: bool


class ParamChange(BaseModel):
    key: str
    before: Any = Field(description="The parent's value (null: not set).")
    after: Any = Field(description="This run's value (null: not set).")
    engine_parameter: bool = Field(description="A workflow_engine_parameters key.")


class LineageResponse(BaseModel):
    run_id: str
    parent: Relative | None = Field(description="The run this one was made from.")
    recovery: bool
    notes: str
    work_from: str | None = Field(
        description="The run whose working folder this one took over (a resuming recovery)."
    )
    children: list[Relative] = Field(description="Runs made from this one, oldest first.")
    changes: list[ParamChange] = Field(description="What differs from the parent's request.")


class DeletedRun(BaseModel):
    run_id: str
    state: State
    deleted_at: datetime
