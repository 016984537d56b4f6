"""Pydantic models of the WES 1.1.0 schemas, field for field (names, shapes and descriptions
from the official WES 1.1.0 OpenAPI file; a bundled copy is in tests/data). Responses are
built from these so the served OpenAPI documents exactly the spec's shapes."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from spindle.domain import State


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ErrorResponse(_Model):
    """An object that can optionally include information about the error."""

    msg: str = Field(description="A detailed error message.")
    status_code: int = Field(
        description="The integer representing the HTTP status code (e.g. 200, 404)."
    )


class ServiceType(_Model):
    """Type of a GA4GH service"""

    group: str
    artifact: str
    version: str


class Organization(_Model):
    """Organization providing the service"""

    name: str
    url: str


class WorkflowTypeVersion(_Model):
    """Available workflow types supported by a given instance of the service."""

    workflow_type_version: list[str] = Field(
        description="an array of one or more acceptable types for the `workflow_type`"
    )


class WorkflowEngineVersion(_Model):
    """Available workflow engine versions supported by a given instance of the service."""

    workflow_engine_version: list[str] = Field(
        description=(
            "An array of one or more acceptable engines versions for the `workflow_engine`"
        )
    )


class DefaultWorkflowEngineParameter(_Model):
    """A message that allows one to describe default parameters for a workflow engine."""

    name: str = Field(description="The name of the parameter")
    type: str = Field(description="Describes the type of the parameter, e.g. float.")
    default_value: str = Field(
        description='The stringified version of the default parameter. e.g. "2.45".'
    )


class ServiceInfo(_Model):
    """GA4GH service-info 1.0.0 ``Service`` plus the WES 1.1.0 fields."""

    model_config = ConfigDict(extra="allow")

    id: str
    name: str
    type: ServiceType
    description: str | None = None
    organization: Organization
    contactUrl: str | None = None  # camelCase: service-info 1.0.0 field names
    documentationUrl: str | None = None
    createdAt: str | None = None
    updatedAt: str | None = None
    environment: str | None = None
    version: str
    workflow_type_versions: dict[str, WorkflowTypeVersion]
    supported_wes_versions: list[str]
    supported_filesystem_protocols: list[str]
    workflow_engine_versions: dict[str, WorkflowEngineVersion]
    default_workflow_engine_parameters: list[DefaultWorkflowEngineParameter]
    system_state_counts: dict[str, int]
    auth_instructions_url: str
    tags: dict[str, str]


class RunId(_Model):
    run_id: str = Field(description="workflow run ID")


class RunStatus(_Model):
    """State information of a workflow run"""

    run_id: str
    state: State | None = None


class RunSummary(RunStatus):
    """Small description of a workflow run"""

    start_time: str | None = Field(
        default=None,
        description='When the run started executing, in ISO 8601 format "%Y-%m-%dT%H:%M:%SZ"',
    )
    end_time: str | None = Field(
        default=None,
        description=(
            "When the run stopped executing (completed, failed, or cancelled), "
            'in ISO 8601 format "%Y-%m-%dT%H:%M:%SZ"'
        ),
    )
    tags: dict[str, str] = Field(
        description="Arbitrary key/value tags added by the client during run creation"
    )


class RunListResponse(_Model):
    """The service will return a RunListResponse when receiving a successful RunListRequest."""

    runs: list[RunSummary]
    next_page_token: str = Field(
        description=(
            "A token which may be supplied as `page_token` in workflow run list request to get "
            "the next page of results.  An empty string indicates there are no more items to "
            "return."
        )
    )


class RunRequest(_Model):
    """To execute a workflow, send a run request including all the details needed to begin
    downloading and executing a given workflow."""

    workflow_params: dict[str, Any] | None = None
    workflow_type: str
    workflow_type_version: str
    tags: dict[str, str] | None = None
    workflow_engine_parameters: dict[str, str] | None = None
    workflow_engine: str | None = None
    workflow_engine_version: str | None = None
    workflow_url: str


class Log(_Model):
    """Log and other info"""

    name: str | None = Field(default=None, description="The task or workflow name")
    cmd: list[str] | None = Field(default=None, description="The command line that was executed")
    start_time: str | None = None
    end_time: str | None = None
    stdout: str | None = Field(
        default=None,
        description="A URL to retrieve standard output logs of the workflow run or task.",
    )
    stderr: str | None = Field(
        default=None,
        description="A URL to retrieve standard error logs of the workflow run or task.",
    )
    exit_code: int | None = Field(default=None, description="Exit code of the program")
    system_logs: list[str] | None = None


class TaskLog(Log):
    """Runtime information for a given task"""

    id: str = Field(description="A unique identifier which may be used to reference the task")
    name: str  # required in TaskLog, optional in Log
    tes_uri: str | None = None


class RunLog(_Model):
    run_id: str
    request: RunRequest
    state: State
    run_log: Log
    task_logs_url: str
    task_logs: list[TaskLog] | None = None
    outputs: dict[str, Any]


class TaskListResponse(_Model):
    """The service will return a TaskListResponse when receiving a successful
    TaskListRequest."""

    task_logs: list[TaskLog]
    next_page_token: str
