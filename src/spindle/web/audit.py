"""The audit log page (admins only): the API's ``/audit`` as a table, with its filters and
older pages. ``spindle.audit`` does the work."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse

from spindle import audit
from spindle.api.audit import query_of
from spindle.web.deps import PageCaller
from spindle.web.render import render

router = APIRouter(include_in_schema=False)

Filter = Annotated[str, Query(max_length=255)]


@router.get("/audit", response_class=HTMLResponse)
async def audit_page(
    request: Request,
    caller: PageCaller,
    action: Filter = "",
    actor: Filter = "",
    target: Filter = "",
    since: Filter = "",
    until: Filter = "",
    page_token: Filter = "",
) -> HTMLResponse:
    filters = {"action": action, "actor": actor, "target": target, "since": since, "until": until}
    page = await audit.read_page(
        request.app.state.service.db,
        query_of(action, actor, target, since, until),
        page_size=50,
        page_token=page_token or None,
        caller=caller,
    )
    older = {k: v for k, v in filters.items() if v}
    if page.next_page_token:
        older["page_token"] = page.next_page_token
    return render(
        request,
        "audit.html",
        {
            "entries": page.entries,
            "filters": filters,
            "older": older if page.next_page_token else None,
            "first": not page_token,
        },
        nav="audit",
    )
