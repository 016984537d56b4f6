"""Web UI page loads at a given number of stored runs.

The runs are filled as ``reads`` fills them (finished CWL runs bulk-inserted straight into
``runs``), and each run also gets the four state events and two tasks a finished run has,
so the run page's timeline and tasks table read what they would read in real use; the runs
whose pages are loaded get small stdout/stderr files. Each figure is a batch of GETs of one
page, one at a time (a person loading pages, not a crowd): latency is one page as the client
sees it (send → whole HTML read), the server's CPU per page is measured from /proc.

* ``GET /``: the dashboard (counts by state, the last 24 h, recent failures);
* ``GET /runs``: the runs table's first page (50 runs), a page deep inside it, filtered
  by state (an index), by a tag (read from each row's JSON until 50 match), by a tag no run
  has and by a free-text search matching one run (both read every row), sorted by workflow
  (no index: a top-N sort over every row);
* ``GET /runs/{id}``: run pages of runs drawn at random, and the fragment a run page
  refreshes itself with.

Every figure is taken twice, signed in (``auth = "basic"``, the session cookie of the sign-in
form, as a browser sends it): as an admin, who sees every run, and as a user who owns one
run in ten (the runs are shared out among ten users), whose every query is limited to their
own runs.
"""

from __future__ import annotations

import random
import time
from typing import Any
from urllib.parse import quote

import httpx
from sqlalchemy import insert, select, text, update
from sqlalchemy.ext.asyncio import AsyncEngine

from bench.log import log
from bench.reads import batch, fill, per
from bench.server import Server
from bench.stats import Row
from spindle.auth.accounts import AccountService
from spindle.db.tables import events, run_texts, runs, tasks, users
from spindle.domain import RunRequest
from spindle.paging import encode_cursor
from spindle.runs.store import search_text

#: Page loads per figure before the measured ones (connections, caches).
WARMUP = 20
#: Runs whose pages are loaded (drawn at random).
SAMPLE = 200
#: Users the runs are shared out among (run ``seq`` goes to user ``seq % USERS``).
USERS = 10
#: Who the pages are loaded as: an admin, and one of the users.
ADMIN, USER = "root", "user0"
PASSWORD = "bench password"  # noqa: S105 (a throwaway user of a throwaway database)


def _events_and_tasks(run: Any, rundir: str) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    at, start, end = run.submitted_at, run.start_time, run.end_time
    evs = [
        {"run_id": run.id, "at": at, "kind": "state", "data": {"from": None, "to": "QUEUED"}},
        {
            "run_id": run.id,
            "at": at,
            "kind": "state",
            "data": {"to": "INITIALIZING", "worker": "w1"},
        },
        {"run_id": run.id, "at": start, "kind": "state", "data": {"to": "RUNNING"}},
        {"run_id": run.id, "at": end, "kind": "state", "data": {"to": run.state}},
    ]
    middle = start + (end - start) / 2
    ts = [
        {
            "run_id": run.id,
            "id": str(n),
            "ordinal": n,
            "name": name,
            "state": "COMPLETE",
            "cmd": ["python3", f"{rundir}/{run.id}/attachments/tools/{name}.py"],
            "start_time": t0,
            "end_time": t1,
            "exit_code": 0,
            "stdout": {"path": "logs/stdout", "start": 100 * n, "end": 100 * n + 100},
            "stderr": {"path": "logs/stderr", "start": 300 * n, "end": 300 * n + 300},
            "system_logs": [],
        }
        for n, (name, t0, t1) in enumerate((("shout", start, middle), ("count", middle, end)))
    ]
    return evs, ts


