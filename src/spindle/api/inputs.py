"""The check every request's URL gets before any route (API and web UI alike): no NUL
character in its path or query. Ids and searches go to the database as text, and
PostgreSQL refuses a NUL in text outright (an error, not "no such row"), so a NUL is a 400
here instead of a 500 there."""

from __future__ import annotations

from fastapi import Request

from spindle.errors import InvalidRequest


async def refuse_nul(request: Request) -> None:
    if "\x00" in request.scope["path"]:  # (decoded: %00 is a NUL here)
        raise InvalidRequest("path", "must not hold a NUL character")
    for key, value in request.query_params.multi_items():
        if "\x00" in key or "\x00" in value:
            raise InvalidRequest(
                key.replace("\x00", "") or "query", "must not hold a NUL character"
            )
