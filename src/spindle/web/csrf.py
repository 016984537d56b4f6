"""Cross-site request forgery protection for the UI's forms: a signed double-submit token.

The browser holds a random value in a cookie (``HttpOnly``, ``SameSite=Strict``); every form
carries that value signed with the service's secret (itsdangerous). A state-changing request
is accepted only when the form's token verifies and names the cookie's value: another site
can make a browser send the cookie, but can neither read it nor sign a token for it.
"""

from __future__ import annotations

import hmac
import secrets

from itsdangerous import BadSignature, URLSafeSerializer
from starlette.requests import Request
from starlette.responses import Response

from spindle.config import Settings
from spindle.errors import SpindleError

COOKIE = "spindle_csrf"
FIELD = "csrf_token"
_SALT = "spindle.web.csrf"


class CsrfError(SpindleError):
    """The form is missing its CSRF token, or the token is not valid: reload the page and
    try again."""

    status_code = 403


class Csrf:
    def __init__(self, secret: str) -> None:
        self._signer = URLSafeSerializer(secret, salt=_SALT)

    def issue(self, request: Request) -> tuple[str, str | None]:
        """The token for the forms of a page, and the cookie value to set with it (None when
        the browser already holds a cookie)."""
        current = request.cookies.get(COOKIE, "")
        if len(current) >= 32:
            return self._signer.dumps(current), None
        fresh = secrets.token_urlsafe(32)
        return self._signer.dumps(fresh), fresh

    def check(self, request: Request, token: object) -> None:
        """Refuse (CsrfError) unless ``token`` is a token this service signed for the
        cookie the request carries."""
        cookie = request.cookies.get(COOKIE, "")
        if not isinstance(token, str) or not token or not cookie:
            raise CsrfError()
        try:
            value = self._signer.loads(token)
        except BadSignature:
            raise CsrfError() from None
        if not isinstance(value, str) or not hmac.compare_digest(value, cookie):
            raise CsrfError()


def set_cookie(response: Response, request: Request, value: str) -> None:
    """Secure when Spindle is served over HTTPS, as the session cookie (``public_url``, which
    a reverse proxy in front makes the one to go by, or the request's own scheme)."""
    settings: Settings = request.app.state.settings
    response.set_cookie(
        COOKIE,
        value,
        httponly=True,
        samesite="strict",
        secure=(settings.public_url or str(request.base_url)).startswith("https://"),
        path="/",
    )
