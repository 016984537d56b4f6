"""``python -m bench``: run the benchmarks and print one table (see docs/benchmarks.md)."""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import os
import platform
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from bench import adoption, dispatch, e2e, engines, idle, pages, reads, startup
from bench.log import log
from bench.server import (
    DEFAULT_PG_ADMIN_URL,
    DbKind,
    Server,
    database,
    remove_tree,
    running_server,
)
from bench.stats import Row, render_markdown, render_text

BENCHES = ("dispatch", "reads", "e2e", "pages", "startup", "adoption", "engines", "idle")
#: Benchmarks that run once, not per database.
ONCE = {"engines", "idle"}
DATABASES: tuple[DbKind, ...] = ("sqlite", "postgresql")


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m bench",
        description="Measure Spindle against a real server: dispatch latency, read latency "
        "and throughput, end-to-end overhead over plain cwltool, web UI page loads.",
    )
    p.add_argument(
        "--quick",
        action="store_true",
        help="fewer iterations: 10 dispatches, reads at 1k and 10k runs with 500 requests, "
        "3 end-to-end rounds",
    )
    p.add_argument("--db", choices=(*DATABASES, "all"), default="all")
    p.add_argument(
        "--only",
        choices=BENCHES,
        action="append",
        help="run only this benchmark (repeat for several)",
    )
    p.add_argument("--dispatch-n", type=int, help="submissions for dispatch (default 30)")
    p.add_argument("--sizes", help="comma-separated table sizes for reads (default 1000,100000)")
    p.add_argument("--requests", type=int, help="requests per read figure (default 2000)")
    p.add_argument("--concurrency", type=int, default=8, help="requests in flight (default 8)")
    p.add_argument(
        "--page-requests",
        type=int,
        help="page loads per web UI figure, one at a time (default 200)",
    )
    p.add_argument("--idle-runs", type=int, default=1000, help="idle runs tracked (default 1000)")
    p.add_argument(
        "--idle-window", type=float, default=60.0, help="seconds idle CPU is measured (default 60)"
    )
    p.add_argument(
        "--idle-backend",
        choices=("fake", "local"),
        default="fake",
        help="fake: the managed fake (no process per run); local: a sleeping shell per run",
    )
    p.add_argument("--e2e-reps", type=int, help="end-to-end rounds (default 5)")
    p.add_argument("--startup-reps", type=int, help="start-up rounds (default 5; --quick: 2)")
    p.add_argument("--adoption-reps", type=int, help="adoption rounds (default 5; --quick: 2)")
    p.add_argument(
        "--adoption-queue",
        type=int,
        default=30,
        help="runs waiting in the queue while a worker is killed (default 30)",
    )
    p.add_argument(
        "--e2e-poll",
        type=float,
        default=e2e.POLL,
        help="seconds between status requests while following a run (default 0.02)",
    )
    p.add_argument(
        "--time-limit",
        type=float,
        default=240.0,
        help="seconds one benchmark (reads: one table size) may take per database before it "
        "stops early (default 240)",
    )
    p.add_argument(
        "--pg-admin-url",
        default=os.environ.get("SPINDLE_BENCH_PG_ADMIN_URL", DEFAULT_PG_ADMIN_URL),
        help="PostgreSQL URL used to create and drop the benchmark's database",
    )
    p.add_argument("--json", type=Path, help="also write the rows as JSON here")
    p.add_argument("--markdown", action="store_true", help="print the table as Markdown")
    p.add_argument("--keep", action="store_true", help="keep the data folders and logs")
    args = p.parse_args(argv)
    quick = args.quick
    args.dispatch_n = args.dispatch_n or (10 if quick else 30)
    args.startup_reps = args.startup_reps or (2 if quick else 5)
    args.adoption_reps = args.adoption_reps or (2 if quick else 5)
    args.requests = args.requests or (500 if quick else 2000)
    args.page_requests = args.page_requests or (50 if quick else 200)
    args.e2e_reps = args.e2e_reps or (3 if quick else 5)
    sizes = args.sizes or ("1000,10000" if quick else "1000,100000")
    args.sizes = sorted(int(s) for s in sizes.split(",") if s.strip())
    args.only = args.only or list(BENCHES)
    args.dbs = list(DATABASES) if args.db == "all" else [args.db]
    return args


def machine() -> str:
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    return (
        f"{platform.node()} · {os.cpu_count()} CPUs · Python {platform.python_version()} · "
        f"{time.strftime('%Y-%m-%d %H:%M:%S %Z')} · load average {load}"
    )


