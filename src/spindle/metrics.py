"""Prometheus metrics (prometheus-client): what ``GET /metrics`` exposes.

Two kinds, because Spindle runs as several processes (API servers, workers) on one
database:

- **Facts of the database** (runs by state and compute environment, active runs per
  worker) are read from the database when scraped (:func:`database_metrics`, two
  grouped counts over indexes), so every process answers the same totals and a restart
  loses nothing. Never sum them across processes in PromQL: take ``max``.
- **Things that happen in a process** (submissions, claims, runs ending, HTTP requests) are
  counters and histograms of :data:`REGISTRY`, counted where they happen; Prometheus adds
  up the processes (``sum by (...) (rate(...))``).

Other modules count into the metrics defined here (the notification dispatcher into
:data:`NOTIFICATION_DELIVERIES`).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable
from datetime import datetime
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from spindle.db.tables import runs
from spindle.db.types import utcnow
from spindle.domain import ACTIVE_STATES, State

if TYPE_CHECKING:
    from spindle.domain import Run

#: every metric a process counts itself (module-level by nature: one per process, as
#: prometheus-client's own default registry is)
REGISTRY = CollectorRegistry(auto_describe=True)

#: seconds: from a few ms (a claim, a fake run) to a day (a long pipeline)
LONG_BUCKETS = (0.1, 0.5, 1, 5, 15, 30, 60, 300, 900, 1800, 3600, 7200, 21600, 86400)
SHORT_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5)

SUBMISSIONS = Counter(
    "spindle_runs_submitted",
    "Runs submitted to this process, by workflow type and compute environment.",
    ["workflow_type", "compute_env"],
    registry=REGISTRY,
)
NOTIFICATION_DELIVERIES = Counter(
    "spindle_notification_deliveries",
    "Notification delivery attempts this process made, by channel and outcome: delivered, "
    "pending (failed, to be retried) or failed (failed, given up).",
    ["channel", "outcome"],
    registry=REGISTRY,
)
RUNS_ENDED = Counter(
    "spindle_runs_ended",
    "Runs a worker of this process ended, by workflow type and final state.",
    ["workflow_type", "state"],
    registry=REGISTRY,
)
QUEUE_WAIT = Histogram(
    "spindle_run_queue_wait_seconds",
    "Seconds from a run's submission to its claim by a worker of this process.",
    ["workflow_type"],
    buckets=LONG_BUCKETS,
    registry=REGISTRY,
)
RUN_DURATION = Histogram(
    "spindle_run_duration_seconds",
    "Seconds from a run's start to its end, of the runs a worker of this process ended, "
    "by workflow type and final state.",
    ["workflow_type", "state"],
    buckets=LONG_BUCKETS,
    registry=REGISTRY,
)
CLAIM_SECONDS = Histogram(
    "spindle_claim_seconds",
    "Seconds one claim of a queued run took (the claim transaction), by outcome "
    "(claimed, empty: nothing to claim, error).",
    ["outcome"],
    buckets=SHORT_BUCKETS,
    registry=REGISTRY,
)
HTTP_REQUESTS = Counter(
    "spindle_http_requests",
    "HTTP requests answered, by method, route template and status code.",
    ["method", "route", "status"],
    registry=REGISTRY,
)
HTTP_SECONDS = Histogram(
    "spindle_http_request_duration_seconds",
    "Seconds to answer an HTTP request (to its last byte; streams excluded), by method "
    "and route template.",
    ["method", "route"],
    buckets=SHORT_BUCKETS,
    registry=REGISTRY,
)


def submitted(workflow_type: str, compute_env: str) -> None:
    SUBMISSIONS.labels(workflow_type, compute_env).inc()


def claimed(run: Run | None, seconds: float, *, failed: bool = False) -> None:
    """A claim took ``seconds`` and got ``run`` (None: the queue was empty)."""
    outcome = "error" if failed else "empty" if run is None else "claimed"
    CLAIM_SECONDS.labels(outcome).observe(seconds)
    if run is not None:
        wait = (utcnow() - run.submitted_at).total_seconds()
        QUEUE_WAIT.labels(run.request.workflow_type).observe(max(0.0, wait))


def ended(run: Run, final: State, at: datetime | None = None) -> None:
    """A run of this process's worker ended in ``final``."""
    kind = run.request.workflow_type
    RUNS_ENDED.labels(kind, final.value).inc()
    if run.start_time is not None:
        seconds = ((at or utcnow()) - run.start_time).total_seconds()
        RUN_DURATION.labels(kind, final.value).observe(max(0.0, seconds))


