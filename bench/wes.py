"""The benchmark's WES calls: submit the example CWL workflow, wait for a state, read the
run's state events straight from the database."""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass
from datetime import datetime

import httpx
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from bench.server import REPO
from spindle.db.tables import events

EXAMPLE = REPO / "examples" / "cwl" / "wordcount"
ATTACHMENTS = ("workflow.cwl", "tools/shout.cwl", "tools/count.cwl", "poem.txt")
TERMINAL = {"COMPLETE", "EXECUTOR_ERROR", "SYSTEM_ERROR", "CANCELED", "PREEMPTED"}


@dataclass(frozen=True)
class Workflow:
    """A RunWorkflow request, read once so every submission sends the same bytes."""

    fields: dict[str, str]
    files: list[tuple[str, tuple[str, bytes, str]]]

    @classmethod
    def wordcount(cls) -> Workflow:
        params = json.loads((EXAMPLE / "inputs.json").read_text())
        return cls(
            fields={
                "workflow_type": "CWL",
                "workflow_type_version": "v1.2",
                "workflow_url": "workflow.cwl",
                "workflow_params": json.dumps(params),
                "tags": json.dumps({"bench": "spindle"}),
            },
            files=[
                ("workflow_attachment", (name, (EXAMPLE / name).read_bytes(), "text/plain"))
                for name in ATTACHMENTS
            ],
        )


async def submit(client: httpx.AsyncClient, api: str, workflow: Workflow) -> str:
    r = await client.post(f"{api}/runs", data=workflow.fields, files=workflow.files)
    if r.status_code != 200:
        raise RuntimeError(f"POST /runs answered {r.status_code}: {r.text[:500]}")
    run_id: str = r.json()["run_id"]
    return run_id


async def state(client: httpx.AsyncClient, api: str, run_id: str) -> str:
    r = await client.get(f"{api}/runs/{run_id}/status")
    r.raise_for_status()
    value: str = r.json()["state"]
    return value


async def wait_terminal(
    client: httpx.AsyncClient, api: str, run_id: str, *, every: float, limit: float
) -> tuple[str, float]:
    """Poll the status every ``every`` seconds until the run has ended; returns the state
    and the wall-clock time (``time.time()``) of the answer that said so."""
    deadline = time.monotonic() + limit
    while True:
        value = await state(client, api, run_id)
        if value in TERMINAL:
            return value, time.time()
        if time.monotonic() > deadline:
            raise TimeoutError(f"run {run_id} still {value} after {limit:g} s")
        await asyncio.sleep(every)


async def state_times(db: AsyncEngine, run_id: str) -> dict[str, datetime]:
    """When the run entered each state, from its ``state`` events (first entry wins)."""
    stmt = (
        select(events.c.at, events.c.data)
        .where(events.c.run_id == run_id, events.c.kind == "state")
        .order_by(events.c.id)
    )
    out: dict[str, datetime] = {}
    async with db.connect() as conn:
        for at, data in (await conn.execute(stmt)).all():
            out.setdefault(str(data["to"]), at)
    return out
