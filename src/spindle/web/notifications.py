"""The in-app notifications in the web UI: the bell in the navigation (its unread count,
fetched when a page loads and every 15 s after, so it follows new notifications without a
reload) and the notifications page (mark one or all read). The notification service does
the work, as for the API's ``/notifications``."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from spindle.limits import MAX_ID
from spindle.notify.service import NotifyService
from spindle.web.csrf import FIELD
from spindle.web.deps import PageCaller
from spindle.web.render import render, web_of

router = APIRouter(include_in_schema=False)


async def get_notify(request: Request) -> NotifyService:
    service: NotifyService = request.app.state.notify
    return service


Notify = Annotated[NotifyService, Depends(get_notify)]


@router.get("/notifications", response_class=HTMLResponse)
async def notifications_page(
    request: Request, notify: Notify, caller: PageCaller, unread: bool = False
) -> HTMLResponse:
    items, count = await notify.inbox(caller, unread=unread, limit=200)
    return render(
        request,
        "notifications.html",
        {"items": items, "unread": count, "only_unread": unread},
        nav="notifications",
    )


@router.get("/notifications/bell", response_class=HTMLResponse)
async def bell(request: Request, notify: Notify, caller: PageCaller) -> HTMLResponse:
    """The bell alone (htmx swaps it in place)."""
    return render(request, "_bell.html", {"unread": await notify.unread(caller)})


@router.post("/notifications/read")
async def read_all(request: Request, notify: Notify, caller: PageCaller) -> Response:
    async with request.form(max_files=0, max_fields=10) as form:
        web_of(request).csrf.check(request, form.get(FIELD))
    await notify.mark_read(caller)
    return RedirectResponse("/notifications", status_code=303)


@router.post("/notifications/{notification_id}/read")
async def read_one(
    request: Request,
    notification_id: Annotated[int, Path(ge=0, le=MAX_ID)],
    notify: Notify,
    caller: PageCaller,
) -> Response:
    async with request.form(max_files=0, max_fields=10) as form:
        web_of(request).csrf.check(request, form.get(FIELD))
    await notify.mark_read(caller, notification_id)
    return RedirectResponse("/notifications", status_code=303)
