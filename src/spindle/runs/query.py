"""Finding runs: filters, sort orders and keyset pages over run summaries, and the figures
of the dashboard. Repository functions like those in ``store``: they take the caller's
connection, never commit, and return domain records.

Every page is a keyset page on ``(sort column, seq)`` (or ``seq`` alone), so a page deep in
100,000 runs costs what the first one does. The filters on state and workflow type and the
default order use indexes; the free-text search and the tag filter read the narrow
``run_texts`` table (then the tag filter checks the candidates' tags exactly); the sort by
workflow reads every row (measured in ``bench/pages.py``).
"""

from __future__ import annotations

import enum
import hashlib
import json
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import ColumnElement, Select, and_, func, or_, select, tuple_, union_all
from sqlalchemy.engine import RowMapping
from sqlalchemy.ext.asyncio import AsyncConnection

from spindle.db.tables import run_texts, runs, tasks, users
from spindle.domain import Failure, RunSummary, State
from spindle.errors import InvalidRequest
from spindle.paging import parse_ordering, parse_search

FAILED_STATES = (State.EXECUTOR_ERROR, State.SYSTEM_ERROR)


class SortKey(enum.StrEnum):
    """What a list of runs can be sorted by; ties are broken by submission order."""

    SUBMITTED = "submitted"
    STATE = "state"
    TYPE = "type"
    WORKFLOW = "workflow"


_SORT_COLUMNS: dict[SortKey, Any] = {
    SortKey.STATE: runs.c.state,
    SortKey.TYPE: runs.c.workflow_type,
    SortKey.WORKFLOW: runs.c.workflow_url,
}

_SUMMARY_COLUMNS = (
    runs.c.seq,
    runs.c.id,
    runs.c.state,
    runs.c.workflow_type,
    runs.c.workflow_type_version,
    runs.c.workflow_url,
    runs.c.engine,
    runs.c.tags,
    runs.c.submitted_at,
    runs.c.start_time,
    runs.c.end_time,
    runs.c.group_id,
)


@dataclass(frozen=True)
class RunQuery:
    """Which runs to list and in what order. Empty fields filter nothing."""

    states: frozenset[State] = field(default_factory=frozenset)
    workflow_type: str | None = None
    #: runs that have this tag key ...
    tag_key: str | None = None
    #: ... with exactly this value (None: any value)
    tag_value: str | None = None
    #: case-insensitive substring of the run id, the workflow URL or the tags
    text: str = ""
    sort: SortKey = SortKey.SUBMITTED
    descending: bool = True
    #: runs of this run group only
    group_id: str | None = None
    #: runs submitted at or after this moment ...
    submitted_after: datetime | None = None
    #: ... and strictly before this one
    submitted_before: datetime | None = None
    #: runs of the user of this name only (an admin's filter; see ``RunService.search``)
    owner: str | None = None
    #: also deleted runs (tombstones of DELETE /runs/{id}), hidden otherwise
    include_deleted: bool = False

    @classmethod
    def parse(
        cls,
        *,
        states: Sequence[str] = (),
        workflow_type: str = "",
        tag: str = "",
        text: str = "",
        sort: str = "",
        order: str = "",
        group_id: str = "",
        submitted_after: str = "",
        submitted_before: str = "",
        owner: str = "",
        include_deleted: bool = False,
    ) -> RunQuery:
        """A query from text values (a form's or a query string's); a bad value is an
        InvalidRequest naming its field. ``tag`` is ``key`` or ``key=value``; a state may
        be given several times or comma-separated; times are ISO 8601 (UTC unless they say)."""
        chosen: set[State] = set()
        for name in (part for value in states for part in value.split(",")):
            if not name.strip():
                continue
            try:
                chosen.add(State(name.strip().upper()))
            except ValueError:
                raise InvalidRequest(
                    "state", f"{name!r} is not a state; states: " + ", ".join(s for s in State)
                ) from None
        sort_key, descending = parse_ordering(SortKey, sort, order, SortKey.SUBMITTED)
        text = parse_search(text)
        tag = tag.strip()
        key, has_value, value = tag.partition("=")
        if has_value and not key.strip():
            raise InvalidRequest("tag", f"{tag!r} names no tag key (use key or key=value)")
        after = parse_time("submitted_after", submitted_after)
        before = parse_time("submitted_before", submitted_before)
        return cls(
            group_id=group_id.strip() or None,
            submitted_after=after,
            submitted_before=before,
            owner=owner.strip() or None,
            states=frozenset(chosen),
            workflow_type=workflow_type.strip() or None,
            tag_key=key.strip() or None,
            tag_value=value if has_value else None,
            text=text,
            sort=sort_key,
            descending=descending,
            include_deleted=include_deleted,
        )

    def in_group(self, group_id: str) -> RunQuery:
        """The same query, limited to the runs of one run group."""
        return replace(self, group_id=group_id)

    @property
    def token_kind(self) -> str:
        """Page tokens are only good for the order and the filters they were issued for."""
        kind = f"runs:{self.sort}:{'desc' if self.descending else 'asc'}"
        filters = [
            sorted(self.states),
            self.workflow_type,
            self.tag_key,
            self.tag_value,
            self.text,
            self.group_id,
            self.submitted_after.isoformat() if self.submitted_after else None,
            self.submitted_before.isoformat() if self.submitted_before else None,
            self.owner,
        ]
        if not any(filters):
            return kind
        digest = hashlib.sha256(json.dumps(filters).encode()).hexdigest()[:16]
        return f"{kind}:{digest}"

    @property
    def key_width(self) -> int:
        return 1 if self.sort is SortKey.SUBMITTED else 2

    def key_of(self, run: RunSummary) -> list[Any]:
        """The keyset position of a run in this order."""
        values: dict[SortKey, Any] = {
            SortKey.STATE: run.state.value,
            SortKey.TYPE: run.workflow_type,
            SortKey.WORKFLOW: run.workflow_url,
        }
        if self.sort is SortKey.SUBMITTED:
            return [run.seq]
        return [values[self.sort], run.seq]


