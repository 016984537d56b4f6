"""The backend seam: where an engine process runs.

``submit`` starts the launch and returns a :class:`Handle` that the scheduler saves before
anything else happens; ``poll`` takes all active handles of a backend at once; ``cancel`` is
separate; ``attach`` re-adopts a handle after Spindle restarted. Backends return statuses and
never call back into the scheduler.
"""

from __future__ import annotations

import asyncio
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from spindle.domain import State
from spindle.engines.base import Launch
from spindle.storage.rundir import RunDir


@dataclass(frozen=True)
class Handle:
    """Enough to find the engine process again, from any worker, after any restart."""

    run_id: str
    backend: str
    data: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {"run_id": self.run_id, "backend": self.backend, "data": self.data}

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> Handle:
        return cls(run_id=raw["run_id"], backend=raw["backend"], data=dict(raw.get("data", {})))


@dataclass(frozen=True)
class Status:
    """What the backend knows of a handle now."""

    state: State
    exit_code: int | None = None
    reason: str | None = None


@dataclass(frozen=True)
class Capabilities:
    #: processes of a run can be followed live on this host (log files, event files)
    local_files: bool = True
    #: the backend can wait for a change instead of being polled
    waits: bool = False


class Backend(ABC):
    name: str
    capabilities: Capabilities = Capabilities()

    @abstractmethod
    async def submit(self, run_id: str, launch: Launch, rundir: RunDir) -> Handle:
        """Start the launch. Idempotent per run id: a second submit finds the first."""

    @abstractmethod
    async def poll(self, handles: Sequence[Handle]) -> dict[str, Status]:
        """Status of every handle, keyed by run id, in as few external calls as possible."""

    @abstractmethod
    async def cancel(self, handle: Handle) -> None:
        """Stop everything the run started and return once it is gone."""

    async def attach(self, handle: Handle) -> Status:
        """Re-adopt a handle saved by another (possibly dead) worker."""
        return (await self.poll([handle]))[handle.run_id]

    async def wait(self, handle: Handle, max_wait: float) -> None:
        """Return when the handle's status may have changed, or after ``max_wait`` seconds."""
        await asyncio.sleep(max_wait)

    async def close(self) -> None:  # noqa: B027
        """Release connections. Running engine processes are left alone."""
