"""The error page: what an HTML route answers for 404, 405, 500 and every refused request,
in the look of the other pages (the API keeps answering WES ErrorResponse). A page that needs
sign-in answers the way to sign in instead (``spindle.web.signin``)."""

from __future__ import annotations

import logging
from http import HTTPStatus

from starlette.requests import Request
from starlette.responses import HTMLResponse, PlainTextResponse, Response

from spindle.web.render import SECURITY_HEADERS, render
from spindle.web.signin import sign_in_needed

log = logging.getLogger(__name__)


async def error_page(request: Request, status: int, message: str) -> Response:
    try:
        title = HTTPStatus(status).phrase
    except ValueError:
        title = "Error"
    try:
        if status == 401:
            return sign_in_needed(request, message)
        page: HTMLResponse = render(
            request,
            "error.html",
            {"status": status, "title": title, "message": message},
            status=status,
        )
        return page
    except Exception:  # the error page must not fail in turn: say it plainly
        log.exception("rendering the error page failed")
        return PlainTextResponse(
            f"{status} {title}: {message}", status_code=status, headers=SECURITY_HEADERS
        )
