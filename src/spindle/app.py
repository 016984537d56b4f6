"""``create_app(settings)``: the FastAPI application with its database, engines, service and
(optionally) an embedded worker, all built at start-up from the settings handed in."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

from fastapi import Depends, FastAPI

import spindle
from spindle import audit
from spindle.api import (
    accounts,
    errors,
    events,
    extensions,
    groups,
    health,
    lineage,
    logstream,
    openapi,
    outputs,
    wes,
)
from spindle.api import audit as audit_api
from spindle.api import notifications as notifications_api
from spindle.api.guard import Guard
from spindle.api.inputs import refuse_nul
from spindle.auth.accounts import AccountService
from spindle.auth.authenticator import Authenticator, check_settings
from spindle.auth.passwords import HashPool
from spindle.backends.registry import build_backends, describe
from spindle.config import Settings
from spindle.db.engine import create_engine
from spindle.db.migrate import upgrade
from spindle.db.outage import OutageLog
from spindle.engines.registry import CACHE_FILE, START_WAIT, Catalog, load_catalog
from spindle.metrics import RequestMetrics
from spindle.notify.dispatcher import Dispatcher
from spindle.notify.service import NotifyService
from spindle.runs.groups import GroupService
from spindle.runs.outputs import OutputService
from spindle.runs.service import RunService
from spindle.runs.wakeup import Wakeup
from spindle.scheduler.listen import listen_for_wakeups
from spindle.scheduler.worker import Worker
from spindle.storage.s3 import run_storage
from spindle.storage.signing import LinkSigner
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
        app.state.outages = OutageLog()
        app.state.outages.watch(db)
        if migrate:
            await upgrade(db)
        # Detected at once, each engine given START_WAIT s before the server opens without
        # it (it is then checked on in the background), from a cache on a restart.
        engines = catalog or await load_catalog(
            settings, wait=START_WAIT, cache=settings.data_dir / CACHE_FILE
        )
        wakeup = Wakeup()
        backends = build_backends(settings)
        app.state.accounts = AccountService(db, hashing=HashPool(settings.password_hash_workers))
        app.state.authenticator = authenticator = Authenticator(settings, app.state.accounts)
        app.state.service = RunService(
            db=db,
            settings=settings,
            catalog=engines,
            wakeup=wakeup,
            compute_envs=describe(settings),
            storage=run_storage(
                settings,
                {name: b for name, b in backends.items() if not b.capabilities.local_files},
            ),
        )
        app.state.outputs = OutputService(app.state.service, LinkSigner.from_settings(settings))
        app.state.groups = GroupService(db=db, settings=settings, runs=app.state.service)
        await app.state.service.settle_submissions()
        stop = asyncio.Event()
        background: list[asyncio.Task[None]] = []
        # notifications: the API's test-sends and redelivers go through this dispatcher,
        # which also sends every due delivery when this process is a worker
        dispatcher = Dispatcher(settings, db)
        app.state.notify = NotifyService(db=db, settings=settings, dispatcher=dispatcher)
        if worker and settings.notify_dispatcher:
            background.append(asyncio.create_task(dispatcher.run(stop), name="notify"))
        if worker:
            w = Worker(
                settings=settings,
                db=db,
                catalog=engines,
                backends=backends,
                wakeup=wakeup,
                storage=app.state.service.storage,  # retention removes through the same seam
            )
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
            if catalog is None:
                await engines.aclose()
            await authenticator.aclose()
            app.state.accounts.hashing.close()
            await app.state.service.feed.aclose()
            await app.state.notify.aclose()
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
    openapi.install(app)
    app.include_router(outputs.router)  # first: /logs/archive is not a log stream
    app.include_router(wes.router)
    app.include_router(extensions.router)
    app.include_router(groups.router)
    app.include_router(events.router)
    app.include_router(accounts.router)
    app.include_router(lineage.router)
    # operations (docs/operations.md): live logs, health, metrics
    app.include_router(logstream.router)
    app.include_router(health.router)
    app.include_router(audit_api.router)
    app.include_router(notifications_api.router)
    site.install(app, settings)
    # Host, cross-site changes and request bodies are checked before any route runs
    app.add_middleware(Guard, settings=settings, page=error_page)
    # every answered request counted by route template and status (outermost: refusals too)
    app.add_middleware(RequestMetrics)
    app.add_middleware(audit.RequestContext)  # the client address of what is audited
    return app
