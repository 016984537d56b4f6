"""Models of the run group extension (``/run-groups``; docs/groups.md), shared by the server
and the client.

Request bodies forbid unknown fields and take their numbers strictly (``"5"`` is not 5), so a
mistake is a 400 naming the field rather than a guess. The bounds here are the service's own
(``spindle.runs.groups``), so the OpenAPI documents what the service accepts.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

from spindle.models.wes import RunSummary

# The service's bounds (spindle.runs.groups), repeated so the client need not import the
# service; tests/api/test_groups.py checks they agree.
MAX_NAME = 255
MAX_DESCRIPTION = 10_000
MAX_LIMIT = 1_000_000
MAX_DURATION_MINUTES = 366 * 24 * 60

_STRICT = ConfigDict(extra="forbid", strict=True)

Name = Annotated[
    str, Field(min_length=1, max_length=MAX_NAME, description="What the group is called.")
]
Description = Annotated[str, Field(max_length=MAX_DESCRIPTION, description="Free text.")]
MaxRuns = Annotated[
    int,
    Field(
        ge=1,
        le=MAX_LIMIT,
        description="Runs of the group INITIALIZING, RUNNING or CANCELING at once; more wait "
        "QUEUED. null: no limit.",
    ),
]
MaxCpus = Annotated[
    int,
    Field(
        ge=1,
        le=MAX_LIMIT,
        description="Sum of the `cpus` engine parameter of those runs; runs that would go "
        "over wait QUEUED. null: no limit.",
    ),
]
MaxDuration = Annotated[
    float,
    Field(
        gt=0,
        # one second at least (runs.groups refuses less, naming it): limits count seconds
        json_schema_extra={"minimum": 1 / 60},
        le=MAX_DURATION_MINUTES,
        description="Minutes a run of the group may run before Spindle stops it "
        "(SYSTEM_ERROR, the reason in system_logs). null: no limit.",
    ),
]
ComputeEnv = Annotated[
    str,
    Field(
        min_length=1,
        description="The compute environment of the group's runs that name none. null: the "
        "server's default.",
    ),
]


class RunGroupCreate(BaseModel):
    """``POST /run-groups``: a new group of the caller's; absent or null limits are no
    limit."""

    model_config = _STRICT

    name: Name
    description: Description = ""
    max_runs: MaxRuns | None = None
    max_cpus: MaxCpus | None = None
    max_duration: MaxDuration | None = None
    compute_env: ComputeEnv | None = None


class RunGroupUpdate(BaseModel):
    """``PATCH /run-groups/{group_id}``: only the fields sent change; null clears a limit or
    the compute environment."""

    model_config = _STRICT

    name: Name | None = None
    description: Description | None = None
    max_runs: MaxRuns | None = None
    max_cpus: MaxCpus | None = None
    max_duration: MaxDuration | None = None
    compute_env: ComputeEnv | None = None


class RunGroupUsage(BaseModel):
    """What the group's runs hold now."""

    running: int = Field(description="Runs of the group INITIALIZING, RUNNING or CANCELING.")
    cpus_in_use: int = Field(description="The `cpus` those runs asked for, summed.")


class RunGroup(BaseModel):
    """A run group with its limits, its runs counted by state and its usage now."""

    id: str
    name: str
    description: str
    owner_id: int = Field(description="The user the group belongs to.")
    created_at: datetime = Field(description="ISO 8601, UTC.")
    updated_at: datetime = Field(description="ISO 8601, UTC.")
    max_runs: int | None = Field(description="Runs at once; null: no limit.")
    max_cpus: int | None = Field(description="CPUs at once; null: no limit.")
    max_duration: float | None = Field(description="Minutes per run; null: no limit.")
    compute_env: str | None = Field(description="Default compute environment of its runs.")
    run_counts: dict[str, int] = Field(description="The group's runs by state (every state).")
    usage: RunGroupUsage


class RunGroupList(BaseModel):
    """``GET /run-groups``: one page of groups."""

    run_groups: list[RunGroup]
    next_page_token: str = Field(description='Opaque; "" on the last page.')


class RunGroupRuns(BaseModel):
    """``GET /run-groups/{group_id}/runs``: one page of the group's runs, as WES lists
    runs."""

    runs: list[RunSummary]
    next_page_token: str = Field(description='Opaque; "" on the last page.')


class RunGroupDeleted(BaseModel):
    """``DELETE /run-groups/{group_id}``."""

    group_id: str
    detached_runs: int = Field(description="Runs that were in the group and are in none now.")


class RunGroupCanceled(BaseModel):
    """``POST /run-groups/{group_id}/cancel``."""

    group_id: str
    canceled_runs: list[str] = Field(
        description="Runs that were unfinished: QUEUED ones are CANCELED now, active ones "
        "CANCELING."
    )


class RunGroupAssignment(BaseModel):
    """``PUT /runs/{run_id}/run-group``: the group a QUEUED run moves into (null: out of any
    group). The field is required, so an empty body is not taken for null."""

    model_config = _STRICT

    run_group_id: str | None = Field(description="A run group id, or null.")


class RunGroupMembership(BaseModel):
    """The run and the group it is in now."""

    run_id: str
    run_group_id: str | None