async def fill_history(engine: AsyncEngine, rundir: str, *, chunk: int = 2000) -> int:
    """Give every run without events its events, tasks and searchable text (what the service
    writes with a run, which ``reads.fill`` leaves out); returns how many runs got them."""
    bare = ~select(events.c.id).where(events.c.run_id == runs.c.id).exists()
    async with engine.connect() as conn:
        rows = (
            await conn.execute(
                select(
                    runs.c.seq,
                    runs.c.id,
                    runs.c.state,
                    runs.c.workflow_url,
                    runs.c.tags,
                    runs.c.submitted_at,
                    runs.c.start_time,
                    runs.c.end_time,
                ).where(bare)
            )
        ).all()
    for start in range(0, len(rows), chunk):
        evs: list[dict[str, Any]] = []
        ts: list[dict[str, Any]] = []
        texts: list[dict[str, Any]] = []
        for run in rows[start : start + chunk]:
            e, t = _events_and_tasks(run, rundir)
            evs += e
            ts += t
            request = RunRequest("CWL", "v1.2", run.workflow_url, tags=run.tags)
            texts.append({"seq": run.seq, "text": search_text(run.id, request)})
        async with engine.begin() as conn:
            await conn.execute(insert(events), evs)
            await conn.execute(insert(tasks), ts)
            await conn.execute(insert(run_texts), texts)
    if rows and engine.dialect.name == "postgresql":
        # what autovacuum soon does after a bulk load: statistics and the visibility map
        # (which lets counts read indexes alone)
        async with engine.connect() as conn:
            conn = await conn.execution_options(isolation_level="AUTOCOMMIT")
            for table in ("runs", "events", "tasks", "run_texts"):
                await conn.execute(text(f"VACUUM ANALYZE {table}"))
    return len(rows)


def _write_logs(server: Server, run_ids: list[str]) -> None:
    line = "[2026-11-30 09:00:00] INFO [job count] completed success\n"
    for run_id in run_ids:
        logs = server.runs_dir / run_id / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        (logs / "stdout").write_text("counting\n" * 40)
        (logs / "stderr").write_text(line * 200)  # ~11 KiB


async def share_out(server: Server) -> None:
    """Make the users (once) and give each one run in ``USERS``, by ``seq``."""
    accounts = AccountService(server.engine)
    async with server.engine.connect() as conn:
        have = set((await conn.execute(select(users.c.name))).scalars())
    if ADMIN not in have:
        await accounts.add_user(ADMIN, password=PASSWORD, admin=True)
    for n in range(USERS):
        if f"user{n}" not in have:
            await accounts.add_user(f"user{n}", password=PASSWORD)
    async with server.engine.begin() as conn:
        ids = dict((await conn.execute(select(users.c.name, users.c.id))).all())
        for n in range(USERS):
            await conn.execute(
                update(runs).where(runs.c.seq % USERS == n).values(owner_id=ids[f"user{n}"])
            )
    if server.engine.dialect.name == "postgresql":
        async with server.engine.connect() as conn:
            conn = await conn.execution_options(isolation_level="AUTOCOMMIT")
            await conn.execute(text("VACUUM ANALYZE runs"))


async def signed_in(server: Server, name: str) -> httpx.AsyncClient:
    """A client holding ``name``'s session cookie, from the sign-in form."""
    client = httpx.AsyncClient(base_url=server.url, timeout=30.0)
    form = await client.get("/login")
    token = form.text.split('name="csrf_token" value="', 1)[1].split('"', 1)[0]
    r = await client.post(
        "/login",
        data={"csrf_token": token, "name": name, "password": PASSWORD, "next": "/"},
        headers={"Origin": server.url},
    )
    if r.status_code != 303:
        raise RuntimeError(f"signing in as {name} answered {r.status_code}: {r.text[:300]}")
    return client


