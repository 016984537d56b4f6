"""The run group service: what the API and the web UI can do with run groups.

A run group (as in AWS HealthOmics) gathers runs and caps what they use at once:
``max_runs`` runs of the group holding a slot (INITIALIZING, RUNNING or CANCELING),
``max_cpus`` CPUs among them, and ``max_duration`` minutes of running for each. Runs over a
limit wait in QUEUED; the claim enforces the limits (``claim.claim_next``) and the worker
stops a run past ``max_duration`` (SYSTEM_ERROR).

Scoped like :class:`~spindle.runs.service.RunService`: a caller who is not an admin sees,
changes and submits into their own groups only; someone else's group is "not found".
"""

from __future__ import annotations

import math
import uuid
from collections.abc import Mapping
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine

from spindle import audit, limits
from spindle.config import Settings
from spindle.db.types import utcnow
from spindle.domain import Caller, Run, RunGroup, RunSummary, State
from spindle.errors import Conflict, GroupNotFound, InvalidRequest, RunNotFound
from spindle.paging import (
    check_page_size,
    decode_cursor,
    encode_cursor,
    parse_ordering,
    parse_search,
)
from spindle.runs import group_store, store
from spindle.runs.group_store import GroupSort
from spindle.runs.query import RunQuery
from spindle.runs.service import Page, RunService

#: the fields a group is created or updated with
FIELDS = ("name", "description", "max_runs", "max_cpus", "max_duration", "compute_env")
MAX_NAME = 255
MAX_DESCRIPTION = 10_000
#: the largest limits accepted (a bound that keeps them in a 32-bit column)
MAX_LIMIT = 1_000_000
#: the longest max_duration: a year, in minutes
MAX_DURATION_MINUTES = 366 * 24 * 60
# (GroupService has a method named ``list``, which hides the builtin in its annotations)
RunIds = list[str]


