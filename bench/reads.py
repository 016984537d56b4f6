"""Read latency and throughput at a given number of stored runs.

The table is filled by bulk-inserting finished runs straight into ``runs`` (SQLAlchemy Core,
many rows per statement), so the embedded worker has nothing to claim. Each figure is a
bounded batch of GETs from an ``httpx.AsyncClient`` with a fixed number of requests in
flight on keep-alive connections; a latency is one request's time as the client sees it
(send → whole body read), and req/s is the batch's count over its wall time.

* ``GET /runs/{id}/status`` over ids drawn at random from the whole table;
* ``GET /runs?page_size=100``: the first page;
* deep pages: the listing is first walked from the first page to the last by following
  ``next_page_token`` (itself reported, one request at a time), then the pages from the middle
  to the end are requested again through their tokens.
"""

from __future__ import annotations

import asyncio
import itertools
import random
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote

import httpx
from sqlalchemy import func, insert, select, text
from sqlalchemy.ext.asyncio import AsyncEngine

from bench.log import log
from bench.server import Server
from bench.stats import Row
from spindle.db.migrate import upgrade
from spindle.db.tables import LOCAL_USER, runs
from spindle.runs.users import get_user_by_name

PAGE_SIZE = 100
#: Requests per figure before the measured ones (connections, caches).
WARMUP = 100
#: Finished states of the filled runs, with their shares.
STATES = (("COMPLETE", 70), ("EXECUTOR_ERROR", 15), ("CANCELED", 10), ("SYSTEM_ERROR", 5))


def _fake_run(i: int, at: datetime, state: str, rundir: str, owner: int) -> dict[str, Any]:
    """A finished CWL run shaped like the ones Spindle stores (same JSON sizes roughly)."""
    run_id = str(uuid.uuid4())
    start = at + timedelta(seconds=1)
    end = start + timedelta(seconds=2 + i % 50)
    return {
        "id": run_id,
        "state": state,
        "workflow_type": "CWL",
        "workflow_type_version": "v1.2",
        "workflow_url": "workflow.cwl",
        "workflow_engine": None,
        "workflow_engine_version": None,
        "workflow_params": {"text": {"class": "File", "location": "poem.txt"}},
        "workflow_engine_parameters": {},
        "tags": {"bench": "fill", "project": f"p{i % 17}"},
        "engine": "cwltool",
        "compute_env": "local",
        "submitted_at": at,
        "updated_at": end,
        "start_time": start,
        "end_time": end,
        "exit_code": 0 if state == "COMPLETE" else 1,
        "cmd": [
            "/opt/engines/cwltool/bin/cwltool",
            "--no-container",
            "--disable-color",
            "--timestamps",
            "--outdir",
            f"{rundir}/{run_id}/outputs",
            f"{rundir}/{run_id}/attachments/workflow.cwl",
            f"{rundir}/{run_id}/params.json",
        ],
        "system_logs": [] if state == "COMPLETE" else ["the engine exited with 1"],
        "outputs": {
            "counts": {
                "class": "File",
                "location": "run:outputs/counts.txt",
                "basename": "counts.txt",
                "size": 12,
                "checksum": "sha1$0123456789abcdef0123456789abcdef01234567",
            }
        },
        "progress": {"done": 2, "total": 2, "current": []},
        "handle": None,
        "worker_id": None,
        "lease_expires_at": None,
        "owner_id": owner,
    }


async def fill(engine: AsyncEngine, total: int, rundir: str, *, chunk: int = 5000) -> int:
    """Insert finished runs until the table holds ``total``; returns how many were added."""
    await upgrade(engine)
    async with engine.connect() as conn:
        existing = int((await conn.execute(select(func.count()).select_from(runs))).scalar_one())
        local = await get_user_by_name(conn, LOCAL_USER)
    assert local is not None
    need = max(0, total - existing)
    weights = [w for _, w in STATES]
    names = [s for s, _ in STATES]
    rng = random.Random(total)  # noqa: S311 (reproducible sample data, not secrets)
    base = datetime.now(UTC) - timedelta(seconds=need + 60)
    for start in range(0, need, chunk):
        rows = [
            _fake_run(
                i, base + timedelta(seconds=i), rng.choices(names, weights)[0], rundir, local.id
            )
            for i in range(start, min(need, start + chunk))
        ]
        async with engine.begin() as conn:
            await conn.execute(insert(runs), rows)
    if engine.dialect.name == "postgresql":
        # what autovacuum would soon do after a bulk load: give the planner row counts
        async with engine.begin() as conn:
            await conn.execute(text("ANALYZE runs"))
    return need


def per(total: float | None, count: int) -> float | None:
    return total / count if total is not None and count else None


@dataclass
class Batch:
    latencies: list[float]
    elapsed: float
    errors: int

    @property
    def rate(self) -> float:
        return len(self.latencies) / self.elapsed if self.elapsed > 0 else float("nan")


async def batch(
    client: httpx.AsyncClient,
    urls: Sequence[str],
    *,
    total: int,
    concurrency: int,
    time_limit: float,
) -> Batch:
    """``total`` GETs over ``urls`` (cycled), ``concurrency`` at a time, stopping early at
    ``time_limit`` seconds."""
    counter = itertools.count()
    latencies: list[float] = []
    errors = 0
    deadline = time.perf_counter() + time_limit

    async def worker() -> None:
        nonlocal errors
        while True:
            i = next(counter)
            if i >= total or time.perf_counter() > deadline:
                return
            t0 = time.perf_counter()
            r = await client.get(urls[i % len(urls)])
            elapsed = time.perf_counter() - t0
            if r.status_code == 200:
                latencies.append(elapsed)
            else:
                errors += 1

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return Batch(latencies, time.perf_counter() - started, errors)