async def run_db(kind: DbKind, root: Path, args: argparse.Namespace) -> list[Row]:
    rows: list[Row] = []
    if "startup" in args.only:
        log(f"{kind}: start-up, {args.startup_reps} rounds")
        rows += await startup.measure(kind, root, args.pg_admin_url, reps=args.startup_reps)
    if "adoption" in args.only:
        log(f"{kind}: adoption, {args.adoption_reps} rounds, {args.adoption_queue} queued")
        rows += await _adoption(kind, root, args)
    if not set(args.only) - {"startup", "adoption"} - ONCE:
        return rows
    async with running_server(kind, root, args.pg_admin_url) as server:
        log(f"{kind}: server up at {server.url} (data {server.data_dir})")
        if "dispatch" in args.only:
            log(f"{kind}: dispatch, {args.dispatch_n} submissions")
            rows += await dispatch.measure(server, n=args.dispatch_n, time_limit=args.time_limit)
        if "e2e" in args.only:
            log(f"{kind}: end-to-end, {args.e2e_reps} rounds")
            rows += await e2e.measure(
                server, reps=args.e2e_reps, time_limit=args.time_limit, poll=args.e2e_poll
            )
        if "reads" in args.only:
            for size in args.sizes:
                log(f"{kind}: reads at {size:,} runs, {args.requests} requests per figure")
                rows += await reads.measure(
                    server,
                    size=size,
                    requests=args.requests,
                    concurrency=args.concurrency,
                    time_limit=args.time_limit,
                )
        if "pages" in args.only:
            for size in args.sizes:
                log(f"{kind}: web UI pages at {size:,} runs, {args.page_requests} loads per figure")
                rows += await pages.measure(
                    server, size=size, requests=args.page_requests, time_limit=args.time_limit
                )
    return rows


async def _adoption(kind: DbKind, root: Path, args: argparse.Namespace) -> list[Row]:
    """``serve --no-worker`` on a fresh folder and database; the benchmark starts the
    workers (see ``bench.adoption``)."""
    data_dir = root / kind / "adoption"
    data_dir.mkdir(parents=True, exist_ok=True)
    async with database(kind, data_dir, args.pg_admin_url) as db:
        server = Server(data_dir, db, root / kind / "adoption-api.log")
        server.command = ["serve", "--no-worker"]
        server.settings.update(adoption.settings())
        try:
            await server.start()
            return await adoption.measure(
                server,
                reps=args.adoption_reps,
                queue=args.adoption_queue,
                time_limit=args.time_limit,
            )
        finally:
            await server.stop()
            await server.engine.dispose()


async def main(args: argparse.Namespace) -> int:
    root = Path(tempfile.mkdtemp(prefix="spindle-bench-"))
    header = machine()
    log(header)
    started = time.monotonic()
    rows: list[Row] = []
    try:
        if "engines" in args.only:
            log(f"engines: --version of each engine environment, {args.startup_reps} rounds")
            rows += await engines.measure(reps=args.startup_reps)
        if "idle" in args.only:
            log(f"idle: {args.idle_runs} runs on the {args.idle_backend} backend")
            rows += await idle.measure(
                runs=args.idle_runs,
                window=args.idle_window,
                backend=args.idle_backend,
                time_limit=max(args.time_limit, 600.0),
            )
        for kind in [] if set(args.only) <= ONCE else args.dbs:
            try:
                rows += await run_db(kind, root, args)
            except Exception as exc:  # report it and go on with the other database
                log(f"{kind}: FAILED: {exc!r}")
                rows.append(Row(db=kind, bench="-", measure="FAILED", n=0, note=repr(exc)[:200]))
    finally:
        if args.keep:
            log(f"kept {root}")
        else:
            remove_tree(root)
    took = time.monotonic() - started
    print(f"Spindle benchmark — {header}")
    print(
        f"concurrency {args.concurrency} · {args.requests} requests per read figure · "
        f"{args.dispatch_n} dispatches · {args.e2e_reps} end-to-end rounds · "
        f"{args.page_requests} loads per page figure · took {took:.0f} s"
    )
    print()
    print(render_markdown(rows) if args.markdown else render_text(rows))
    if args.json:
        args.json.write_text(
            json.dumps(
                {"machine": header, "seconds": took, "rows": [dataclasses.asdict(r) for r in rows]},
                indent=2,
            )
            + "\n"
        )
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main(parse_args())))
