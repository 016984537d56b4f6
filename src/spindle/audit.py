"""The audit log: who did what security-relevant thing, from where, when, to what.

Recorded actions (``action``; ``target_kind`` and ``target_id`` say what it was done to):

- ``signin.success`` (the UI's sign-in page), ``signin.failure`` (a wrong name or password,
  on that page or in HTTP Basic), ``signin.refused`` (a disabled user's right password);
- ``token.create``, ``token.revoke``;
- ``user.create``, ``user.disable``, ``user.enable``, ``user.password``, ``user.admin``;
- ``run.submit``, ``run.cancel``;
- ``group.create``, ``group.update``, ``group.delete``;
- anything later, through :func:`record` (e.g. ``subscription.create``).

An entry is written in the transaction of the change it records (:func:`record`, given the
change's connection): both are committed or neither. What changes nothing (a failed
sign-in) is written on its own (:func:`write`).

The actor and client address are the request's: :class:`RequestContext` (an ASGI
middleware) holds the address, and the authenticator tells :func:`identified` who the
caller is, so services need no extra arguments. Outside a request (``spindle users``) the
actor is ``cli:<OS user>``.
"""

from __future__ import annotations

import contextvars
import getpass
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import delete, insert, select
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine
from starlette.types import ASGIApp, Receive, Scope, Send

from spindle.db.tables import audit_log
from spindle.db.types import utcnow
from spindle.domain import Caller
from spindle.errors import Forbidden
from spindle.paging import check_page_size, decode_token, encode_token

#: entries deleted per statement when pruning (short transactions on a big table)
PRUNE_BATCH = 5000


@dataclass
class _Request:
    """What the audit log knows of the request being served (one per request)."""

    address: str | None = None
    caller: Caller | None = None


_current: contextvars.ContextVar[_Request | None] = contextvars.ContextVar(
    "spindle_audit_request", default=None
)


class RequestContext:
    """ASGI middleware: each HTTP request gets its own audit context with its client
    address (the direct peer's; behind a proxy, the proxy's)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        client = scope.get("client")
        token = _current.set(_Request(address=client[0] if client else None))
        try:
            await self.app(scope, receive, send)
        finally:
            _current.reset(token)


def identified(caller: Caller) -> None:
    """The request being served is ``caller``'s (called by the authenticator)."""
    ctx = _current.get()
    if ctx is not None:
        ctx.caller = caller


@dataclass(frozen=True)
class Actor:
    user_id: int | None
    name: str | None
    address: str | None


def current_actor(caller: Caller | None = None) -> Actor:
    """Who acts now: ``caller`` if given, else the request's caller; outside a request,
    the CLI's OS user."""
    ctx = _current.get()
    if ctx is None:
        if caller is not None:
            return Actor(caller.user_id, caller.name, None)
        return Actor(None, f"cli:{getpass.getuser()}", None)
    who = caller or ctx.caller
    return Actor(who.user_id if who else None, who.name if who else None, ctx.address)


@dataclass(frozen=True)
class AuditEntry:
    id: int
    at: datetime
    action: str
    actor_id: int | None
    actor_name: str | None
    address: str | None
    target_kind: str | None
    target_id: str | None
    detail: dict[str, Any] = field(default_factory=dict)


def _values(
    action: str,
    target: tuple[str, str | int] | None,
    detail: Mapping[str, Any] | None,
    actor: Actor,
) -> dict[str, Any]:
    return {
        "at": utcnow(),
        "action": action,
        "actor_id": actor.user_id,
        "actor_name": actor.name[:255] if actor.name else None,
        "address": actor.address[:64] if actor.address else None,
        "target_kind": target[0] if target else None,
        "target_id": str(target[1])[:255] if target else None,
        "detail": dict(detail or {}),
    }


async def record(
    conn: AsyncConnection,
    action: str,
    *,
    target: tuple[str, str | int] | None = None,
    detail: Mapping[str, Any] | None = None,
    caller: Caller | None = None,
    actor: Actor | None = None,
) -> None:
    """Add an entry in the caller's transaction (``conn``): ``action`` done by ``caller``
    (or ``actor``; default: the request's caller) to ``target`` (kind, id)."""
    who = actor or current_actor(caller)
    await conn.execute(insert(audit_log).values(**_values(action, target, detail, who)))


async def write(
    db: AsyncEngine,
    action: str,
    *,
    target: tuple[str, str | int] | None = None,
    detail: Mapping[str, Any] | None = None,
    actor: Actor | None = None,
) -> None:
    """:func:`record` in a transaction of its own (for what changes nothing else)."""
    async with db.begin() as conn:
        await record(conn, action, target=target, detail=detail, actor=actor)


@dataclass(frozen=True)
class AuditQuery:
    """Filters of a search; each one empty or None: any."""

    action: str = ""  # an action, or a prefix ending in "." ("signin.")
    actor: str = ""  # actor_name
    target: str = ""  # target_id
    since: datetime | None = None
    until: datetime | None = None


async def search(
    conn: AsyncConnection, q: AuditQuery, *, before_id: int | None, limit: int
) -> list[AuditEntry]:
    """Entries matching ``q``, newest first, older than ``before_id`` (keyset paging)."""
    stmt = select(audit_log).order_by(audit_log.c.id.desc()).limit(limit)
    if before_id is not None:
        stmt = stmt.where(audit_log.c.id < before_id)
    if q.action.endswith("."):
        stmt = stmt.where(audit_log.c.action.startswith(q.action, autoescape=True))
    elif q.action:
        stmt = stmt.where(audit_log.c.action == q.action)
    if q.actor:
        stmt = stmt.where(audit_log.c.actor_name == q.actor)
    if q.target:
        stmt = stmt.where(audit_log.c.target_id == q.target)
    if q.since is not None:
        stmt = stmt.where(audit_log.c.at >= q.since)
    if q.until is not None:
        stmt = stmt.where(audit_log.c.at < q.until)
    rows = (await conn.execute(stmt)).mappings().all()
    return [AuditEntry(**dict(row)) for row in rows]


async def prune(db: AsyncEngine, *, retention_days: int, now: datetime | None = None) -> int:
    """Delete the entries older than ``retention_days`` (0: none), a batch per transaction.
    Answers how many were deleted."""
    if retention_days <= 0:
        return 0
    cutoff = (now or utcnow()) - timedelta(days=retention_days)
    deleted = 0
    while True:
        async with db.begin() as conn:
            ids = (
                (
                    await conn.execute(
                        select(audit_log.c.id).where(audit_log.c.at < cutoff).limit(PRUNE_BATCH)
                    )
                )
                .scalars()
                .all()
            )
            if ids:
                await conn.execute(delete(audit_log).where(audit_log.c.id.in_(ids)))
        deleted += len(ids)
        if len(ids) < PRUNE_BATCH:
            return deleted


# --- reading (admins only) ----------------------------------------------------------------


@dataclass(frozen=True)
class AuditPage:
    entries: list[AuditEntry]
    next_page_token: str


async def read_page(
    db: AsyncEngine,
    q: AuditQuery,
    *,
    page_size: int | None,
    page_token: str | None,
    caller: Caller,
) -> AuditPage:
    """A page of entries matching ``q``, newest first: for an admin only (Forbidden else)."""
    if not caller.admin:
        raise Forbidden("the audit log is for admins only")
    size = check_page_size(page_size)
    before = decode_token("audit", page_token)
    async with db.connect() as conn:
        found = await search(conn, q, before_id=before, limit=size + 1)
    token = encode_token("audit", found[size - 1].id) if len(found) > size else ""
    return AuditPage(found[:size], token)
