"""Adoption latency: a worker killed with SIGKILL → its run adopted by another worker.

``spindle serve --no-worker`` and two ``spindle worker`` processes, A and B, share one
database and data folder, each with one slot (``max_concurrent_runs`` 1) and a 10 s lease
(the setting of the issue 10 reproduction). Each round: two long runs (the example CWL
``sleep``), one claimed by each worker and running; then ``--adoption-queue`` more runs
that wait in the queue (every slot is busy); then A is killed with SIGKILL and the clock
starts. The figure ends at the ``adopted`` event of A's run (written in the transaction
that gives it to B), read from the database. Also reported: from the moment A's last lease
ran out (its ``lease_expires_at``, final once A is dead) to the adoption, i.e. how long B
took to notice. Between rounds every run is cancelled and A started again.

The kill falls anywhere in A's lease (renewed every third of it), so the kill → adoption
figure spreads over up to a lease plus B's look interval; the lease → adoption figure is
B's own delay.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import time
from datetime import datetime

import httpx
from sqlalchemy import select

from bench import wes
from bench.log import log
from bench.server import REPO, Server, spindle_command
from bench.stats import Row
from spindle.db.tables import events, runs

LEASE_SECONDS = 10
SLEEP = REPO / "examples" / "cwl" / "sleep"
#: Longest a run may take to be claimed and running, and a worker to start.
STEP_LIMIT = 180.0


def _sleep_workflow(seconds: int) -> wes.Workflow:
    return wes.Workflow(
        fields={
            "workflow_type": "CWL",
            "workflow_type_version": "v1.2",
            "workflow_url": "workflow.cwl",
            "workflow_params": json.dumps({"seconds": seconds}),
            "tags": json.dumps({"bench": "adoption"}),
        },
        files=[
            (
                "workflow_attachment",
                ("workflow.cwl", (SLEEP / "workflow.cwl").read_bytes(), "text/plain"),
            )
        ],
    )


class Worker:
    """A ``spindle worker`` process with the server's settings."""

    def __init__(self, server: Server, name: str) -> None:
        self.server = server
        self.log = server.log.with_name(f"{name}.log")
        self.proc: asyncio.subprocess.Process | None = None

    async def start(self) -> None:
        offset = self.log.stat().st_size if self.log.exists() else 0
        with self.log.open("ab") as out:
            self.proc = await asyncio.create_subprocess_exec(
                *spindle_command(),
                "worker",
                env=self.server.env(),
                stdout=out,
                stderr=asyncio.subprocess.STDOUT,
                stdin=asyncio.subprocess.DEVNULL,
                cwd=self.server.data_dir,
            )
        deadline = time.monotonic() + STEP_LIMIT
        while "started (capacity" not in self.log.read_text(errors="replace")[offset:]:
            if self.proc.returncode is not None or time.monotonic() > deadline:
                raise RuntimeError(f"spindle worker did not start; see {self.log}")
            await asyncio.sleep(0.2)

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    async def kill9(self) -> float:
        """SIGKILL; returns when it was sent (``time.time()``)."""
        assert self.proc is not None
        sent = time.time()
        self.proc.send_signal(signal.SIGKILL)
        await self.proc.wait()
        return sent

    async def stop(self) -> None:
        proc = self.proc
        if proc is None or proc.returncode is not None:
            return
        proc.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(proc.wait(), 30)
        except TimeoutError:
            proc.kill()
            await proc.wait()


async def _owner(server: Server, run_id: str) -> tuple[str, str | None, datetime | None]:
    async with server.engine.connect() as conn:
        row = (
            await conn.execute(
                select(runs.c.state, runs.c.worker_id, runs.c.lease_expires_at).where(
                    runs.c.id == run_id
                )
            )
        ).one()
    return str(row.state), row.worker_id, row.lease_expires_at


