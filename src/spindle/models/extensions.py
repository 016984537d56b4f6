"""Models of Spindle's documented API extensions (docs/api.md), shared by the server and
the client."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from spindle.domain import State
from spindle.models.wes import ServiceInfo


class RunProgress(BaseModel):
    """``GET /runs/{run_id}/progress``: tasks done out of those the engine planned."""

    run_id: str
    state: State
    done: int = Field(description="Tasks finished successfully.")
    total: int | None = Field(
        description="Tasks the engine planned; null when the engine does not say."
    )
    current: list[str] = Field(description="Names of the tasks running now.")


class ComputeEnvironment(BaseModel):
    """A compute environment runs can choose with the ``compute_env`` engine parameter."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(description="The value of the compute_env engine parameter.")
    type: str = Field(description="What runs the engines: local or slurm.")
    description: str = Field(default="", description="Set by the operator.")


class SpindleServiceInfo(ServiceInfo):
    """WES ``ServiceInfo`` plus Spindle's documented extension fields (service-info allows
    more fields than it names)."""

    compute_environments: list[ComputeEnvironment] = Field(
        description="Spindle extension: the configured compute environments; `local` is the "
        "default."
    )
