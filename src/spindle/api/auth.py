"""Authentication on the HTTP side: take the credentials out of a request, let the app's
:class:`~spindle.auth.authenticator.Authenticator` decide who is asking, and hand routes a
plain :class:`~spindle.domain.Caller` (``CallerDep``). Routes pass the caller on to the
services, which scope everything by it; nothing here decides what a caller may see.

Also here: the ``WWW-Authenticate`` challenges of a 401 (RFC 7617 Basic, RFC 6750 Bearer)
and the session cookie helpers the web UI's sign-in page uses.
"""

from __future__ import annotations

import base64
from typing import Annotated
from urllib.parse import urlsplit

from fastapi import Depends, Request, Response

from spindle import audit
from spindle.auth.authenticator import Authenticator, Credentials
from spindle.auth.session import COOKIE
from spindle.config import Settings
from spindle.domain import Caller
from spindle.errors import Forbidden, Unauthenticated

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def _basic(value: str) -> tuple[str, str] | str:
    """(user, password) from a Basic credential, or what is wrong with it."""
    try:
        decoded = base64.b64decode(value.strip(), validate=True).decode("utf-8")
    except ValueError:  # binascii.Error, UnicodeDecodeError, or text that is not ASCII
        return "the Basic credentials are not base64 of UTF-8 'user:password'"
    name, sep, password = decoded.partition(":")
    if not sep or not name:
        return "the Basic credentials are not 'user:password'"
    return name, password


def read_credentials(request: Request, settings: Settings) -> Credentials:
    basic: tuple[str, str] | None = None
    bearer: str | None = None
    malformed: str | None = None
    header = request.headers.get("authorization")
    if header is not None:
        scheme, _, value = header.strip().partition(" ")
        if scheme.lower() == "bearer" and value.strip():
            bearer = value.strip()
        elif scheme.lower() == "basic" and value.strip():
            parsed = _basic(value)
            if isinstance(parsed, str):
                malformed = parsed
            else:
                basic = parsed
        else:
            malformed = "the Authorization header is not 'Bearer <token>' or 'Basic <credentials>'"
    proxy = request.headers.get(settings.proxy_jwt_header) if settings.auth == "proxy-jwt" else None
    return Credentials(
        basic=basic,
        bearer=bearer,
        proxy_assertion=proxy or None,
        session=request.cookies.get(COOKIE) or None,
        malformed=malformed,
        address=request.client.host if request.client else None,
    )


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}".lower()


def check_same_origin(request: Request, settings: Settings) -> None:
    """A request that changes something and is authenticated by the session cookie must come
    from Spindle's own pages (its Origin, or else Referer, is Spindle's): the browser sends
    the cookie along with a form another site makes it submit. SameSite=Lax already stops
    that in current browsers; this holds in the others too."""
    expected = _origin(settings.public_url or str(request.base_url))
    sent = request.headers.get("origin") or request.headers.get("referer")
    if not sent or _origin(sent) != expected:
        raise Forbidden(
            "a change made with a session cookie must come from Spindle's own pages "
            f"(Origin {expected})"
        )


async def _caller(request: Request, *, required: bool) -> Caller | None:
    authenticator: Authenticator = request.app.state.authenticator
    settings: Settings = request.app.state.settings
    caller = await authenticator.authenticate(
        read_credentials(request, settings), required=required
    )
    if caller is not None:
        audit.identified(caller)  # the actor of what this request records
    if caller is not None and caller.method == "session" and request.method not in SAFE_METHODS:
        check_same_origin(request, settings)
    return caller


async def require_caller(request: Request) -> Caller:
    caller = await _caller(request, required=True)
    assert caller is not None
    return caller


async def service_info_caller(request: Request) -> Caller | None:
    """The caller if credentials came; without any, None when service-info is public."""
    settings: Settings = request.app.state.settings
    return await _caller(request, required=not settings.service_info_public)


CallerDep = Annotated[Caller, Depends(require_caller)]
ServiceInfoCallerDep = Annotated[Caller | None, Depends(service_info_caller)]


# --- 401 challenges ----------------------------------------------------------------------


def _quoted(text: str) -> str:
    """A quoted-string safe for an auth-param (RFC 6750 limits error_description to
    printable ASCII without quote and backslash)."""
    return "".join(c if " " <= c <= "~" and c not in '"\\' else "?" for c in text)


def challenges(settings: Settings, exc: Unauthenticated) -> list[str]:
    """The ``WWW-Authenticate`` values of a 401: Basic (in basic mode) and Bearer, the
    latter with RFC 6750's ``error`` and ``error_description`` when a token was refused."""
    realm = _quoted(settings.auth_realm)
    bearer = f'Bearer realm="{realm}"'
    if exc.error:
        bearer += f', error="{exc.error}", error_description="{_quoted(exc.message)}"'
    if settings.auth == "basic":
        return [f'Basic realm="{realm}", charset="UTF-8"', bearer]
    return [bearer]


# --- session cookie (for the web UI's sign-in page) -------------------------------------


def _secure(request: Request, settings: Settings) -> bool:
    return (settings.public_url or str(request.base_url)).startswith("https://")


def set_session_cookie(response: Response, request: Request, value: str) -> None:
    """Set the session cookie made by ``Authenticator.sign_in``: HttpOnly (no script reads
    it), SameSite=Lax (not sent with cross-site POSTs), Secure when Spindle is served over
    HTTPS (``public_url`` or the request's scheme)."""
    settings: Settings = request.app.state.settings
    response.set_cookie(
        COOKIE,
        value,
        max_age=settings.session_max_age_seconds,
        path="/",
        httponly=True,
        samesite="lax",
        secure=_secure(request, settings),
    )


def clear_session_cookie(response: Response, request: Request) -> None:
    settings: Settings = request.app.state.settings
    response.delete_cookie(
        COOKIE, path="/", httponly=True, samesite="lax", secure=_secure(request, settings)
    )
