"""Dispatch latency: POST /runs → engine process started, with an idle worker.

For each submission the client notes ``time.time()`` just before sending the POST, then:

* **RUNNING event** (the headline): the ``at`` of the run's ``state`` event with
  ``{"to": "RUNNING"}``. The worker writes it in the transaction right after the local
  backend's ``create_subprocess_exec`` has returned (the ``sh`` wrapper is exec'ed, with
  cwltool one ``exec`` behind it) and the handle is recorded.
* **pid file seen**: when inotify reported ``runs/<id>/pid`` created, from outside the
  server (written by the backend right after the spawn, or by the wrapper's first line).
* stages from the same events: POST → QUEUED (request read, attachments staged, row
  inserted), QUEUED → INITIALIZING (wake-up and claim), INITIALIZING → RUNNING (engine
  ``prepare``, spawn, handle saved).

Server and client share one clock (same host, ``CLOCK_REALTIME``). Once the run is RUNNING
it is cancelled (what it would do next is no part of this figure), waited to its end and
followed by a pause, so the worker is idle when the next POST arrives.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field

import httpx

from bench import wes
from bench.inotify import PidFileWatcher
from bench.log import log
from bench.server import Server
from bench.stats import Row

#: Submissions before the measured ones (imports, first connections, page cache).
WARMUP = 2
#: Seconds to leave the worker alone between one run's end and the next POST.
IDLE_GAP = 0.5
#: Longest one run may take to reach RUNNING and to end.
RUN_LIMIT = 120.0


@dataclass
class DispatchSamples:
    running: list[float] = field(default_factory=list)
    pid_seen: list[float] = field(default_factory=list)
    post_answered: list[float] = field(default_factory=list)
    queued: list[float] = field(default_factory=list)
    claimed: list[float] = field(default_factory=list)
    spawned: list[float] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)


async def _one(
    client: httpx.AsyncClient, server: Server, workflow: wes.Workflow, samples: DispatchSamples
) -> None:
    server.runs_dir.mkdir(parents=True, exist_ok=True)
    watcher = PidFileWatcher(server.runs_dir, RUN_LIMIT)
    sent = time.time()
    run_id = await wes.submit(client, server.api, workflow)
    answered = time.time()
    seen, watched_id = await asyncio.to_thread(watcher.wait, RUN_LIMIT)
    # cancelling before RUNNING is committed would stop the RUNNING event being written
    deadline = time.monotonic() + RUN_LIMIT
    while await wes.state(client, server.api, run_id) in ("QUEUED", "INITIALIZING"):
        if time.monotonic() > deadline:
            raise TimeoutError(f"run {run_id} did not start within {RUN_LIMIT:g} s")
        await asyncio.sleep(0.01)
    (await client.post(f"{server.api}/runs/{run_id}/cancel")).raise_for_status()
    final, _ = await wes.wait_terminal(client, server.api, run_id, every=0.05, limit=RUN_LIMIT)
    if final not in ("CANCELED", "COMPLETE"):
        samples.failures.append(f"{run_id} ended {final}")
    times = await wes.state_times(server.engine, run_id)
    if "RUNNING" not in times:
        samples.failures.append(f"{run_id} has no RUNNING event")
        return
    running = times["RUNNING"].timestamp()
    samples.running.append(running - sent)
    samples.post_answered.append(answered - sent)
    samples.queued.append(times["QUEUED"].timestamp() - sent)
    samples.claimed.append(times["INITIALIZING"].timestamp() - times["QUEUED"].timestamp())
    samples.spawned.append(running - times["INITIALIZING"].timestamp())
    if seen is not None and watched_id == run_id:
        samples.pid_seen.append(seen - sent)
    else:
        samples.failures.append(f"{run_id}: pid file not seen (watched {watched_id})")


async def measure(server: Server, *, n: int, time_limit: float) -> list[Row]:
    workflow = wes.Workflow.wordcount()
    samples = DispatchSamples()
    deadline = time.monotonic() + time_limit
    async with httpx.AsyncClient(timeout=30.0) as client:
        for _ in range(WARMUP):
            run_id = await wes.submit(client, server.api, workflow)
            await wes.wait_terminal(client, server.api, run_id, every=0.05, limit=RUN_LIMIT)
            await asyncio.sleep(IDLE_GAP)
        for i in range(n):
            if time.monotonic() > deadline:
                log(f"dispatch: time limit reached after {i} of {n} submissions")
                break
            await _one(client, server, workflow, samples)
            await asyncio.sleep(IDLE_GAP)
    db = server.db.kind
    tails = (95,)
    note = f"{len(samples.failures)} failed" if samples.failures else ""
    for failure in samples.failures[:5]:
        log(f"dispatch: {failure}")
    return [
        Row.of(
            db, "dispatch", "POST sent → RUNNING event", samples.running, tails=tails, note=note
        ),
        Row.of(db, "dispatch", "POST sent → pid file seen", samples.pid_seen, tails=tails),
        Row.of(db, "dispatch", "· POST sent → answer received", samples.post_answered, tails=tails),
        Row.of(db, "dispatch", "· POST sent → QUEUED event", samples.queued, tails=tails),
        Row.of(db, "dispatch", "· QUEUED → INITIALIZING (claim)", samples.claimed, tails=tails),
        Row.of(db, "dispatch", "· INITIALIZING → RUNNING (spawn)", samples.spawned, tails=tails),
    ]