# --- read from the database when scraped ------------------------------------------------

#: seconds the database has to answer a scrape's counts
DB_TIMEOUT = 5.0


class _Snapshot(Collector):
    """Metric families built from one read of the database."""

    def __init__(self, families: list[Metric]) -> None:
        self.families = families

    def collect(self) -> Iterable[Metric]:
        return iter(self.families)


async def database_metrics(db: AsyncEngine) -> list[Metric]:
    """Runs by state and compute environment, active runs per worker, and whether the
    database answered (``spindle_database_up``)."""
    by_state = GaugeMetricFamily(
        "spindle_runs",
        "Runs in the database, by state and compute environment (the same on every process).",
        labels=["state", "compute_env"],
    )
    per_worker = GaugeMetricFamily(
        "spindle_worker_active_runs",
        "Active runs (INITIALIZING, RUNNING, CANCELING) each worker holds, from the database.",
        labels=["worker"],
    )
    up = GaugeMetricFamily("spindle_database_up", "1 if the database answered this scrape, else 0.")
    active = [s.value for s in ACTIVE_STATES]
    try:
        async with asyncio.timeout(DB_TIMEOUT), db.connect() as conn:
            counted = (
                await conn.execute(
                    select(runs.c.state, runs.c.compute_env, func.count()).group_by(
                        runs.c.state, runs.c.compute_env
                    )
                )
            ).all()
            held = (
                await conn.execute(
                    select(runs.c.worker_id, func.count())
                    .where(runs.c.state.in_(active), runs.c.worker_id.is_not(None))
                    .group_by(runs.c.worker_id)
                )
            ).all()
    except Exception:  # the database is away: say so, and expose what this process knows
        up.add_metric([], 0)
        return [up]
    seen: set[tuple[str, str]] = set()
    for state, env, n in counted:
        by_state.add_metric([state, env], n)
        seen.add((state, env))
    # every state of every compute environment that has runs, 0 when none is in it
    # (a series that vanishes reads as "no data", not 0, in a dashboard)
    for env in {env for _, env in seen}:
        for s in State:
            if (s.value, env) not in seen:
                by_state.add_metric([s.value, env], 0)
    for worker, n in held:
        per_worker.add_metric([worker], n)
    up.add_metric([], 1)
    return [by_state, per_worker, up]


async def exposition(db: AsyncEngine) -> bytes:
    """The text a scrape gets: this process's metrics, then the database's."""
    snapshot = CollectorRegistry(auto_describe=False)
    snapshot.register(_Snapshot(await database_metrics(db)))
    return generate_latest(REGISTRY) + generate_latest(snapshot)


# --- HTTP requests ----------------------------------------------------------------------


class RequestMetrics:
    """ASGI middleware counting every answered request by method, the route template it
    matched (``/ga4gh/wes/v1/runs/{run_id}``; ``unmatched`` for none, so a scan of random
    paths cannot grow the series) and status. An SSE stream is counted when it starts and
    is not timed."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = [500]
        streaming = [False]

        async def counted(message: Message) -> None:
            if message["type"] == "http.response.start":
                status[0] = message["status"]
                headers = dict(message.get("headers", []))
                streaming[0] = headers.get(b"content-type", b"").startswith(b"text/event-stream")
                if streaming[0]:
                    _count(scope, status[0], None)
            await send(message)

        try:
            await self.app(scope, receive, counted)
        finally:
            if not streaming[0]:
                _count(scope, status[0], time.perf_counter() - started)


def _route(scope: Scope) -> str:
    route = scope.get("route")
    path = getattr(route, "path", None)
    return path if isinstance(path, str) and path else "unmatched"


def _count(scope: Scope, status: int, seconds: float | None) -> None:
    method = scope.get("method", "")
    route = _route(scope)
    HTTP_REQUESTS.labels(method, route, str(status)).inc()
    if seconds is not None:
        HTTP_SECONDS.labels(method, route).observe(seconds)
