"""End-to-end overhead: the example CWL workflow through Spindle against cwltool alone.

* **cwltool alone**: ``.engines/cwltool/bin/cwltool --no-container --outdir <tmp>
  workflow.cwl inputs.json`` in ``examples/cwl/wordcount``, timed from just before the
  process is created to its exit (``time.perf_counter``).
* **Spindle**: POST /runs with the four attachments and the same inputs, then
  GET /runs/{id}/status every 20 ms (``--e2e-poll``) until the run has ended; timed from
  just before the POST to the answer that says COMPLETE.
* **cwltool alone, polled**: cwltool alone again, while the client polls the status of an
  earlier run as often: the cost of watching, without Spindle starting anything.

The three alternate (the order reverses every round) after one unmeasured warm-up of each.
Each Spindle run is also split, with the same clock, into: POST → RUNNING event (start),
RUNNING → the wrapper's ``exit_code`` file written (the engine itself, under Spindle's
command line), exit_code → COMPLETE event (the worker notices, reads progress and outputs,
commits), COMPLETE → the client sees it (poll interval and one request). CPU time is read
from ``/proc``: the server's own, its reaped children's (the engine's whole process tree) and,
on PostgreSQL, its database backends'; cwltool alone's from ``RUSAGE_CHILDREN``.
"""

from __future__ import annotations

import asyncio
import contextlib
import resource
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from bench import wes
from bench.log import log
from bench.server import REPO, Server
from bench.stats import Row, median

#: Seconds between two status requests while a run is followed (``--e2e-poll``).
POLL = 0.02
RUN_LIMIT = 180.0
CWLTOOL = REPO / ".engines" / "cwltool" / "bin" / "cwltool"
TARGET_RATIO = 1.05


@dataclass
class E2ESamples:
    direct: list[float] = field(default_factory=list)
    direct_cpu: list[float] = field(default_factory=list)
    polled: list[float] = field(default_factory=list)
    spindle: list[float] = field(default_factory=list)
    start: list[float] = field(default_factory=list)
    engine: list[float] = field(default_factory=list)
    engine_cpu: list[float] = field(default_factory=list)
    finish: list[float] = field(default_factory=list)
    observe: list[float] = field(default_factory=list)
    server_cpu: list[float] = field(default_factory=list)
    db_cpu: list[float] = field(default_factory=list)
    client_cpu: list[float] = field(default_factory=list)


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