async def _running(server: Server, run_id: str) -> str:
    """Wait until the run is RUNNING; its worker's id."""
    deadline = time.monotonic() + STEP_LIMIT
    while time.monotonic() < deadline:
        state, worker_id, _ = await _owner(server, run_id)
        if state == "RUNNING" and worker_id:
            return worker_id
        await asyncio.sleep(0.1)
    raise TimeoutError(f"run {run_id} was not running within {STEP_LIMIT:g} s")


async def _adopted_at(server: Server, run_id: str, limit: float) -> datetime | None:
    deadline = time.monotonic() + limit
    stmt = select(events.c.at).where(events.c.run_id == run_id, events.c.kind == "adopted")
    while time.monotonic() < deadline:
        async with server.engine.connect() as conn:
            at: datetime | None = (await conn.execute(stmt)).scalars().first()
        if at is not None:
            return at
        await asyncio.sleep(0.05)
    return None


async def _cancel_all(client: httpx.AsyncClient, server: Server, run_ids: list[str]) -> None:
    for run_id in run_ids:
        r = await client.post(f"{server.api}/runs/{run_id}/cancel")
        if r.status_code not in (200, 409):
            r.raise_for_status()
    for run_id in run_ids:
        await wes.wait_terminal(client, server.api, run_id, every=0.2, limit=STEP_LIMIT)


async def measure(server: Server, *, reps: int, queue: int, time_limit: float) -> list[Row]:
    """``server`` runs without a worker, with one slot per worker and a 10 s lease."""
    workflow = _sleep_workflow(3600)
    a, b = Worker(server, "worker-a"), Worker(server, "worker-b")
    kill_to_adopt: list[float] = []
    lease_to_adopt: list[float] = []
    failures: list[str] = []
    deadline = time.monotonic() + time_limit
    try:
        await asyncio.gather(a.start(), b.start())
        async with httpx.AsyncClient(timeout=60.0) as client:
            for i in range(reps):
                if time.monotonic() > deadline:
                    log(f"adoption: time limit reached after {i} of {reps} rounds")
                    break
                first = await wes.submit(client, server.api, workflow)
                owners = {first: await _running(server, first)}
                second = await wes.submit(client, server.api, workflow)
                owners[second] = await _running(server, second)
                queued = [await wes.submit(client, server.api, workflow) for _ in range(queue)]
                victims = [r for r, w in owners.items() if f":{a.pid}:" in w]
                if len(victims) != 1:
                    failures.append(f"round {i}: worker A held {len(victims)} runs")
                    await _cancel_all(client, server, [*owners, *queued])
                    continue
                victim = victims[0]
                killed = await a.kill9()
                _, _, lease = await _owner(server, victim)  # A's last renewal, now final
                at = await _adopted_at(server, victim, limit=6 * LEASE_SECONDS)
                if at is None or lease is None:
                    failures.append(f"round {i}: {victim} not adopted")
                else:
                    kill_to_adopt.append(at.timestamp() - killed)
                    lease_to_adopt.append(at.timestamp() - lease.timestamp())
                    log(
                        f"adoption: round {i}: adopted {kill_to_adopt[-1]:.2f} s after the "
                        f"kill, {lease_to_adopt[-1]:.2f} s after the lease ran out"
                    )
                await _cancel_all(client, server, [*owners, *queued])
                await a.start()
    finally:
        for w in (a, b):
            with contextlib.suppress(Exception):
                await w.stop()
    db = server.db.kind
    note = f"{len(failures)} failed" if failures else f"lease {LEASE_SECONDS} s, {queue} queued"
    for failure in failures[:5]:
        log(f"adoption: {failure}")
    return [
        Row.of(
            db, "adoption", "worker kill -9 → its run adopted", kill_to_adopt, unit="s", note=note
        ),
        Row.of(db, "adoption", "· its lease ran out → adopted", lease_to_adopt, unit="s"),
    ]


def settings() -> dict[str, str]:
    """The server's (and its workers') settings for this benchmark."""
    return {
        "SPINDLE_MAX_CONCURRENT_RUNS": "1",
        "SPINDLE_LEASE_SECONDS": str(LEASE_SECONDS),
    }
