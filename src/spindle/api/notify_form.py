"""The ``notify`` field of RunWorkflow (Spindle's extension, docs/notifications.md): a JSON
subscription, or a list of them, to the run being submitted, written in the transaction
that inserts the run, so not even its first event can be missed."""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from spindle.domain import Caller, Run
from spindle.errors import InvalidRequest
from spindle.notify.service import NotifyService
from spindle.runs.service import OnInsert

FIELD = "notify"
#: most subscriptions one submission may make
MAX_SUBSCRIPTIONS = 10


async def subscriptions(
    notify: NotifyService, value: str | None, caller: Caller
) -> OnInsert | None:
    """The checked subscriptions of a ``notify`` field, as the step that writes them once
    the run exists (None: the field is absent or blank); InvalidRequest names the field."""
    if value is None or not value.strip():
        return None
    try:
        parsed: Any = json.loads(value)
    except ValueError as exc:
        raise InvalidRequest(FIELD, f"is not JSON ({exc})") from None
    items = parsed if isinstance(parsed, list) else [parsed]
    if not items or len(items) > MAX_SUBSCRIPTIONS:
        raise InvalidRequest(FIELD, f"must hold 1 to {MAX_SUBSCRIPTIONS} subscriptions")
    checked: list[dict[str, Any]] = []
    for item in items:
        if isinstance(item, dict) and ("run_id" in item or "group_id" in item):
            key = "run_id" if "run_id" in item else "group_id"
            raise InvalidRequest(f"{FIELD}.{key}", "is the run being submitted: leave it out")
        checked.append(await notify.checked_subscription(caller, item, FIELD))

    async def write(conn: AsyncConnection, run: Run) -> None:
        for values in checked:
            await notify.add(conn, caller, {**values, "run_id": run.id})

    return write