def figures(base: str, ids_seqs: list[Any], sample: list[Any]) -> list[tuple[str, list[str], str]]:
    one = sample[0].id
    seqs = sorted(s for _, s in ids_seqs)
    deep = [
        encode_cursor("runs:submitted:desc", [seqs[len(seqs) // 4 + k]]) for k in range(0, 50, 5)
    ]
    return [
        ("GET / (dashboard)", [f"{base}/"], ""),
        ("GET /runs first page", [f"{base}/runs"], "50 runs a page"),
        ("GET /runs deep page", [f"{base}/runs?page={quote(t)}" for t in deep], "a quarter in"),
        ("GET /runs?state=SYSTEM_ERROR", [f"{base}/runs?state=SYSTEM_ERROR"], "5 % of the runs"),
        ("GET /runs?tag=project=p3", [f"{base}/runs?tag=project%3Dp3"], "1 run in 17"),
        ("GET /runs?tag=nobody=has", [f"{base}/runs?tag=nobody%3Dhas"], "no match: every row"),
        ("GET /runs?q=<run id>", [f"{base}/runs?q={one[:13]}"], "one match: every row"),
        ("GET /runs?sort=workflow", [f"{base}/runs?sort=workflow&order=asc"], "no index"),
        ("GET /runs/{id} (run page)", [f"{base}/runs/{r.id}" for r in sample], "2 tasks, 4 events"),
        ("GET /runs/{id}/live (fragment)", [f"{base}/runs/{r.id}/live" for r in sample], ""),
    ]


async def measure(server: Server, *, size: int, requests: int, time_limit: float) -> list[Row]:
    t0 = time.perf_counter()
    added = await fill(server.engine, size, str(server.runs_dir))
    history = await fill_history(server.engine, str(server.runs_dir))
    await share_out(server)
    log(
        f"pages: filled {added:,} runs and the history of {history:,} in "
        f"{time.perf_counter() - t0:.1f} s (table: {size:,}, {USERS} users)"
    )
    if server.settings.get("SPINDLE_AUTH") != "basic":
        await server.stop()
        server.settings["SPINDLE_AUTH"] = "basic"
        await server.start()
    async with server.engine.connect() as conn:
        ids_seqs = (await conn.execute(select(runs.c.id, runs.c.seq))).all()
        user_id = (await conn.execute(select(users.c.id).where(users.c.name == USER))).scalar_one()
        own = (
            await conn.execute(select(runs.c.id, runs.c.seq).where(runs.c.owner_id == user_id))
        ).all()
    rng = random.Random(size)  # noqa: S311 (reproducible sample, not secrets)
    sample = rng.sample(ids_seqs, min(SAMPLE, len(ids_seqs)))
    own_sample = rng.sample(own, min(SAMPLE, len(own)))
    _write_logs(server, [r.id for r in sample + own_sample])
    size_label = f"{size // 1000}k" if size >= 1000 else str(size)
    who = [
        (ADMIN, f"pages {size_label}, admin", figures(server.url, ids_seqs, sample)),
        (USER, f"pages {size_label}, user", figures(server.url, own, own_sample)),
    ]
    rows: list[Row] = []
    per_figure = time_limit / sum(len(f) for _, _, f in who)
    for name, label, page_figures in who:
        client = await signed_in(server, name)
        try:
            for measure_name, urls, note in page_figures:
                check = await client.get(urls[0])
                if check.status_code != 200 or not (
                    "<h1>" in check.text or "run-state" in check.text
                ):
                    raise RuntimeError(
                        f"{urls[0]} answered {check.status_code}: {check.text[:300]}"
                    )
                await batch(client, urls, total=WARMUP, concurrency=1, time_limit=per_figure)
                cpu0 = await server.cpu()
                b = await batch(client, urls, total=requests, concurrency=1, time_limit=per_figure)
                use = cpu0.until(await server.cpu())
                if b.errors:
                    note = f"{note}, {b.errors} errors".lstrip(", ")
                rows.append(
                    Row.of(
                        server.db.kind,
                        label,
                        measure_name,
                        b.latencies,
                        rate=b.rate,
                        cpu=per(use.server, len(b.latencies)),
                        db_cpu=per(use.db, len(b.latencies)),
                        note=note,
                    )
                )
        finally:
            await client.aclose()
    return rows
