"""``/healthz`` and ``/readyz`` (``api/health.py``): no credentials, outside the WES prefix;
503 with the reason while the database is unreachable, behind on migrations, or an engine
is still being checked."""

from __future__ import annotations

from pathlib import Path

import httpx

from spindle.config import Settings
from spindle.db.engine import create_engine
from spindle.db.migrate import upgrade
from spindle.engines.registry import Catalog
from spindle.engines.snakemake import SnakemakeEngine
from tests.api.conftest import WES, make_app, open_client
from tests.api.test_outage import relayed


async def test_ready_while_the_database_answers_and_503_while_it_is_cut(
    catalog: Catalog, settings: Settings, postgres_url: str
) -> None:
    async with relayed(postgres_url) as (relay, url):
        on_relay = settings.model_copy(update={"database_url": url, "auth": "basic"})
        app = make_app(on_relay, catalog, migrate=False, worker=False)
        async for client in open_client(app):
            assert (await client.get("/healthz")).json() == {"alive": True}
            ready = await client.get("/readyz")
            assert ready.status_code == 200, ready.text
            assert ready.json() == {"ready": True}
            await relay.cut()
            for path in ("/readyz", f"{WES}/ready"):
                down = await client.get(path)
                assert down.status_code == 503, down.text
                assert "the database is unreachable" in down.json()["msg"]
                assert int(down.headers["Retry-After"]) > 0
            assert (await client.get("/healthz")).status_code == 200  # alive all the same
            await relay.start()
            assert (await client.get("/readyz")).status_code == 200


async def test_not_ready_behind_on_migrations_or_while_engines_are_checked(
    settings: Settings, tmp_path: Path
) -> None:
    db = create_engine(settings.effective_database_url)
    await upgrade(db, "0006")
    await db.dispose()
    behind = make_app(settings, Catalog(), migrate=False, worker=False)
    # Not open_client: its clean-up lists runs, which needs the schema at head.
    async with (
        behind.router.lifespan_context(behind),
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app=behind), base_url="http://spindle.test"
        ) as client,
    ):
        r = await client.get("/readyz")
        assert r.status_code == 503
        assert r.json()["ready"] is False
        assert "spindle db upgrade" in r.json()["msg"]
    checking = Catalog(checking={"snakemake": SnakemakeEngine("snakemake", 1)})
    async for client in open_client(make_app(settings, checking, worker=False)):
        r = await client.get("/readyz")
        assert r.status_code == 503
        assert "snakemake" in r.json()["msg"]


async def test_a_method_the_operations_paths_do_not_take_is_a_405_with_allow(
    settings: Settings, catalog: Catalog
) -> None:
    async for client in open_client(make_app(settings, catalog, worker=False)):
        for path in ("/healthz", "/readyz", "/metrics"):
            r = await client.request("TRACE", path)
            assert r.status_code == 405
            assert "GET" in r.headers["Allow"].split(", ")