class GroupService:
    def __init__(self, *, db: AsyncEngine, settings: Settings, runs: RunService) -> None:
        self.db = db
        self.settings = settings
        self.runs = runs

    # --- create, read, change, delete ----------------------------------------------------

    async def create(self, fields: Mapping[str, Any], *, caller: Caller) -> RunGroup:
        """A new group of the caller's. ``fields``: name (required), description,
        max_runs, max_cpus, max_duration (minutes), compute_env; a limit that is None or
        absent is no limit."""
        values = self._check(fields, creating=True)
        now = utcnow()
        group_id = str(uuid.uuid4())
        async with self.db.begin() as conn:
            await group_store.insert_group(
                conn,
                {
                    "id": group_id,
                    "owner_id": caller.user_id,
                    "created_at": now,
                    "updated_at": now,
                    "description": "",
                    **values,
                },
            )
            await audit.record(
                conn,
                "group.create",
                target=("group", group_id),
                detail=_shown(values),
                caller=caller,
            )
            row = await group_store.get_group_row(conn, group_id)
            assert row is not None
            return (await group_store.with_usage(conn, [row]))[0]

    async def get(self, group_id: str, *, caller: Caller) -> RunGroup:
        """The group with its runs counted by state and its usage now."""
        async with self.db.connect() as conn:
            row = await group_store.get_group_row(conn, group_id, owner_id=caller.owner_scope)
            if row is None:
                raise GroupNotFound(group_id)
            return (await group_store.with_usage(conn, [row]))[0]

    async def list(
        self,
        *,
        text: str = "",
        sort: str = "",
        order: str = "",
        page_size: int | None = None,
        page_token: str | None = None,
        caller: Caller,
    ) -> Page[RunGroup]:
        """The groups the caller may see, newest first by default (``sort``: created or
        name; ``order``: asc or desc), matching ``text`` in their name, description or id;
        keyset-paged both ways like run searches."""
        size = check_page_size(page_size)
        key, descending = parse_ordering(GroupSort, sort, order, GroupSort.CREATED)
        text = parse_search(text)
        kind = f"groups:{key}:{'desc' if descending else 'asc'}"
        width = 1 if key is GroupSort.CREATED else 2
        after, back = decode_cursor(kind, page_token, width)
        async with self.db.connect() as conn:
            rows = await group_store.list_groups(
                conn,
                text=text,
                sort=key,
                descending=descending,
                after=after,
                back=back,
                limit=size + 1,
                owner_id=caller.owner_scope,
            )
            more = len(rows) > size
            rows = rows[:size]
            if back:
                rows.reverse()
            groups = await group_store.with_usage(conn, rows)
        if not groups:
            return Page([], "", "")

        def token(group: RunGroup, *, back: bool) -> str:
            return encode_cursor(kind, group_store.sort_key_of(group, key), back=back)

        if back:
            prev = token(groups[0], back=True) if more else ""
            return Page(groups, token(groups[-1], back=False), prev)
        prev = token(groups[0], back=True) if after is not None else ""
        return Page(groups, token(groups[-1], back=False) if more else "", prev)

    async def update(self, group_id: str, fields: Mapping[str, Any], *, caller: Caller) -> RunGroup:
        """Change the fields given (None clears a limit or the compute environment). New
        limits hold for the next claim; a run already going is not stopped by them, except
        by a shorter ``max_duration``. A ``max_cpus`` below what a queued run of the group
        asks for is refused (that run could never start)."""
        values = self._check(fields, creating=False)
        async with self.db.begin() as conn:
            row = await group_store.get_group_row(
                conn, group_id, owner_id=caller.owner_scope, lock=True
            )
            if row is None:
                raise GroupNotFound(group_id)
            if values.get("max_cpus") is not None:
                largest = await group_store.largest_queued_cpus(conn, group_id)
                if largest > values["max_cpus"]:
                    raise InvalidRequest(
                        "max_cpus",
                        f"{values['max_cpus']} is less than the {largest} CPUs a queued run of "
                        "the group asks for; that run could never start",
                    )
            if values:
                await group_store.update_group(conn, group_id, {**values, "updated_at": utcnow()})
                await audit.record(
                    conn,
                    "group.update",
                    target=("group", group_id),
                    detail=_shown(values),
                    caller=caller,
                )
            row = await group_store.get_group_row(conn, group_id)
            assert row is not None
            group = (await group_store.with_usage(conn, [row]))[0]
            await self.runs.wakeup.notify(conn, "queued")  # workers in other processes too
        self.runs.wakeup.run_queued()  # a raised limit may let queued runs start
        return group

    async def delete(self, group_id: str, *, detach_runs: bool = False, caller: Caller) -> int:
        """Delete a group that has no runs; with ``detach_runs``, one that has: its runs stay
        (unfinished ones go on, without the group's limits). Returns how many runs were
        detached."""
        async with self.db.begin() as conn:
            row = await group_store.get_group_row(
                conn, group_id, owner_id=caller.owner_scope, lock=True
            )
            if row is None:
                raise GroupNotFound(group_id)
            n = await group_store.count_runs(conn, group_id)
            if n and not detach_runs:
                raise Conflict(
                    f"run group {group_id!r} has {n} run{'s' if n != 1 else ''}; delete it with "
                    "detach_runs=true to keep them without the group"
                )
            detached = await group_store.detach_runs(conn, group_id) if n else 0
            await group_store.delete_group(conn, group_id)
            await audit.record(
                conn,
                "group.delete",
                target=("group", group_id),
                detail={"name": row.name, "runs_detached": detached},
                caller=caller,
            )
            if detached:
                await self.runs.wakeup.notify(conn, "queued")  # workers in other processes
        if detached:
            self.runs.wakeup.run_queued()  # detached runs are no longer held by its limits
        return detached

    # --- the group's runs ----------------------------------------------------------------

    async def runs_of(
        self,
        group_id: str,
        query: RunQuery | None = None,
        *,
        page_size: int | None = None,
        page_token: str | None = None,
        caller: Caller,
    ) -> Page[RunSummary]:
        """The group's runs the caller may see, filtered and sorted by ``query`` (the state
        filter, say), keyset-paged."""
        await self.get(group_id, caller=caller)
        q = query or RunQuery()
        return await self.runs.search(
            q.in_group(group_id), page_size=page_size, page_token=page_token, caller=caller
        )

    async def cancel_runs(self, group_id: str, *, caller: Caller) -> RunIds:
        """Cancel every unfinished run of the group (QUEUED ones at once, active ones through
        CANCELING); returns their ids."""
        await self.get(group_id, caller=caller)
        async with self.db.connect() as conn:
            ids = await store.unfinished_run_ids(
                conn, group_id=group_id, owner_id=caller.owner_scope
            )
        for run_id in ids:
            await self.runs.cancel(run_id, caller=caller)
        return ids

    async def move_run(self, run_id: str, group_id: str | None, *, caller: Caller) -> Run:
        """Put a QUEUED run into ``group_id`` (None: out of any group). The run and the group
        must be the caller's to see; a run that has started is a 409."""
        async with self.db.begin() as conn:
            run = await store.get_run(conn, run_id, owner_id=caller.owner_scope)
            if run is None:
                raise RunNotFound(run_id)
            if group_id is not None:
                row = await group_store.get_group_row(conn, group_id, owner_id=caller.owner_scope)
                if row is None:
                    raise InvalidRequest("run_group_id", f"run group {group_id!r} was not found")
                max_cpus = row["max_cpus"]
                if max_cpus is not None and run.cpus > max_cpus:
                    raise InvalidRequest(
                        "run_group_id",
                        f"the run asks for {run.cpus} CPUs, more than the group's max_cpus "
                        f"{max_cpus}",
                    )
            if run.state is not State.QUEUED:
                raise Conflict(
                    f"run {run_id!r} is {run.state.value}; only a QUEUED run can change groups"
                )
            if not await store.move_queued_run(conn, run_id, group_id):
                raise Conflict(f"run {run_id!r} started meanwhile; it can no longer change groups")
            moved = await store.get_run(conn, run_id)
            assert moved is not None
            await self.runs.wakeup.notify(conn, "queued")  # workers in other processes too
        self.runs.wakeup.run_queued()
        return moved

    # --- checking fields -----------------------------------------------------------------

    def _check(self, fields: Mapping[str, Any], *, creating: bool) -> dict[str, Any]:
        """The column values for ``fields``, or an InvalidRequest naming the first bad one.
        Text values (from a form) are accepted for numbers; "" is None."""
        unknown = sorted(set(fields) - set(FIELDS))
        if unknown:
            raise InvalidRequest(
                unknown[0], "is not a run group field; fields are: " + ", ".join(FIELDS)
            )
        values: dict[str, Any] = {}
        if creating or "name" in fields:
            name = fields.get("name")
            if not isinstance(name, str) or not name.strip():
                raise InvalidRequest("name", "is required (a non-empty string)")
            if len(name.strip()) > MAX_NAME:
                raise InvalidRequest("name", f"is longer than {MAX_NAME} characters")
            values["name"] = limits.check_name(name.strip(), field="name")
        if "description" in fields:
            description = fields["description"]
            if description is None:
                description = ""
            if not isinstance(description, str):
                raise InvalidRequest("description", "must be a string")
            if len(description) > MAX_DESCRIPTION:
                raise InvalidRequest("description", f"is longer than {MAX_DESCRIPTION} characters")
            values["description"] = limits.check_text(
                description, field="description", multiline=True
            )
        for name in ("max_runs", "max_cpus"):
            if name in fields:
                values[name] = _positive_int(name, fields[name])
        if "max_duration" in fields:
            minutes = _positive_number("max_duration", fields["max_duration"])
            values["max_duration_seconds"] = None if minutes is None else _seconds(minutes)
        if "compute_env" in fields:
            env = fields["compute_env"]
            if env == "":
                env = None
            if env is not None and env not in self.runs.compute_envs:
                raise InvalidRequest(
                    "compute_env",
                    f"{env!r} is not configured; configured: " + ", ".join(self.runs.compute_envs),
                )
            values["compute_env"] = env
        return values


