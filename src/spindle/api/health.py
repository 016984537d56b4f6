"""Operations endpoints, outside the WES prefix (docs/operations.md):

- health checks for orchestrators and load balancers, without credentials: ``/healthz``
  (the process answers) and ``/readyz`` (it can take runs now: the database answers, its
  schema is at the newest migration, every installed engine has been checked);
  ``GET /ga4gh/wes/v1/ready`` answers from the same checks (``check_ready``);
- ``/metrics`` in Prometheus text format, for a client from ``metrics_networks`` or with
  the ``metrics_token``."""

from __future__ import annotations

import asyncio
import functools
import hmac
import ipaddress
import logging

from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4
from sqlalchemy.engine import Connection

from spindle import metrics
from spindle.config import Settings
from spindle.db import outage
from spindle.db.migrate import alembic_config
from spindle.errors import DatabaseUnavailable, EngineChecking, ServiceUnavailable, SpindleError
from spindle.runs.service import RunService

log = logging.getLogger(__name__)

router = APIRouter(tags=["Health"])

#: seconds the database has to answer a readiness check
DB_TIMEOUT = 5.0


class SchemaBehind(ServiceUnavailable):
    """The database's schema is not at the newest migration; run ``spindle db upgrade``."""

    retry_after = 30


@functools.cache
def _heads() -> frozenset[str]:
    """The newest migration(s) this Spindle knows (read from its scripts once)."""
    return frozenset(ScriptDirectory.from_config(alembic_config()).get_heads())


def _current(conn: Connection) -> frozenset[str]:
    return frozenset(MigrationContext.configure(conn).get_current_heads())


async def check_ready(service: RunService, *, schema: bool = True) -> None:
    """Nothing if this Spindle can take runs now; else the ServiceUnavailable that says
    what is missing."""
    try:
        async with asyncio.timeout(DB_TIMEOUT), service.db.connect() as conn:
            current = await conn.run_sync(_current)
    except TimeoutError:
        raise DatabaseUnavailable(f"the database did not answer within {DB_TIMEOUT:g} s") from None
    except Exception as exc:
        down = outage.unreachable(exc)
        if down is None:
            raise
        raise down from None
    if schema and current != _heads():
        raise SchemaBehind(
            f"the database schema is at {', '.join(sorted(current)) or 'no migration'}, "
            f"not {', '.join(sorted(_heads()))}; run `spindle db upgrade`"
        )
    if service.catalog.checking:
        raise EngineChecking(
            "engines still being checked (installed, their version not read yet): "
            + ", ".join(sorted(service.catalog.checking))
        )


@router.get(
    "/healthz",
    summary="Alive",
    responses={200: {"description": 'The process answers: `{"alive": true}`.'}},
)
async def healthz() -> dict[str, bool]:
    """The process is alive and serving (no database look: a liveness probe must not fail
    because a dependency is away)."""
    return {"alive": True}


@router.get(
    "/readyz",
    summary="Ready",
    responses={
        200: {"description": 'Ready: `{"ready": true}`.'},
        503: {"description": "Not ready: `{ready: false, msg, status_code: 503}`."},
    },
)
async def readyz(request: Request) -> JSONResponse:
    """Whether this Spindle can take runs now: the database answers, its schema is at the
    newest migration and every installed engine has been checked; else 503 with the
    reason (and `Retry-After`)."""
    service: RunService = request.app.state.service
    try:
        await check_ready(service)
    except ServiceUnavailable as exc:
        headers = {"Retry-After": str(exc.retry_after)} if exc.retry_after else {}
        body = {"ready": False, "msg": exc.message, "status_code": 503}
        return JSONResponse(body, status_code=503, headers=headers)
    except SpindleError as exc:  # pragma: no cover (any other refusal is still "not ready")
        return JSONResponse({"ready": False, "msg": exc.message, "status_code": 503}, 503)
    return JSONResponse({"ready": True})


def metrics_allowed(request: Request, settings: Settings) -> bool:
    """Whether a request may read the metrics: the bearer ``metrics_token``, or a client
    address in ``metrics_networks``."""
    token = settings.metrics_token.get_secret_value()
    scheme, _, sent = request.headers.get("authorization", "").partition(" ")
    if token and scheme.lower() == "bearer" and hmac.compare_digest(sent.strip(), token):
        return True
    host = request.client.host if request.client else ""
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    return any(address in network for network in settings.metrics_networks)


@router.get(
    "/metrics",
    summary="Metrics",
    response_class=Response,
    responses={
        200: {"content": {CONTENT_TYPE_PLAIN_0_0_4.split(";")[0]: {}}},
        401: {"description": "Not from metrics_networks, and no (or a wrong) bearer token."},
    },
)
async def get_metrics(request: Request) -> Response:
    """Prometheus metrics (text format 0.0.4): runs by state and compute environment,
    submissions, queue wait, run duration, claims, active runs per worker, HTTP requests.
    For a client from `metrics_networks` (default loopback), or with the bearer
    `metrics_token`; else 401."""
    settings: Settings = request.app.state.settings
    if not metrics_allowed(request, settings):
        return JSONResponse(
            {
                "msg": "metrics: the client is not in metrics_networks and sent no valid "
                "bearer token (setting metrics_token)",
                "status_code": 401,
            },
            status_code=401,
            headers={"WWW-Authenticate": 'Bearer realm="metrics"'},
        )
    service: RunService = request.app.state.service
    body = await metrics.exposition(service.db)
    return Response(body, media_type=CONTENT_TYPE_PLAIN_0_0_4)
