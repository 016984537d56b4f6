"""A worker tracking many idle runs: its resident memory and the CPU it spends while nothing
happens. The runs are the testing fakes' (``spindle.testing``): on the ``fake`` compute
environment a run is a record the fake managed service answers about (no process at all),
so what is measured is Spindle's own cost per tracked run; on ``local`` each run is the fake
engine's shell loop sleeping, so the worker also watches that many processes.

The server (API and embedded worker) runs in this process with the fakes registered; the
figures are this process's, measured over a window in which no request is made."""

from __future__ import annotations

import asyncio
import json
import resource
import tempfile
import time
from pathlib import Path
from typing import Literal

import httpx

from bench.log import log
from bench.server import remove_tree
from bench.stats import Row

WES = "/ga4gh/wes/v1"
Backend = Literal["fake", "local"]


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _form(env: str, seconds: float) -> dict[str, object]:
    return {
        "data": {
            "workflow_type": "FAKE",
            "workflow_type_version": "1",
            "workflow_url": "workflow.fake",
            "workflow_params": json.dumps({"sleep": seconds, "tasks": 1}),
            "workflow_engine_parameters": json.dumps({"compute_env": env}),
        },
        "files": [("workflow_attachment", ("workflow.fake", b"a fake workflow\n"))],
    }


async def _count(client: httpx.AsyncClient, state: str) -> int:
    r = await client.get(
        f"{WES}/runs", params={"state": state, "include_total": "true", "page_size": 1}
    )
    r.raise_for_status()
    total: int = r.json()["total_count"]
    return total


async def measure(*, runs: int, window: float, backend: Backend, time_limit: float) -> list[Row]:
    # Imported here: the other benchmarks drive a server process and need none of this.
    from spindle.app import create_app
    from spindle.config import Settings
    from spindle.engines.registry import Catalog
    from spindle.testing import FakeEngine, plugins

    root = Path(tempfile.mkdtemp(prefix="spindle-bench-idle-"))
    try:
        with plugins():
            settings = Settings(
                data_dir=root / "data",
                max_concurrent_runs=runs,
                compute_envs={"fake": {"type": "fake", "description": "the testing fake"}},
                allowed_hosts=["spindle.bench"],
            )
            catalog = Catalog()
            fake = FakeEngine()
            catalog.add(fake, await fake.detect())
            app = create_app(settings, catalog=catalog)
            async with app.router.lifespan_context(app):
                transport = httpx.ASGITransport(app=app)
                async with httpx.AsyncClient(
                    transport=transport, base_url="http://spindle.bench", timeout=60
                ) as client:
                    return await _measure(client, runs, window, backend, time_limit)
    finally:
        remove_tree(root)


async def _measure(
    client: httpx.AsyncClient, runs: int, window: float, backend: Backend, time_limit: float
) -> list[Row]:
    deadline = time.monotonic() + time_limit
    rss_before = _rss_mb()
    for i in range(runs):
        r = await client.post(f"{WES}/runs", **_form(backend, 24 * 3600))  # type: ignore[arg-type]
        r.raise_for_status()
        if (i + 1) % 200 == 0:
            log(f"idle/{backend}: {i + 1} runs submitted")
    while (running := await _count(client, "RUNNING")) < runs:
        if time.monotonic() > deadline:
            raise TimeoutError(f"only {running} of {runs} runs RUNNING in {time_limit:.0f} s")
        await asyncio.sleep(1)
    log(f"idle/{backend}: {runs} runs RUNNING; measuring {window:.0f} s")
    await asyncio.sleep(min(5.0, window))  # let the last starts settle
    cpu0, wall0 = _cpu(), time.monotonic()
    await asyncio.sleep(window)
    cpu = _cpu() - cpu0
    wall = time.monotonic() - wall0
    rss = _rss_mb()
    share = 100.0 * cpu / wall
    log(f"idle/{backend}: cancelling {runs} runs")
    page = await client.get(f"{WES}/runs", params={"page_size": runs})
    for item in page.json()["runs"]:
        await client.post(f"{WES}/runs/{item['run_id']}/cancel")
    return [
        Row(
            db="sqlite",
            bench="idle",
            measure=f"{runs} idle runs tracked ({backend}): worker CPU",
            n=1,
            note=f"{share:.1f} % of one core over {wall:.0f} s (target < 10 %)",
        ),
        Row(
            db="sqlite",
            bench="idle",
            measure=f"{runs} idle runs tracked ({backend}): resident memory",
            n=1,
            note=f"{rss:.0f} MB ({rss_before:.0f} MB before the runs; target < 300 MB)",
        ),
    ]
