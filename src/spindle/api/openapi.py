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

from spindle.domain import State
from spindle.paging import MAX_TEXT
from spindle.runs.group_store import GroupSort
from spindle.runs.query import SortKey


def install(app: FastAPI) -> None:
    def schema() -> dict[str, Any]:
        if app.openapi_schema is None:
            service = getattr(app.state, "service", None)
            envs = list(service.compute_envs) if service is not None else []
            app.openapi_schema = _spindle_schema(
                envs,
                get_openapi(
                    title=app.title,
                    version=app.version,
                    summary=app.summary,
                    description=app.description,
                    routes=app.routes,
                ),
            )
        return app.openapi_schema

    app.openapi = schema  # type: ignore[method-assign]
    app.add_middleware(AllowedMethods)


_TIME = {"anyOf": [{"format": "date-time"}, {"maxLength": 0}]}
#: what list query parameters accept, by operation summary (None: any) and name
_QUERY_VALUES: dict[tuple[str | None, str], dict[str, Any]] = {
    (None, "state"): {"items": {"type": "string", "enum": [s.value for s in State]}},
    (None, "order"): {"enum": ["", "asc", "desc"]},
    (None, "q"): {"maxLength": MAX_TEXT},
    ("ListRuns", "sort"): {"enum": ["", *SortKey]},
    ("ListRunGroups", "sort"): {"enum": ["", *GroupSort]},
    ("ListRuns", "tag"): {"pattern": r"^[^=]*$|^[^=]*[^=\s][^=]*="},
    ("ListRuns", "submitted_after"): _TIME,
    ("ListRuns", "submitted_before"): _TIME,
}


def _spindle_schema(compute_envs: list[str], document: dict[str, Any]) -> dict[str, Any]:
    """FastAPI's document with what it cannot know: 400 for validation errors, the values
    list filters accept, the configured compute environments."""
    for methods in document.get("paths", {}).values():
        for operation in methods.values():
            name = operation.get("summary")
            for parameter in operation.get("parameters", []):
                if parameter.get("in") != "query":
                    continue
                for key in ((name, parameter["name"]), (None, parameter["name"])):
                    if key in _QUERY_VALUES:
                        parameter["schema"].update(_QUERY_VALUES[key])
                        break
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
    for schema in schemas.values():
        env = schema.get("properties", {}).get("compute_env")
        for choice in (env or {}).get("anyOf", [env] if env else []):
            if choice.get("type") == "string" and compute_envs:
                choice["enum"] = compute_envs
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
