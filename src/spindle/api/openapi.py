"""The served OpenAPI document says what the server does, and every path answers ``OPTIONS``.

FastAPI documents a 422 "Validation Error" for every operation with parameters; Spindle
answers those as 400 ``ErrorResponse`` (``api/errors.py``), so the document says 400. An
``OPTIONS`` request (that is not a CORS preflight) answers 204 with ``Allow`` naming every
method of the path, and a 405 names them all too (Starlette names only those of the first
route that matched the path).
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from starlette.routing import Match, Mount
from starlette.types import ASGIApp, Receive, Scope, Send


def install(app: FastAPI) -> None:
    def schema() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = _spindle_schema(
                get_openapi(
                    title=app.title,
                    version=app.version,
                    summary=app.summary,
                    description=app.description,
                    routes=app.routes,
                )
            )
        return app.openapi_schema

    app.openapi = schema  # type: ignore[method-assign]
    app.add_middleware(AllowedMethods)


def _spindle_schema(document: dict[str, Any]) -> dict[str, Any]:
    for methods in document.get("paths", {}).values():
        for operation in methods.values():
            responses = operation.get("responses", {})
            if responses.pop("422", None) is not None and "400" not in responses:
                responses["400"] = {
                    "description": "The request is malformed.",
                    "content": {
                        "application/json": {
                            "schema": {"$ref": "#/components/schemas/ErrorResponse"}
                        }
                    },
                }
    schemas = document.get("components", {}).get("schemas", {})
    for unused in ("HTTPValidationError", "ValidationError"):
        schemas.pop(unused, None)
    return document


#: the methods a path may answer besides OPTIONS
_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE")


def allowed_methods(app: Any, scope: Scope) -> list[str]:
    """Every method some route of ``app`` answers on the request's path (and OPTIONS), as
    the router matches them; a mount (static files) answers GET and HEAD."""
    routes = getattr(app, "routes", [])
    methods: set[str] = set()
    for method in _METHODS:
        probe = {**scope, "method": method}
        for route in routes:
            match, _child = route.matches(probe)
            if isinstance(route, Mount):
                if match is not Match.NONE and method in ("GET", "HEAD"):
                    methods.add(method)
            elif match is Match.FULL:
                methods.add(method)
    if methods:
        methods.add("OPTIONS")
    return sorted(methods)


class AllowedMethods:
    """Answers ``OPTIONS`` on any path that has routes (a CORS preflight passes through)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "OPTIONS":
            headers = dict(scope.get("headers") or [])
            preflight = b"origin" in headers and b"access-control-request-method" in headers
            methods = [] if preflight else allowed_methods(scope.get("app"), scope)
            if methods:
                await send(
                    {
                        "type": "http.response.start",
                        "status": 204,
                        "headers": [(b"allow", ", ".join(methods).encode())],
                    }
                )
                await send({"type": "http.response.body", "body": b""})
                return
        await self.app(scope, receive, send)
