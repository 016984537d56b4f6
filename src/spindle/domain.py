"""Plain domain objects shared by every layer: run states, runs and tasks as frozen records.

The store returns these instead of live ORM rows (see STYLE.md, "plain domain objects"), so
nothing above the database layer can lazily load or accidentally write.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any


class State(enum.StrEnum):
    """The WES 1.1.0 ``State`` enum, value for value."""

    UNKNOWN = "UNKNOWN"
    QUEUED = "QUEUED"
    INITIALIZING = "INITIALIZING"
    RUNNING = "RUNNING"
    PAUSED = "PAUSED"
    COMPLETE = "COMPLETE"
    EXECUTOR_ERROR = "EXECUTOR_ERROR"
    SYSTEM_ERROR = "SYSTEM_ERROR"
    CANCELED = "CANCELED"
    CANCELING = "CANCELING"
    PREEMPTED = "PREEMPTED"

    @property
    def terminal(self) -> bool:
        return self in TERMINAL_STATES

    @property
    def active(self) -> bool:
        """Owned by a worker: an engine may be running for it."""
        return self in ACTIVE_STATES


TERMINAL_STATES = frozenset(
    {State.COMPLETE, State.EXECUTOR_ERROR, State.SYSTEM_ERROR, State.CANCELED, State.PREEMPTED}
)
ACTIVE_STATES = frozenset({State.INITIALIZING, State.RUNNING, State.CANCELING})


@dataclass(frozen=True)
class RunRequest:
    """What the client asked for, as WES ``RunRequest`` (validated)."""

    workflow_type: str
    workflow_type_version: str
    workflow_url: str
    workflow_params: dict[str, Any] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)
    workflow_engine: str | None = None
    workflow_engine_version: str | None = None
    workflow_engine_parameters: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Progress:
    """Tasks done out of total (total unknown for engines that do not plan ahead)."""

    done: int
    total: int | None
    current: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Run:
    id: str
    seq: int
    state: State
    request: RunRequest
    engine: str
    compute_env: str
    submitted_at: datetime
    start_time: datetime | None = None
    end_time: datetime | None = None
    exit_code: int | None = None
    cmd: list[str] = field(default_factory=list)
    system_logs: list[str] = field(default_factory=list)
    outputs: dict[str, Any] = field(default_factory=dict)
    progress: Progress | None = None
    handle: dict[str, Any] | None = None
    worker_id: str | None = None
    lease_expires_at: datetime | None = None
    #: the user who submitted it (``users.id``)
    owner_id: int | None = None
    #: the run group it belongs to, if any (``run_groups.id``)
    group_id: str | None = None
    #: order inside its group: higher runs first (the ``priority`` engine parameter)
    priority: int = 0
    #: CPUs the run counts against its group's ``max_cpus`` (the ``cpus`` engine parameter)
    cpus: int = 1
    #: DELETE /runs/{id}: its files removed, the row kept as a tombstone
    deleted_at: datetime | None = None
    #: retention removed its work folder / all its files
    work_removed_at: datetime | None = None
    files_removed_at: datetime | None = None


@dataclass(frozen=True)
class LogSpan:
    """Where a task's log lives: a file relative to the run directory, optionally a byte range."""

    path: str
    start: int | None = None
    end: int | None = None


@dataclass(frozen=True)
class Task:
    """One engine job (a Snakemake job, a CWL step) as the engine reported it."""

    id: str
    name: str
    state: State
    cmd: list[str] = field(default_factory=list)
    start_time: datetime | None = None
    end_time: datetime | None = None
    exit_code: int | None = None
    stdout: LogSpan | None = None
    stderr: LogSpan | None = None
    system_logs: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class ComputeEnv:
    """A configured place to run: its name (the ``compute_env`` engine parameter), its type
    (``local``, ``slurm``) and what service-info says of it."""

    name: str
    type: str
    description: str = ""
    #: workflow types (with their versions) the environment's backend runs itself: a run of
    #: one there needs no local engine
    workflow_types: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    #: what runs a workflow's containers there ("none", "podman")
    containers: str = "none"


