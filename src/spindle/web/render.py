"""Turning a template and its values into an HTML response, with what every page shares:
the service's name and version for the navigation bar, who is signed in, the CSRF token for
its forms, and the security headers of every HTML answer."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape
from starlette.requests import Request
from starlette.responses import HTMLResponse
from starlette.templating import Jinja2Templates

import spindle
from spindle.db.types import utcnow
from spindle.domain import State
from spindle.web import views
from spindle.web.csrf import Csrf, set_cookie

#: Scripts, styles and connections only from this service: no inline script or style runs.
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'; "
        "object-src 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}


def environment() -> Environment:
    env = Environment(
        loader=PackageLoader("spindle.web", "templates"),
        autoescape=select_autoescape(default=True, default_for_string=True),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(
        when=views.when,
        iso=views.iso,
        pretty_json=views.pretty_json,
        workflow_name=views.workflow_name,
        seconds=views.seconds_text,
    )
    env.globals.update(
        api_url=views.api_url,
        run_url=views.run_url,
        file_url=views.file_url,
        duration=views.duration,
        ago=views.ago,
        State=State,
        static_version=spindle.__version__,
    )
    return env


@dataclass(frozen=True)
class Web:
    """What the UI's routes share, built once by ``spindle.web.site.install``."""

    templates: Jinja2Templates
    csrf: Csrf
    service_name: str
    #: the ``auth`` setting: none, basic, oidc or proxy-jwt
    auth_mode: str
    #: where people learn how to sign in (``auth_instructions_url``; may be empty)
    instructions_url: str


def web_of(request: Request) -> Web:
    web: Web = request.app.state.web
    return web


def render(
    request: Request,
    template: str,
    context: dict[str, Any],
    *,
    status: int = 200,
    nav: str = "",
) -> HTMLResponse:
    web = web_of(request)
    token, new_cookie = web.csrf.issue(request)
    values = {
        "service_name": web.service_name,
        "version": spindle.__version__,
        "nav": nav,
        # set by the page's caller dependency; None on pages anyone may see (sign-in, errors)
        "caller": getattr(request.state, "caller", None),
        "auth_mode": web.auth_mode,
        "csrf_token": token,
        "now": utcnow(),
        **context,
    }
    response = web.templates.TemplateResponse(request, template, values, status_code=status)
    if new_cookie is not None:
        set_cookie(response, request, new_cookie)
    response.headers.update(SECURITY_HEADERS)
    return response
