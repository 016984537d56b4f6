"""Models of Spindle's documented API extensions (docs/api.md), shared by the server and
the client."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from spindle.domain import State
from spindle.models.wes import RunListResponse, ServiceInfo


class RunProgress(BaseModel):
    """``GET /runs/{run_id}/progress``: tasks done out of those the engine planned."""

    run_id: str
    state: State
    done: int = Field(description="Tasks finished successfully.")
    total: int | None = Field(
        description="Tasks the engine planned; null when the engine does not say."
    )
    current: list[str] = Field(description="Names of the tasks running now.")


class RunEvent(BaseModel):
    """One event of a run (the ``data`` of an SSE event named by its ``kind``): every state
    change writes one, with the reason where there is one."""

    id: int = Field(description="Event id; increasing, and the SSE id to resume after.")
    run_id: str
    at: str = Field(description="When it happened, ISO 8601 in UTC with microseconds.")
    kind: str = Field(
        description="`state` for a state change; `adopted` when another worker took the run over."
    )
    state: State | None = Field(description="The new state, for `state` events.")
    reason: str | None = Field(description="Why, where Spindle knows (e.g. a cancel request).")
    data: dict[str, object] = Field(description="Everything the event recorded.")


class ProgressUpdate(BaseModel):
    """The ``data`` of a ``progress`` SSE event: sent when a run's progress changes."""

    run_id: str
    done: int
    total: int | None
    current: list[str]


class RunDone(BaseModel):
    """The ``data`` of the ``done`` SSE event that ends a run's stream: its final state."""

    run_id: str
    state: State


class ComputeEnvironment(BaseModel):
    """A compute environment runs can choose with the ``compute_env`` engine parameter."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(description="The value of the compute_env engine parameter.")
    type: str = Field(description="What runs the engines: local or slurm.")
    description: str = Field(default="", description="Set by the operator.")
    containers: str = Field(
        default="none",
        description="What runs the containers a workflow's tools name there: none or podman.",
    )


class SpindleServiceInfo(ServiceInfo):
    """WES ``ServiceInfo`` plus Spindle's documented extension fields (service-info allows
    more fields than it names)."""

    compute_environments: list[ComputeEnvironment] = Field(
        description="Spindle extension: the configured compute environments; `local` is the "
        "default."
    )


class SpindleRunListResponse(RunListResponse):
    """WES's RunListResponse, with the count of every matching run when asked for."""

    total_count: int | None = Field(
        default=None,
        description="Spindle extension, only with `include_total=true`: how many runs match "
        "the filters, on every page.",
    )
