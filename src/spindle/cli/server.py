"""``spindle serve``, ``spindle worker`` and ``spindle db``: processes that own the database."""

from __future__ import annotations

import asyncio
import logging
import signal

import click

from spindle import config
from spindle.config import Settings
from spindle.errors import ConfigError


def load_settings(**overrides: object) -> Settings:
    values = {k: v for k, v in overrides.items() if v is not None}
    try:
        return config.load_settings(**values)
    except ConfigError as exc:
        raise click.ClickException(exc.message) from None


def _logging(level: str) -> None:
    logging.basicConfig(
        level=level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )


@click.command()
@click.option("--host", default=None, help="Address to bind (SPINDLE_HOST; default 127.0.0.1).")
@click.option("--port", type=int, default=None, help="Port (SPINDLE_PORT; default 8000).")
@click.option("--worker/--no-worker", default=True, help="Run an embedded worker (default on).")
@click.option("--log-level", default="info", show_default=True)
def serve(host: str | None, port: int | None, worker: bool, log_level: str) -> None:
    """Serve the WES API (and by default run a worker in the same process)."""
    import uvicorn

    from spindle.api.http11 import uvicorn_options
    from spindle.app import create_app

    _logging(log_level)
    settings = load_settings(host=host, port=port)
    try:
        app = create_app(settings, worker=worker)
    except ConfigError as exc:
        raise click.ClickException(exc.message) from None
    click.echo(
        f"Spindle on http://{settings.host}:{settings.port}  auth: {settings.auth}  "
        f"data: {settings.data_dir}  database: {settings.database_url_for_display}"
    )
    uvicorn.run(
        app,
        host=settings.host,
        port=settings.port,
        log_level=log_level,
        timeout_graceful_shutdown=5,
        # h11 with a header deadline, keep-alive and header size from the settings
        **uvicorn_options(settings),
    )


@click.command()
@click.option("--log-level", default="info", show_default=True)
def worker(log_level: str) -> None:
    """Run a worker alone (no API), against the configured database."""
    _logging(log_level)
    asyncio.run(_run_worker(load_settings()))


async def _run_worker(settings: Settings) -> None:
    from spindle.backends.registry import build_backends
    from spindle.db.engine import create_engine
    from spindle.db.migrate import is_current
    from spindle.engines.registry import CACHE_FILE, START_WAIT, load_catalog
    from spindle.runs.wakeup import Wakeup
    from spindle.scheduler.listen import listen_for_wakeups
    from spindle.scheduler.worker import Worker

    db = create_engine(settings.effective_database_url)
    try:
        if not await is_current(db):
            raise click.ClickException("the database is not migrated: run `spindle db upgrade`")
        catalog = await load_catalog(
            settings, wait=START_WAIT, cache=settings.data_dir / CACHE_FILE
        )
        wakeup = Wakeup()
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        w = Worker(
            settings=settings,
            db=db,
            catalog=catalog,
            backends=build_backends(settings),
            wakeup=wakeup,
        )
        try:
            loops = [w.run(stop), listen_for_wakeups(settings, wakeup, stop)]
            if settings.notify_dispatcher:
                from spindle.notify.dispatcher import run_dispatcher

                loops.append(run_dispatcher(settings, db, stop))
            await asyncio.gather(*loops)
        finally:
            await catalog.aclose()
    finally:
        await db.dispose()


@click.group()
def db() -> None:
    """Database schema commands."""


@db.command()
@click.option("--revision", default="head", show_default=True)
def upgrade(revision: str) -> None:
    """Apply migrations (creates the SQLite database on first use)."""
    from spindle.db.engine import create_engine
    from spindle.db.migrate import upgrade as do_upgrade

    settings = load_settings()

    async def run() -> None:
        engine = create_engine(settings.effective_database_url)
        try:
            await do_upgrade(engine, revision)
        finally:
            await engine.dispose()

    asyncio.run(run())
    click.echo(f"database at {revision}: {settings.database_url_for_display}")


def register(main: click.Group) -> None:
    main.add_command(serve)
    main.add_command(worker)
    main.add_command(db)
