"""The worker's own paths that the end-to-end tests cannot time: a run cancelled while its
worker is starting it (between the claim and the save of its handle). The fake engine
(spindle.testing) runs on the real local backend: no real engine is needed to show it."""

from __future__ import annotations

import os
from datetime import timedelta

import pytest
from fastapi import FastAPI

from spindle.backends.base import Handle
from spindle.backends.registry import build_backends
from spindle.config import Settings
from spindle.db.types import utcnow
from spindle.domain import State
from spindle.engines.registry import Catalog
from spindle.runs import claim
from spindle.runs.service import RunService
from spindle.runs.wakeup import Wakeup
from spindle.scheduler.worker import Worker
from spindle.testing import FakeEngine
from tests.api.conftest import CLEANUP, app_client, make_app
from tests.scheduler.test_fakes import submit


async def test_a_run_cancelled_while_starting_is_stopped_and_canceled(settings: Settings) -> None:
    catalog = Catalog()
    catalog.add(FakeEngine(), await FakeEngine().detect())
    app: FastAPI = make_app(settings, catalog, worker=False)
    async with app_client(app) as client:
        service: RunService = app.state.service
        run_id = await submit(client, {"sleep": 300})
        now = utcnow()
        async with service.db.begin() as conn:
            claimed = await claim.claim_next(
                conn, worker_id="w-test", now=now, lease_until=now + timedelta(seconds=60)
            )
        assert claimed is not None
        assert (claimed.id, claimed.state) == (run_id, State.INITIALIZING)

        # the cancel arrives after the claim, before the engine is started
        assert await service.cancel(run_id, caller=CLEANUP) is State.CANCELING

        worker = Worker(
            settings=settings,
            db=service.db,
            catalog=catalog,
            backends=build_backends(settings),
            wakeup=Wakeup(),
            worker_id="w-test",
        )
        await worker._drive(claimed, adopted=False)

        run = await service.get(run_id, caller=CLEANUP)
        assert run.state is State.CANCELED
        assert run.handle is not None, "the started engine's handle was not saved"
        assert run.cmd, "the engine's command was not saved"
        with pytest.raises(ProcessLookupError):  # nothing of the run is left
            os.killpg(Handle.from_json(run.handle).data["pgid"], 0)
        events = await service.events(run_id, caller=CLEANUP)
        assert [e.data.get("to") for e in events if e.kind == "state"] == [
            "QUEUED",
            "INITIALIZING",
            "CANCELING",
            "CANCELED",
        ]