@dataclass(frozen=True)
class Event:
    id: int
    run_id: str
    at: datetime
    kind: str
    data: dict[str, Any]


@dataclass(frozen=True)
class RunSummary:
    """The columns a list of runs shows: a run without its request body, logs or outputs."""

    id: str
    seq: int
    state: State
    workflow_type: str
    workflow_type_version: str
    workflow_url: str
    engine: str
    tags: dict[str, str]
    submitted_at: datetime
    start_time: datetime | None = None
    end_time: datetime | None = None
    group_id: str | None = None


@dataclass(frozen=True)
class RunGroup:
    """A batch of runs (as an AWS HealthOmics run group) with optional limits on what its
    runs use at once. ``counts``, ``running`` and ``cpus_in_use`` are read with the group."""

    id: str
    seq: int
    name: str
    description: str
    owner_id: int
    created_at: datetime
    updated_at: datetime
    #: runs of the group INITIALIZING, RUNNING or CANCELING at once
    max_runs: int | None = None
    #: sum of the ``cpus`` of those runs
    max_cpus: int | None = None
    #: minutes a run may run before Spindle stops it (SYSTEM_ERROR)
    max_duration: float | None = None
    #: the compute environment of runs that do not choose one
    compute_env: str | None = None
    #: the group's runs by state (states with no runs are absent)
    counts: dict[str, int] = field(default_factory=dict)
    #: runs of the group that hold a slot now (INITIALIZING, RUNNING, CANCELING)
    running: int = 0
    #: the CPUs those runs asked for
    cpus_in_use: int = 0


@dataclass(frozen=True)
class Failure:
    """A run that ended in EXECUTOR_ERROR or SYSTEM_ERROR, with what is known of why."""

    run: RunSummary
    exit_code: int | None
    #: Spindle's last word on it (the last of ``system_logs``), if any
    reason: str | None
    #: the first task the engine reported failed, if any
    task: str | None


@dataclass(frozen=True)
class LogChunk:
    """Bytes of a log file from ``start``; ``next_offset`` is where to read on from (both
    offsets relative to the log, or to the task's span of it)."""

    data: bytes
    start: int
    next_offset: int


# --- users -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class UserStats:
    """A user's runs by outcome, counted from the runs table when read (never stored, so
    they cannot drift from the runs themselves)."""

    submitted: int = 0
    succeeded: int = 0
    failed: int = 0
    canceled: int = 0
    active: int = 0


@dataclass(frozen=True)
class User:
    """A user row. ``password_hash`` is an argon2 hash (never the password) or None for users
    who sign in through an identity provider."""

    id: int
    name: str
    created_at: datetime
    email: str | None = None
    display_name: str | None = None
    last_login_at: datetime | None = None
    preferences: dict[str, Any] = field(default_factory=dict)
    admin: bool = False
    disabled: bool = False
    password_hash: str | None = field(default=None, repr=False)
    stats: UserStats | None = None
    #: sessions made in an older epoch are over (sign-out, password change, disable)
    session_epoch: int = 0
    #: the identity provider that made the user; None for a local user
    issuer: str | None = None


@dataclass(frozen=True)
class ApiToken:
    """A personal API token as stored: its id and metadata, never the secret."""

    id: int
    user_id: int
    name: str
    created_at: datetime
    last_used_at: datetime | None = None
    expires_at: datetime | None = None
    revoked_at: datetime | None = None


@dataclass(frozen=True)
class Caller:
    """Who is asking, as the API (or the UI) established it: what the services scope every
    read and write by. ``admin`` callers see and act on every run."""

    user_id: int
    name: str
    admin: bool = False
    email: str | None = None
    display_name: str | None = None
    #: how the caller proved who they are: none, basic, token, jwt, session
    method: str = "none"

    @property
    def owner_scope(self) -> int | None:
        """The owner whose runs this caller may see; None: every run (an admin)."""
        return None if self.admin else self.user_id
