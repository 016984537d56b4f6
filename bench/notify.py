"""Notification benchmarks (docs/benchmarks.md, "Notifications"), in one process against a
real database and a real HTTP receiver on loopback:

* **latency**: a run's state change committed (QUEUED → CANCELED through the lifecycle,
  which writes the outbox row in the same transaction) → its signed webhook arriving at
  the receiver, with one dispatcher running as a worker runs it; p50/p95 over N changes
  made in the dispatcher's process (woken on commit) and on another engine (another
  process: found by polling), at two poll intervals.
* **throughput**: 1,000 webhook deliveries already due, sent by one dispatcher
  (``notify_concurrency`` at once): wall time from its start to the last arrival.

``python -m bench.notify [--db URL] [-n 50] [--deliveries 1000]``; default database: a
fresh SQLite file. A PostgreSQL or MariaDB URL must name an empty database it may migrate.
"""

from __future__ import annotations

import argparse
import asyncio
import platform
import random
import statistics
import tempfile
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from sqlalchemy import insert, select

from spindle.config import Settings
from spindle.db.engine import create_engine
from spindle.db.migrate import upgrade
from spindle.db.tables import LOCAL_USER, notify_deliveries, notify_subscriptions, users
from spindle.db.types import utcnow
from spindle.domain import RunRequest, State
from spindle.notify.dispatcher import Dispatcher
from spindle.notify.outbox import add_delivery
from spindle.notify.service import new_secret
from spindle.runs import lifecycle, store
from spindle.runs.wakeup import Wakeup


class Arrivals:
    def __init__(self) -> None:
        self.at: dict[str, float] = {}
        self.lock = threading.Lock()
        self.done = threading.Condition(self.lock)


def serve(arrivals: Arrivals) -> tuple[ThreadingHTTPServer, str]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, as real receivers do

        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("content-length", "0")))
            now = time.time()
            with arrivals.lock:
                arrivals.at.setdefault(self.headers.get("webhook-id", ""), now)
                arrivals.done.notify_all()
            self.send_response(204)
            self.send_header("content-length", "0")
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}/hook"


async def prepare(url: str, hook: str) -> tuple[Any, int, str]:
    db = create_engine(url)
    await upgrade(db)
    async with db.begin() as conn:
        owner = (
            await conn.execute(select(users.c.id).where(users.c.name == LOCAL_USER))
        ).scalar_one()
        sub = str(uuid.uuid4())
        await conn.execute(
            insert(notify_subscriptions).values(
                id=sub,
                owner_id=owner,
                channel="webhook",
                url=hook,
                secret=new_secret(),
                events=["run.canceled"],
                status="active",
                failures=0,
                created_at=utcnow(),
            )
        )
    return db, owner, sub


async def latency(
    settings: Settings, db: Any, owner: int, arrivals: Arrivals, n: int, writer: Any = None
) -> list[float]:
    """``writer``: the engine the state changes are made on (default ``db``, the
    dispatcher's: the same process; another engine stands for another process)."""
    writer = writer or db
    dispatcher = Dispatcher(settings, db)
    stop = asyncio.Event()
    loop = asyncio.create_task(dispatcher.run(stop))
    request = RunRequest("FAKE", "1", "workflow.fake")
    seconds: list[float] = []
    try:
        for _ in range(n):
            run_id = str(uuid.uuid4())
            async with writer.begin() as conn:
                await store.insert_run(
                    conn, run_id=run_id, request=request, engine="fake",
                    compute_env="local", owner_id=owner,
                )  # fmt: skip
            async with writer.begin() as conn:
                await lifecycle.request_cancel(conn, run_id, State.QUEUED, Wakeup())
            committed = time.time()
            async with db.connect() as conn:
                delivery_id = (
                    await conn.execute(
                        select(notify_deliveries.c.id).where(notify_deliveries.c.run_id == run_id)
                    )
                ).scalar_one()
            arrived = await asyncio.to_thread(wait_for, arrivals, {delivery_id}, 30)
            seconds.append(arrived[delivery_id] - committed)
            # the next change comes at a random moment of the dispatcher's poll cycle
            await asyncio.sleep(random.uniform(0, settings.notify_poll_interval))  # noqa: S311 (timing, not secrets)
    finally:
        stop.set()
        await loop
    return seconds


def wait_for(arrivals: Arrivals, ids: set[str], limit: float) -> dict[str, float]:
    deadline = time.monotonic() + limit
    with arrivals.lock:
        while not ids <= arrivals.at.keys():
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"{len(ids - arrivals.at.keys())} deliveries did not arrive")
            arrivals.done.wait(left)
        return {i: arrivals.at[i] for i in ids}


async def throughput(
    settings: Settings, db: Any, owner: int, sub: str, hook: str, arrivals: Arrivals, n: int
) -> float:
    async with db.begin() as conn:
        ids = {
            await add_delivery(
                conn,
                owner_id=owner,
                channel="webhook",
                target=hook,
                subscription_id=sub,
                payload={"type": "run.canceled", "timestamp": None, "data": {"n": i}},
                run_id=None,
                group_id=None,
                now=utcnow(),
            )
            for i in range(n)
        }
    dispatcher = Dispatcher(settings, db)
    stop = asyncio.Event()
    started = time.time()
    loop = asyncio.create_task(dispatcher.run(stop))
    try:
        arrived = await asyncio.to_thread(wait_for, arrivals, ids, 600)
    finally:
        stop.set()
        await loop
    return max(arrived.values()) - started


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


async def main() -> None:
    p = argparse.ArgumentParser(prog="python -m bench.notify")
    p.add_argument("--db", default="", help="database URL (default: a fresh SQLite file)")
    p.add_argument("-n", type=int, default=50, help="state changes timed for latency")
    p.add_argument("--deliveries", type=int, default=1000)
    args = p.parse_args()
    arrivals = Arrivals()
    server, hook = serve(arrivals)
    with tempfile.TemporaryDirectory() as tmp:
        url = args.db or f"sqlite+aiosqlite:///{Path(tmp) / 'spindle.db'}"
        db, owner, sub = await prepare(url, hook)
        base = {
            "data_dir": Path(tmp),
            "database_url": url,
            "notify_allowed_networks": ["127.0.0.0/8"],
        }
        print(
            f"machine: {platform.node()} {platform.machine()}, python {platform.python_version()}"
        )
        print(f"database: {db.dialect.name}")
        other = create_engine(url)  # stands for another process (the API, another worker)
        for label, writer, poll in (
            ("same process", None, 1.0),
            ("other process", other, 1.0),
            ("other process", other, 0.1),
        ):
            settings = Settings(**base, notify_poll_interval=poll)
            s = await latency(settings, db, owner, arrivals, args.n, writer)
            print(
                f"latency state change → webhook arrival, change in the {label}, poll "
                f"{poll:g} s, n={len(s)}: p50 {pct(s, 0.5) * 1000:.0f} ms, "
                f"p95 {pct(s, 0.95) * 1000:.0f} ms, mean {statistics.mean(s) * 1000:.0f} ms"
            )
        await other.dispose()
        settings = Settings(**base)
        took = await throughput(settings, db, owner, sub, hook, arrivals, args.deliveries)
        print(
            f"throughput: {args.deliveries} signed webhooks by one dispatcher "
            f"(concurrency {settings.notify_concurrency}) in {took:.2f} s: "
            f"{args.deliveries / took:.0f} deliveries/s"
        )
        await db.dispose()
    server.shutdown()


if __name__ == "__main__":
    asyncio.run(main())
