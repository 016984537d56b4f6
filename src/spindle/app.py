"""``create_app(settings)``: the FastAPI application with its database, engines, service and
(optionally) an embedded worker, all built at start-up from the settings handed in."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

from fastapi import Depends, FastAPI

import spindle
from spindle.api import accounts, errors, events, extensions, groups, wes
from spindle.api.inputs import refuse_nul
from spindle.auth.accounts import AccountService
from spindle.auth.authenticator import Authenticator, check_settings
from spindle.backends.registry import build_backends, describe
from spindle.config import Settings
from spindle.db.engine import create_engine
from spindle.db.migrate import upgrade
from spindle.engines.registry import Catalog, load_catalog
from spindle.runs.groups import GroupService
from spindle.runs.service import RunService
from spindle.runs.wakeup import Wakeup
from spindle.scheduler.listen import listen_for_wakeups
from spindle.scheduler.worker import Worker
from spindle.web import site
from spindle.web.errors import error_page

log = logging.getLogger(__name__)


def create_app(
    settings: Settings,
    *,
    worker: bool = True,
    migrate: bool = True,
    catalog: Catalog | None = None,
) -> FastAPI:
    # A configuration that would serve everyone without sign-in by mistake stops here.
    check_settings(settings)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        db = create_engine(settings.effective_database_url)
        if migrate:
            await upgrade(db)
        engines = catalog or await load_catalog(settings)
        wakeup = Wakeup()
        backends = build_backends(settings)
        app.state.accounts = AccountService(db)
        app.state.authenticator = authenticator = Authenticator(settings, app.state.accounts)
        app.state.service = RunService(
            db=db,
            settings=settings,
            catalog=engines,
            wakeup=wakeup,
            compute_envs=describe(settings),
            file_sources={
                name: b for name, b in backends.items() if not b.capabilities.local_files
            },
        )
        app.state.groups = GroupService(db=db, settings=settings, runs=app.state.service)
        stop = asyncio.Event()
        background: list[asyncio.Task[None]] = []
        if worker:
            w = Worker(settings=settings, db=db, catalog=engines, backends=backends, wakeup=wakeup)
            app.state.worker = w
            background.append(asyncio.create_task(w.run(stop), name="worker"))
            background.append(
                asyncio.create_task(listen_for_wakeups(settings, wakeup, stop), name="listen")
            )
        try:
            yield
        finally:
            stop.set()
            await asyncio.gather(*background, return_exceptions=True)
            await authenticator.aclose()
            for backend in backends.values():
                with contextlib.suppress(Exception):
                    await backend.close()
            await db.dispose()

    app = FastAPI(
        title="Spindle",
        version=spindle.__version__,
        summary="GA4GH WES 1.1.0 workflow execution service",
        lifespan=lifespan,
        dependencies=[Depends(refuse_nul)],
    )
    app.state.settings = settings
    errors.install(app, page=error_page)
    app.include_router(wes.router)
    app.include_router(extensions.router)
    app.include_router(groups.router)
    app.include_router(events.router)
    app.include_router(accounts.router)
    site.install(app, settings)
    return app