@dataclass
class Walk:
    tokens: list[str]
    latencies: list[float]
    runs_seen: int
    elapsed: float
    complete: bool


async def walk(client: httpx.AsyncClient, api: str, *, max_pages: int, time_limit: float) -> Walk:
    """Follow ``next_page_token`` from the first page, one request at a time. ``tokens[k]``
    is the token that fetches page ``k + 2`` (the first page needs none)."""
    tokens: list[str] = []
    latencies: list[float] = []
    seen = 0
    token = ""
    deadline = time.perf_counter() + time_limit
    started = time.perf_counter()
    for _ in range(max_pages):
        if time.perf_counter() > deadline:
            break
        url = f"{api}/runs?page_size={PAGE_SIZE}" + (f"&page_token={quote(token)}" if token else "")
        t0 = time.perf_counter()
        r = await client.get(url)
        latencies.append(time.perf_counter() - t0)
        r.raise_for_status()
        body = r.json()
        seen += len(body["runs"])
        token = body.get("next_page_token") or ""
        if not token:
            return Walk(tokens, latencies, seen, time.perf_counter() - started, True)
        tokens.append(token)
    return Walk(tokens, latencies, seen, time.perf_counter() - started, False)


async def measure(
    server: Server,
    *,
    size: int,
    requests: int,
    concurrency: int,
    time_limit: float,
) -> list[Row]:
    t0 = time.perf_counter()
    added = await fill(server.engine, size, str(server.runs_dir))
    log(f"reads: filled {added:,} runs in {time.perf_counter() - t0:.1f} s (table: {size:,})")
    async with server.engine.connect() as conn:
        ids = list((await conn.execute(select(runs.c.id))).scalars())
    rng = random.Random(size)  # noqa: S311 (reproducible sample of ids, not secrets)
    api = server.api
    status_urls = [f"{api}/runs/{i}/status" for i in rng.sample(ids, min(len(ids), requests))]
    first_page = [f"{api}/runs?page_size={PAGE_SIZE}"]
    label = f"reads {size // 1000}k" if size >= 1000 else f"reads {size}"
    db = server.db.kind
    rows: list[Row] = []
    time_limit /= 4  # four figures share the budget
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(timeout=30.0, limits=limits) as client:
        for measure_name, urls in (
            ("GET /runs/{id}/status", status_urls),
            ("GET /runs first page", first_page),
        ):
            await batch(client, urls, total=WARMUP, concurrency=concurrency, time_limit=time_limit)
            cpu0 = await server.cpu()
            b = await batch(
                client, urls, total=requests, concurrency=concurrency, time_limit=time_limit
            )
            use = cpu0.until(await server.cpu())
            note = f"{b.errors} errors" if b.errors else ""
            rows.append(
                Row.of(
                    db,
                    label,
                    measure_name,
                    b.latencies,
                    rate=b.rate,
                    cpu=per(use.server, len(b.latencies)),
                    db_cpu=per(use.db, len(b.latencies)),
                    note=note,
                )
            )
        pages = -(-len(ids) // PAGE_SIZE)
        cpu0 = await server.cpu()
        w = await walk(client, api, max_pages=pages + 1, time_limit=time_limit)
        walk_use = cpu0.until(await server.cpu())
        walk_note = f"{w.runs_seen:,} runs in {len(w.latencies)} pages, {w.elapsed:.1f} s"
        if not w.complete or w.runs_seen != len(ids):
            walk_note += f" (INCOMPLETE: table has {len(ids):,})"
        rows.append(
            Row.of(
                db,
                label,
                "walk all pages (1 at a time)",
                w.latencies,
                rate=len(w.latencies) / w.elapsed if w.elapsed else None,
                cpu=per(walk_use.server, len(w.latencies)),
                db_cpu=per(walk_use.db, len(w.latencies)),
                note=walk_note,
            )
        )
        deep_tokens = w.tokens[len(w.tokens) // 2 :] or w.tokens[-1:]
        if deep_tokens:
            deep_urls = [
                f"{api}/runs?page_size={PAGE_SIZE}&page_token={quote(t)}" for t in deep_tokens
            ]
            first_deep = len(w.tokens) // 2 + 2
            await batch(
                client, deep_urls, total=WARMUP, concurrency=concurrency, time_limit=time_limit
            )
            cpu0 = await server.cpu()
            b = await batch(
                client, deep_urls, total=requests, concurrency=concurrency, time_limit=time_limit
            )
            use = cpu0.until(await server.cpu())
            note = f"pages {first_deep}-{len(w.tokens) + 1} of {len(w.tokens) + 1}"
            if b.errors:
                note += f", {b.errors} errors"
            rows.append(
                Row.of(
                    db,
                    label,
                    "GET /runs deep page (token)",
                    b.latencies,
                    rate=b.rate,
                    cpu=per(use.server, len(b.latencies)),
                    db_cpu=per(use.db, len(b.latencies)),
                    note=note,
                )
            )
    return rows
