"""Signing in and out of the web UI.

In ``basic`` mode ``/login`` is a form: a good name and password get the session cookie
(``Authenticator.sign_in``, ``spindle.api.auth.set_session_cookie``) and a redirect to the
page that asked for it. In ``oidc`` and ``proxy-jwt`` modes nobody signs in here: the
proxy's assertion or the bearer token that comes with each request is the sign-in, and a
page reached without one says how to get it. With ``none`` there is nothing to sign in to.

``next`` is followed only when it is a path on this site: anything else (another host, a
scheme, ``//host``, a backslash, control characters) sends the browser to the dashboard, so
a link to ``/login?next=https://evil.example`` cannot make Spindle an open redirect.
"""

from __future__ import annotations

from urllib.parse import urlencode, urlsplit

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from starlette.datastructures import FormData

from spindle.api.auth import clear_session_cookie, set_session_cookie
from spindle.auth.session import COOKIE
from spindle.errors import Forbidden, TooManyRequests, Unauthenticated
from spindle.web.csrf import FIELD
from spindle.web.deps import Auth
from spindle.web.render import render, web_of

router = APIRouter(include_in_schema=False)

LOGIN = "/login"
#: the form's fields are a few short strings
MAX_FIELD_CHARS = 4096


def safe_next(value: str | None) -> str:
    """``value`` if it is a path on this site to go to after signing in, else ``/``."""
    if not value or len(value) > MAX_FIELD_CHARS:
        return "/"
    if any(c < " " or c == "\x7f" for c in value) or "\\" in value:
        return "/"  # browsers drop tabs and newlines and read "\" as "/": "/\t/evil", "/\\evil"
    if not value.startswith("/") or value.startswith("//"):
        return "/"
    parts = urlsplit(value)
    if parts.scheme or parts.netloc or parts.path in (LOGIN, "/logout"):
        return "/"
    return value


def _same_site_path(request: Request, url: str | None) -> str:
    """The path (and query) of ``url`` if it is on the host the request came to."""
    if not url:
        return "/"
    parts = urlsplit(url)
    if parts.netloc.lower() != request.url.netloc.lower():
        return "/"
    return parts.path + (f"?{parts.query}" if parts.query else "")


def came_from(request: Request) -> str:
    """Where to come back to after signing in: the page asked for (a GET), else the page
    the request was made from (a form's POST, a fragment a page reloads)."""
    if request.method in ("GET", "HEAD") and "hx-request" not in request.headers:
        query = request.url.query
        return safe_next(request.url.path + (f"?{query}" if query else ""))
    return safe_next(
        _same_site_path(
            request, request.headers.get("hx-current-url") or request.headers.get("referer")
        )
    )


def login_url(next_path: str) -> str:
    return LOGIN if next_path == "/" else f"{LOGIN}?{urlencode({'next': next_path})}"


def sign_in_needed(request: Request, message: str) -> Response:
    """What a page answers to someone who has not signed in: in basic mode the way to the
    sign-in form (a redirect, or for a fragment an ``HX-Redirect`` for htmx to follow),
    otherwise a page saying how to sign in."""
    web = web_of(request)
    if web.auth_mode == "basic":
        target = login_url(came_from(request))
        if "hx-request" in request.headers:
            return Response(status_code=200, headers={"HX-Redirect": target})
        return RedirectResponse(target, status_code=303)
    return _help(request, message, status=401)


def _help(request: Request, message: str, *, status: int) -> HTMLResponse:
    web = web_of(request)
    return render(
        request,
        "signin_help.html",
        {"message": message, "instructions_url": web.instructions_url},
        status=status,
    )


def _login_page(
    request: Request, *, next_path: str, name: str = "", error: str = "", status: int = 200
) -> HTMLResponse:
    values = {"next": next_path, "name": name, "error": error}
    return render(request, "login.html", values, status=status, nav="login")


def _text(form: FormData, name: str) -> str:
    value = form.get(name)
    return value[:MAX_FIELD_CHARS] if isinstance(value, str) else ""


@router.get(LOGIN, response_class=HTMLResponse)
async def login_form(request: Request, auth: Auth, next: str = "") -> Response:
    target = safe_next(next)
    if auth.mode == "none":
        return RedirectResponse(target, status_code=303)  # nothing to sign in to
    if auth.mode != "basic":
        return _help(request, "", status=200)
    return _login_page(request, next_path=target)


@router.post(LOGIN, response_class=HTMLResponse)
async def login(request: Request, auth: Auth) -> Response:
    async with request.form(max_files=0, max_fields=10) as form:
        web_of(request).csrf.check(request, form.get(FIELD))
        name = _text(form, "name").strip()
        password = _text(form, "password")
        target = safe_next(_text(form, "next"))
    if auth.mode != "basic":
        return _help(request, "", status=403)
    if not name or not password:
        error = "Enter your user name and password."
        return _login_page(request, next_path=target, name=name, error=error, status=400)
    try:
        address = request.client.host if request.client else None
        _user, cookie = await auth.sign_in(name, password, address)
    except Unauthenticated:
        error = "The user name or password is not right."
        page = _login_page(request, next_path=target, name=name, error=error, status=401)
        # a 401 names a scheme; not Basic, which would make the browser ask in a dialog
        page.headers["WWW-Authenticate"] = f'Bearer realm="{auth.settings.auth_realm}"'
        return page
    except Forbidden as exc:  # a disabled user
        return _login_page(request, next_path=target, name=name, error=exc.message, status=403)
    except TooManyRequests as exc:
        page = _login_page(request, next_path=target, name=name, error=exc.message, status=429)
        page.headers["Retry-After"] = str(exc.retry_after)
        return page
    response = RedirectResponse(target, status_code=303)
    set_session_cookie(response, request, cookie)
    return response


@router.post("/logout")
async def logout(request: Request, auth: Auth) -> Response:
    async with request.form(max_files=0, max_fields=10) as form:
        web_of(request).csrf.check(request, form.get(FIELD))
    # server-side: the user's sessions end, not only this browser's cookie
    await auth.sign_out(request.cookies.get(COOKIE))
    response = RedirectResponse(LOGIN if auth.mode == "basic" else "/", status_code=303)
    clear_session_cookie(response, request)
    return response