def _shown(values: Mapping[str, Any]) -> dict[str, Any]:
    """A group's changed fields as the audit log keeps them (no long description)."""
    return {k: (v[:200] if isinstance(v, str) else v) for k, v in values.items()}


def _blank(value: Any) -> bool:
    return value is None or (isinstance(value, str) and not value.strip())


def _positive_int(name: str, value: Any) -> int | None:
    if _blank(value):
        return None
    number: Any = value
    if isinstance(value, str):
        try:
            number = int(value.strip())
        except ValueError:
            raise InvalidRequest(name, f"must be a whole number, not {value!r}") from None
    if isinstance(number, bool) or not isinstance(number, int):
        raise InvalidRequest(name, f"must be a whole number or null, not {value!r}")
    if not 1 <= number <= MAX_LIMIT:
        raise InvalidRequest(name, f"must be from 1 to {MAX_LIMIT} (or null for no limit)")
    return number


def _positive_number(name: str, value: Any) -> float | None:
    if _blank(value):
        return None
    number: Any = value
    if isinstance(value, str):
        try:
            number = float(value.strip())
        except ValueError:
            raise InvalidRequest(name, f"must be a number of minutes, not {value!r}") from None
    if isinstance(number, bool) or not isinstance(number, int | float) or not math.isfinite(number):
        raise InvalidRequest(name, f"must be a number of minutes or null, not {value!r}")
    if not 0 < number <= MAX_DURATION_MINUTES:
        raise InvalidRequest(
            name, f"must be more than 0 and at most {MAX_DURATION_MINUTES} minutes (or null)"
        )
    if _seconds(number) < 1:
        raise InvalidRequest(name, "must be at least one second (1/60 of a minute)")
    return float(number)


def _seconds(minutes: float) -> int:
    return round(minutes * 60)