def parse_time(field: str, value: str) -> datetime | None:
    """An ISO 8601 moment (``2026-01-31``, ``2026-01-31T12:00:00Z``); UTC unless it says."""
    value = value.strip()
    if not value:
        return None
    try:
        at = datetime.fromisoformat(value)
    except ValueError:
        raise InvalidRequest(
            field, f"{value[:64]!r} is not an ISO 8601 time (e.g. 2026-01-31T12:00:00Z)"
        ) from None
    return at.astimezone(UTC) if at.tzinfo else at.replace(tzinfo=UTC)


def summary_from_row(row: RowMapping) -> RunSummary:
    return RunSummary(
        id=row["id"],
        seq=row["seq"],
        state=State(row["state"]),
        workflow_type=row["workflow_type"],
        workflow_type_version=row["workflow_type_version"],
        workflow_url=row["workflow_url"],
        engine=row["engine"],
        tags=row["tags"],
        submitted_at=row["submitted_at"],
        start_time=row["start_time"],
        end_time=row["end_time"],
        group_id=row["group_id"],
    )


def _filters(query: RunQuery) -> list[ColumnElement[bool]]:
    where: list[ColumnElement[bool]] = []
    if query.group_id is not None:
        where.append(runs.c.group_id == query.group_id)
    if query.states:
        where.append(runs.c.state.in_(sorted(s.value for s in query.states)))
    if query.workflow_type:
        where.append(runs.c.workflow_type == query.workflow_type)
    if query.tag_key is not None:
        # The narrow table holds each tag as a "\nkey=value" line (lowercased): it finds the
        # few candidates fast; the tags themselves then decide exactly.
        line = "\n" + query.tag_key + "=" + (query.tag_value or "")
        where.append(_text_has(line))
        value = runs.c.tags[query.tag_key].as_string()
        where.append(value.is_not(None) if query.tag_value is None else value == query.tag_value)
    if query.text:
        where.append(_text_has(query.text))
    if query.submitted_after is not None:
        where.append(runs.c.submitted_at >= query.submitted_after)
    if query.submitted_before is not None:
        where.append(runs.c.submitted_at < query.submitted_before)
    if query.owner is not None:
        where.append(runs.c.owner_id.in_(select(users.c.id).where(users.c.name == query.owner)))
    if not query.include_deleted:
        where.append(runs.c.deleted_at.is_(None))
    return where


def _text_has(fragment: str) -> ColumnElement[bool]:
    """Runs whose searchable text (``run_texts``) contains ``fragment``, case aside. A
    subquery, not a join: SQLite then scans the narrow table, not the wide one."""
    matching = select(run_texts.c.seq).where(
        run_texts.c.text.contains(fragment.lower(), autoescape=True)
    )
    return runs.c.seq.in_(matching)


def _ordered(stmt: Select[Any], query: RunQuery, *, back: bool) -> Select[Any]:
    descending = query.descending != back
    column = _SORT_COLUMNS.get(query.sort)
    columns = [runs.c.seq] if column is None else [column, runs.c.seq]
    return stmt.order_by(*(c.desc() if descending else c.asc() for c in columns))


