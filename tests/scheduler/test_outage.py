"""A worker whose database connections are cut again and again while its runs go
(PostgreSQL's ``pg_terminate_backend``, as a failover or a restarted proxy does): the
engines go on, no run is failed or let go for it, and every run ends as its engine did."""

from __future__ import annotations

import asyncio

import pytest
from sqlalchemy import select, text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.pool import NullPool

from spindle.config import Settings
from spindle.db.tables import runs
from spindle.domain import ACTIVE_STATES
from spindle.engines.registry import Catalog
from tests.api.conftest import app_client, make_app, submit_example, wait_state

pytestmark = [pytest.mark.engine, pytest.mark.db]

RUNS = 4
CUTS = 10
OBSERVER = "spindle-test-observer"


async def _cut(observer: AsyncEngine, database: str) -> int:
    """Terminate every connection to ``database`` but the observer's own."""
    async with observer.connect() as conn:
        cut = await conn.execute(
            text(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE datname = :db AND application_name <> :me"
            ),
            {"db": database, "me": OBSERVER},
        )
        return len(cut.all())


async def _unleased_active(observer: AsyncEngine) -> list[str]:
    async with observer.connect() as conn:
        found = await conn.execute(
            select(runs.c.id).where(
                runs.c.state.in_([s.value for s in ACTIVE_STATES]),
                runs.c.lease_expires_at.is_(None),
            )
        )
        return list(found.scalars())


async def test_runs_survive_their_worker_losing_the_database_again_and_again(
    settings: Settings, catalog: Catalog, cwltool_exe: str, postgres_url: str
) -> None:
    settings = settings.model_copy(
        update={"database_url": postgres_url, "max_concurrent_runs": RUNS, "poll_interval": 0.5}
    )
    observer = create_async_engine(
        postgres_url,
        poolclass=NullPool,
        connect_args={"server_settings": {"application_name": OBSERVER}},
    )
    database = make_url(postgres_url).database
    assert database is not None
    try:
        async with app_client(make_app(settings, catalog)) as client:
            ids = [
                await submit_example(client, "cwl", "sleep", params={"seconds": 4})
                for _ in range(RUNS)
            ]
            for run_id in ids:
                await wait_state(client, run_id, {"RUNNING"})

            unleased: set[str] = set()
            cut = 0
            for _ in range(CUTS):
                cut += await _cut(observer, database)
                unleased.update(await _unleased_active(observer))
                await asyncio.sleep(0.25)
            assert cut > 0  # the worker's connections were among them

            ended = {
                run_id: await wait_state(
                    client, run_id, {"COMPLETE", "EXECUTOR_ERROR", "SYSTEM_ERROR", "CANCELED"}
                )
                for run_id in ids
            }
            assert ended == {run_id: "COMPLETE" for run_id in ids}
            assert unleased == set(), "active runs were left without a lease"
    finally:
        await observer.dispose()
