"""Every error leaves as the WES ``ErrorResponse {msg, status_code}`` (or, outside the API
prefix, as the web UI's error page), from exactly here.

Spindle's own errors carry their status (a 401 also its ``WWW-Authenticate`` challenges);
FastAPI's validation errors become 400s naming the field; Starlette's 404/405 keep their
status; a database outage answers 503 with ``Retry-After`` and is logged once per outage
(``spindle.db.outage``); anything unexpected is logged with its traceback and answered with
a plain 500 that reveals nothing of it.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from sqlalchemy.exc import SQLAlchemyError
from starlette.exceptions import HTTPException as StarletteHTTPException

from spindle.api.auth import challenges
from spindle.api.links import PREFIX
from spindle.api.openapi import allowed_methods
from spindle.config import Settings
from spindle.db.outage import OutageLog, unreachable
from spindle.errors import (
    DatabaseUnavailable,
    ServiceUnavailable,
    SpindleError,
    TooManyRequests,
    Unauthenticated,
)
from spindle.models.wes import ErrorResponse

log = logging.getLogger(__name__)

#: Renders an error as a page for the routes outside the API (the web UI's error page).
ErrorPage = Callable[[Request, int, str], Awaitable[Response]]


def error_response(
    status_code: int, msg: str, headers: dict[str, str] | None = None
) -> JSONResponse:
    return JSONResponse(
        {"msg": msg, "status_code": status_code}, status_code=status_code, headers=headers
    )


def _describe_validation(exc: RequestValidationError) -> str:
    problems = []
    for err in exc.errors():
        raw = tuple(err.get("loc", ()))
        if err.get("type") == "json_invalid":
            # (its loc is the character position, not a field)
            reason = (err.get("ctx") or {}).get("error", "")
            problems.append("request body: is not valid JSON" + (f" ({reason})" if reason else ""))
            continue
        loc = [str(p) for p in raw if p not in ("body", "query", "path", "header")]
        field = ".".join(loc) or ("request body" if raw[:1] == ("body",) else "request")
        problems.append(f"{field}: {err.get('msg', 'is invalid')}")
    return "; ".join(problems) or "the request is malformed"


def install(app: FastAPI, *, page: ErrorPage | None = None) -> None:
    """Errors under the API prefix answer ErrorResponse; with ``page``, errors on any other
    path (the web UI's) answer the page it renders."""

    async def answer(
        request: Request, status: int, msg: str, headers: dict[str, str] | None = None
    ) -> Response:
        path = request.url.path
        if page is not None and path != PREFIX and not path.startswith(PREFIX + "/"):
            response = await page(request, status, msg)
            response.headers.update(headers or {})  # (a 405's Allow, as the API's has)
            return response
        return error_response(status, msg, headers=headers)

    @app.exception_handler(SpindleError)
    async def spindle_error(request: Request, exc: SpindleError) -> Response:
        if isinstance(exc, DatabaseUnavailable):
            outages(request).failure(exc)
        elif exc.status_code >= 500:
            log.error("request failed: %s", exc.message)
        response = await answer(request, exc.status_code, exc.message)
        if isinstance(exc, ServiceUnavailable) and exc.retry_after is not None:
            response.headers["Retry-After"] = str(exc.retry_after)
        # (a page may answer a 401 otherwise: the sign-in page's redirect)
        if isinstance(exc, Unauthenticated) and response.status_code == 401:
            settings: Settings = request.app.state.settings
            for value in challenges(settings, exc):
                response.headers.append("WWW-Authenticate", value)
        if isinstance(exc, TooManyRequests):
            response.headers["Retry-After"] = str(exc.retry_after)
        return response

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> Response:
        return await answer(request, 400, _describe_validation(exc))

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        msg = str(exc.detail)
        if exc.status_code == 404 and msg == "Not Found":
            msg = f"no such path: {request.url.path}"
        headers = getattr(exc, "headers", None)
        if exc.status_code == 405:
            msg = f"method {request.method} is not allowed on {request.url.path}"
            # every method of the path, not only those of the first route that matched it
            allow = ", ".join(allowed_methods(request.app, request.scope))
            headers = {**(headers or {}), "Allow": allow}
        return await answer(request, exc.status_code, msg, headers)

    async def database_error(request: Request, exc: Exception) -> Response:
        """An outage answers 503 (one log line per outage); any other error as unexpected.
        (Handled here rather than as ``Exception``, which Starlette logs again with its
        traceback after the answer.)"""
        outage = unreachable(exc)
        if outage is None:
            return await unexpected(request, exc)
        return await spindle_error(request, outage)

    app.add_exception_handler(SQLAlchemyError, database_error)
    app.add_exception_handler(OSError, database_error)

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> Response:
        log.exception("unexpected error", exc_info=exc)
        return await answer(request, 500, "an unexpected error occurred; see the server log")


def outages(request: Request) -> OutageLog:
    """The app's outage log (one made on first use, for an app built without the lifespan)."""
    state = request.app.state
    if getattr(state, "outages", None) is None:
        state.outages = OutageLog()
    found: OutageLog = state.outages
    return found


_DESCRIPTIONS = {
    400: "The request is malformed.",
    401: "The request is unauthorized.",
    403: "The requester is not authorized to perform this action.",
    404: "The requested workflow run wasn't found.",
    409: "The object exists already.",
    413: "The upload is larger than this service accepts.",
    429: "Too many requests of this kind (failed sign-ins, open event streams); try again "
    "after Retry-After seconds.",
    500: "An unexpected error occurred.",
    503: (
        "A service the answer needs (the database, the identity provider, a compute "
        "environment) cannot be reached now, or an installed engine is still being checked; "
        "try again later (see `Retry-After`)."
    ),
    507: "The data folder's disk is full.",
}


def documented(*codes: int) -> dict[int | str, dict[str, Any]]:
    """``responses=`` for a route: each status documented as an ErrorResponse."""
    return {code: {"model": ErrorResponse, "description": _DESCRIPTIONS[code]} for code in codes}