async def run_direct(outdir: Path) -> tuple[float, float]:
    """Wall time and CPU time (the whole process tree) of cwltool alone."""
    cpu0 = _children_cpu()
    t0 = time.perf_counter()
    proc = await asyncio.create_subprocess_exec(
        str(CWLTOOL),
        "--no-container",
        "--outdir",
        str(outdir),
        "workflow.cwl",
        "inputs.json",
        cwd=wes.EXAMPLE,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        _, err = await asyncio.wait_for(proc.communicate(), RUN_LIMIT)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise
    elapsed = time.perf_counter() - t0
    if proc.returncode != 0:
        raise RuntimeError(f"cwltool exited {proc.returncode}: {err.decode()[-1000:]}")
    return elapsed, _children_cpu() - cpu0


async def run_polled(
    client: httpx.AsyncClient, server: Server, run_id: str, outdir: Path, poll: float
) -> float:
    """cwltool alone while the status of ``run_id`` is polled as often as a Spindle run's."""
    stop = asyncio.Event()

    async def watch() -> None:
        while not stop.is_set():
            await wes.state(client, server.api, run_id)
            await asyncio.sleep(poll)

    poller = asyncio.create_task(watch())
    try:
        elapsed, _ = await run_direct(outdir)
    finally:
        stop.set()
        with contextlib.suppress(Exception):
            await poller
    return elapsed


async def run_spindle(
    client: httpx.AsyncClient,
    server: Server,
    workflow: wes.Workflow,
    samples: E2ESamples | None,
    poll: float,
) -> tuple[str, float]:
    cpu0, client0 = await server.cpu(), time.process_time()
    sent_wall = time.time()
    t0 = time.perf_counter()
    run_id = await wes.submit(client, server.api, workflow)
    final, seen_wall = await wes.wait_terminal(
        client, server.api, run_id, every=poll, limit=RUN_LIMIT
    )
    elapsed = time.perf_counter() - t0
    client_cpu = time.process_time() - client0
    use = cpu0.until(await server.cpu())
    if final != "COMPLETE":
        raise RuntimeError(f"run {run_id} ended {final}; see {server.runs_dir / run_id}")
    if samples is not None:
        times = await wes.state_times(server.engine, run_id)
        running = times["RUNNING"].timestamp()
        complete = times["COMPLETE"].timestamp()
        exited = (server.runs_dir / run_id / "exit_code").stat().st_mtime
        samples.start.append(running - sent_wall)
        samples.engine.append(exited - running)
        samples.finish.append(complete - exited)
        samples.observe.append(seen_wall - complete)
        samples.server_cpu.append(use.server)
        samples.engine_cpu.append(use.engines)
        if use.db is not None:
            samples.db_cpu.append(use.db)
        samples.client_cpu.append(client_cpu)
    return run_id, elapsed


async def measure(server: Server, *, reps: int, time_limit: float, poll: float = POLL) -> list[Row]:
    workflow = wes.Workflow.wordcount()
    s = E2ESamples()
    deadline = time.monotonic() + time_limit
    with tempfile.TemporaryDirectory(prefix="spindle-bench-cwl-") as tmp:
        outdirs: Iterator[Path] = (Path(tmp) / f"out{i}" for i in range(10_000))
        async with httpx.AsyncClient(timeout=30.0) as client:
            await run_direct(next(outdirs))
            warm_id, _ = await run_spindle(client, server, workflow, None, poll)
            await run_polled(client, server, warm_id, next(outdirs), poll)
            for i in range(reps):
                if time.monotonic() > deadline:
                    log(f"e2e: time limit reached after {i} of {reps} rounds")
                    break
                order = ("direct", "spindle", "polled")
                for what in order if i % 2 == 0 else order[::-1]:
                    if what == "direct":
                        wall, cpu = await run_direct(next(outdirs))
                        s.direct.append(wall)
                        s.direct_cpu.append(cpu)
                    elif what == "spindle":
                        run = await run_spindle(client, server, workflow, s, poll)
                        s.spindle.append(run[1])
                    else:
                        s.polled.append(
                            await run_polled(client, server, warm_id, next(outdirs), poll)
                        )
    db = server.db.kind
    direct, through, polled = median(s.direct), median(s.spindle), median(s.polled)
    ratio = through / direct
    verdict = "met" if ratio <= TARGET_RATIO else "MISSED"
    pairs = sorted(a / b for a, b in zip(s.spindle, s.direct, strict=True))
    db_cpu = median(s.db_cpu) if s.db_cpu else None
    own = [a + b + c for a, b, c in zip(s.start, s.finish, s.observe, strict=True)]
    one: tuple[int, ...] = ()  # medians only: five samples have no meaningful tail
    return [
        Row.of(
            db,
            "e2e",
            "cwltool alone",
            s.direct,
            tails=one,
            unit="s",
            note=f"cwltool CPU {median(s.direct_cpu):.2f} s",
        ),
        Row.of(
            db,
            "e2e",
            "Spindle POST → COMPLETE seen",
            s.spindle,
            tails=one,
            unit="s",
            cpu=median(s.server_cpu),
            db_cpu=db_cpu,
            note=(
                f"ratio {ratio:.3f} (+{(through - direct) * 1000:.0f} ms), target ≤ "
                f"{TARGET_RATIO:.2f}: {verdict}; pairs {pairs[0]:.2f}-{pairs[-1]:.2f}; "
                f"client CPU {median(s.client_cpu) * 1000:.0f} ms"
            ),
        ),
        Row.of(
            db,
            "e2e",
            f"cwltool alone, status polled {poll * 1000:g} ms",
            s.polled,
            tails=one,
            unit="s",
            note=f"ratio to cwltool alone {polled / direct:.3f}",
        ),
        Row.of(
            db,
            "e2e",
            "Spindle's own path (start+finish+seen)",
            own,
            tails=one,
            note=f"{median(own) / direct:.1%} of cwltool alone; the rest is the engine's run",
        ),
        Row.of(db, "e2e", "· POST → RUNNING event", s.start, tails=one),
        Row.of(
            db,
            "e2e",
            "· RUNNING → exit_code (engine)",
            s.engine,
            tails=one,
            note=f"engine CPU {median(s.engine_cpu):.2f} s",
        ),
        Row.of(db, "e2e", "· exit_code → COMPLETE event", s.finish, tails=one),
        Row.of(db, "e2e", "· COMPLETE event → client sees it", s.observe, tails=one),
    ]
