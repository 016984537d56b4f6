"""The API tokens page: the signed-in user's personal API tokens (for the CLI and scripts):
list them, make one (its secret is shown on the page that answers, once), revoke one. The
account service does the work, as for the API's ``/tokens``."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated

from fastapi import APIRouter, Path, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from spindle.domain import ApiToken, Caller
from spindle.errors import InvalidRequest
from spindle.limits import MAX_ID
from spindle.web.csrf import FIELD
from spindle.web.deps import Accounts, PageCaller
from spindle.web.render import render, web_of

router = APIRouter(include_in_schema=False)

#: the longest expiry offered, in days
MAX_DAYS = 3650


async def _page(
    request: Request,
    accounts: Accounts,
    caller: Caller,
    *,
    new: tuple[ApiToken, str] | None = None,
    values: dict[str, str] | None = None,
    errors: dict[str, str] | None = None,
    status: int = 200,
) -> HTMLResponse:
    tokens = await accounts.list_tokens(caller)
    return render(
        request,
        "tokens.html",
        {
            "tokens": sorted(tokens, key=lambda t: t.id, reverse=True),
            "new": new,
            "values": values or {},
            "errors": errors or {},
        },
        status=status,
        nav="tokens",
    )


def _days(text: str) -> int | None:
    text = text.strip()
    if not text:
        return None
    # (ASCII digits only: str.isdigit() takes "²", which int() does not)
    if not (text.isascii() and text.isdigit()) or not 1 <= int(text) <= MAX_DAYS:
        raise InvalidRequest("expires_in_days", f"must be a whole number of days, 1 to {MAX_DAYS}")
    return int(text)


@router.get("/tokens", response_class=HTMLResponse)
async def tokens_page(request: Request, accounts: Accounts, caller: PageCaller) -> HTMLResponse:
    return await _page(request, accounts, caller)


@router.post("/tokens", response_class=HTMLResponse)
async def create_token(request: Request, accounts: Accounts, caller: PageCaller) -> HTMLResponse:
    async with request.form(max_files=0, max_fields=10) as form:
        web_of(request).csrf.check(request, form.get(FIELD))
        values = {
            name: value[:300] if isinstance(value := form.get(name), str) else ""
            for name in ("name", "expires_in_days")
        }
    try:
        days = _days(values["expires_in_days"])
        new = await accounts.create_token(
            caller,
            values["name"].strip(),
            expires_in=timedelta(days=days) if days else None,
        )
    except InvalidRequest as exc:
        field = exc.field if exc.field in ("name", "expires_in_days") else "name"
        errors = {field: exc.problem or exc.message}
        return await _page(request, accounts, caller, values=values, errors=errors, status=400)
    return await _page(request, accounts, caller, new=new, status=201)


@router.post("/tokens/{token_id}/revoke")
async def revoke_token(
    request: Request,
    token_id: Annotated[int, Path(ge=0, le=MAX_ID)],
    accounts: Accounts,
    caller: PageCaller,
) -> Response:
    async with request.form(max_files=0, max_fields=10) as form:
        web_of(request).csrf.check(request, form.get(FIELD))
    await accounts.revoke_token(caller, token_id)
    return RedirectResponse("/tokens", status_code=303)