def _after(query: RunQuery, key: list[Any], *, back: bool) -> ColumnElement[bool]:
    """Rows strictly past ``key`` in the direction of travel."""
    descending = query.descending != back
    column = _SORT_COLUMNS.get(query.sort)
    seq: int = key[-1]
    if column is None:
        return runs.c.seq < seq if descending else runs.c.seq > seq
    left = tuple_(column, runs.c.seq)
    right = tuple_(key[0], seq)
    after: ColumnElement[bool] = left < right if descending else left > right
    return after


def _owner(owner_id: int | None) -> list[ColumnElement[bool]]:
    """The runs of ``owner_id`` only (None: every run), as in ``store._owned``."""
    return [] if owner_id is None else [runs.c.owner_id == owner_id]


async def search(
    conn: AsyncConnection,
    query: RunQuery,
    *,
    after: list[Any] | None,
    back: bool,
    limit: int,
    owner_id: int | None = None,
) -> list[RunSummary]:
    """Up to ``limit`` runs matching ``query`` past the keyset position ``after``: in the
    query's order, or, with ``back``, in the opposite order (the caller reverses them).
    With ``owner_id``, that user's runs only."""
    stmt = select(*_SUMMARY_COLUMNS)
    where = _owner(owner_id) + _filters(query)
    if after is not None:
        where.append(_after(query, after, back=back))
    if where:
        stmt = stmt.where(and_(*where))
    stmt = _ordered(stmt, query, back=back).limit(limit)
    return [summary_from_row(r) for r in (await conn.execute(stmt)).mappings()]


async def count(conn: AsyncConnection, query: RunQuery, *, owner_id: int | None = None) -> int:
    """How many runs match ``query`` (of ``owner_id`` only, if given), on every page."""
    stmt = select(func.count()).select_from(runs).where(*_owner(owner_id), *_filters(query))
    return int((await conn.execute(stmt)).scalar_one())


async def get_summary(
    conn: AsyncConnection, run_id: str, *, owner_id: int | None = None
) -> RunSummary | None:
    stmt = select(*_SUMMARY_COLUMNS).where(runs.c.id == run_id, *_owner(owner_id))
    row = (await conn.execute(stmt)).mappings().first()
    return summary_from_row(row) if row else None


async def count_since(
    conn: AsyncConnection, since: datetime, *, owner_id: int | None = None
) -> dict[str, int]:
    """Runs submitted at or after ``since`` (of ``owner_id`` only, if given), by state: one
    index range per state (``ix_runs_state_submitted_at``, or with an owner
    ``ix_runs_owner_id_state_submitted_at``), which every database plans well without
    statistics."""
    stmt = union_all(
        *(
            select(runs.c.state, func.count())
            .where(*_owner(owner_id), runs.c.state == state.value, runs.c.submitted_at >= since)
            .group_by(runs.c.state)
            for state in State
        )
    )
    return {state: int(n) for state, n in (await conn.execute(stmt)).all()}


async def recent_failures(
    conn: AsyncConnection, *, limit: int, owner_id: int | None = None
) -> list[Failure]:
    """The runs that failed last (by end time), each with its reason and first failed task
    (of ``owner_id`` only, if given). One query per failed state, each reading
    ``ix_runs_state_end_time`` (or ``ix_runs_owner_id_state_end_time``) backwards."""
    columns = (*_SUMMARY_COLUMNS, runs.c.exit_code, runs.c.system_logs)
    rows: list[RowMapping] = []
    for state in FAILED_STATES:
        stmt = (
            select(*columns)
            .where(*_owner(owner_id), runs.c.state == state.value, runs.c.end_time.is_not(None))
            .order_by(runs.c.end_time.desc(), runs.c.seq.desc())
            .limit(limit)
        )
        rows += (await conn.execute(stmt)).mappings().all()
    rows.sort(key=lambda r: (r["end_time"], r["seq"]), reverse=True)
    rows = rows[:limit]
    failed_tasks = await _first_failed_tasks(conn, [r["id"] for r in rows])
    return [
        Failure(
            run=summary_from_row(r),
            exit_code=r["exit_code"],
            reason=r["system_logs"][-1] if r["system_logs"] else None,
            task=failed_tasks.get(r["id"]),
        )
        for r in rows
    ]


async def _first_failed_tasks(conn: AsyncConnection, run_ids: Collection[str]) -> dict[str, str]:
    if not run_ids:
        return {}
    stmt = (
        select(tasks.c.run_id, tasks.c.name)
        .where(
            tasks.c.run_id.in_(list(run_ids)),
            or_(
                tasks.c.state.in_([s.value for s in FAILED_STATES]),
                and_(tasks.c.exit_code.is_not(None), tasks.c.exit_code != 0),
            ),
        )
        .order_by(tasks.c.run_id, tasks.c.ordinal)
    )
    first: dict[str, str] = {}
    for run_id, name in (await conn.execute(stmt)).all():
        first.setdefault(run_id, name)
    return first
