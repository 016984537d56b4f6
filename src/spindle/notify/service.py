"""What the API, CLI and UI do with notifications, for one caller at a time: preferences,
subscriptions (create, list, test-send, delete), deliveries with their attempts
(list, redeliver) and the in-app inbox (list, mark read).

Everything is the caller's own, admins included: a subscription names only the caller's
runs and groups, and another user's subscription, delivery or notification is "not found",
as one that does not exist."""

from __future__ import annotations

import asyncio
import base64
import secrets
import socket
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import httpx
from sqlalchemy import delete, func, select, update
from sqlalchemy.engine import RowMapping
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine
from standardwebhooks.webhooks import Webhook

from spindle.config import Settings
from spindle.db.tables import (
    notifications,
    notify_attempts,
    notify_deliveries,
    notify_subscriptions,
    run_groups,
    runs,
    users,
)
from spindle.db.types import utcnow
from spindle.domain import Caller
from spindle.errors import Conflict, InvalidRequest, NotFound
from spindle.notify import claim
from spindle.notify.claim import Delivery
from spindle.notify.dispatcher import Dispatcher
from spindle.notify.events import (
    CHANNELS,
    PREFERENCES_KEY,
    TEST,
    URL_CHANNELS,
    check_events,
    check_preferences,
    preferences_of,
)
from spindle.notify.outbox import add_delivery, run_payload
from spindle.storage.fetch import AddressPolicy

MAX_PAGE = 1000
#: seconds a webhook host name may take to resolve when a subscription is made
RESOLVE_SECONDS = 5.0


class SubscriptionNotFound(NotFound):
    def __init__(self, subscription_id: str) -> None:
        super().__init__(f"subscription {subscription_id!r} was not found")


class DeliveryNotFound(NotFound):
    def __init__(self, delivery_id: str) -> None:
        super().__init__(f"delivery {delivery_id!r} was not found")


class NotificationNotFound(NotFound):
    def __init__(self, notification_id: int) -> None:
        super().__init__(f"notification {notification_id} was not found")


@dataclass(frozen=True)
class Subscription:
    id: str
    channel: str
    url: str | None
    secret: str | None
    events: list[str]
    run_id: str | None
    group_id: str | None
    status: str
    failures: int
    last_error: str | None
    created_at: datetime

    @classmethod
    def from_row(cls, row: RowMapping) -> Subscription:
        return cls(**{name: row[name] for name in cls.__dataclass_fields__})


@dataclass(frozen=True)
class Attempt:
    at: datetime
    status_code: int | None
    error: str | None
    duration_ms: int


@dataclass(frozen=True)
class Notification:
    id: int
    created_at: datetime
    event: str
    title: str
    body: str
    run_id: str | None
    group_id: str | None
    read_at: datetime | None


def new_secret() -> str:
    """A Standard Webhooks signing secret: ``whsec_`` and 24 random bytes in base64."""
    return "whsec_" + base64.b64encode(secrets.token_bytes(24)).decode()


def check_secret(secret: str) -> str:
    if not secret.startswith("whsec_"):
        raise InvalidRequest("secret", "must start with whsec_ (Standard Webhooks)")
    try:
        raw = base64.b64decode(secret.removeprefix("whsec_"), validate=True)
        Webhook(secret)
    except (ValueError, TypeError):
        raise InvalidRequest("secret", "must be whsec_ and base64") from None
    if not 24 <= len(raw) <= 64:
        raise InvalidRequest("secret", "must hold 24 to 64 bytes")
    return secret


async def check_url(url: Any, settings: Settings, field: str = "url") -> str:
    """An http(s) URL whose host resolves only to addresses Spindle may post to (the rules
    of workflow URL fetches, setting notify_allowed_networks); checked again on every
    connection, so a name that later resolves elsewhere is refused then."""
    if not isinstance(url, str) or not url.strip():
        raise InvalidRequest(field, "must be an http(s) URL")
    url = url.strip()
    try:
        parsed = httpx.URL(url)
    except (httpx.InvalidURL, ValueError):
        raise InvalidRequest(field, f"{url!r} is not a URL") from None
    if parsed.scheme not in ("http", "https") or not parsed.host:
        raise InvalidRequest(field, f"{url!r} is not an http(s) URL")
    if len(url) > 2048:
        raise InvalidRequest(field, "is longer than 2048 characters")
    host: str = parsed.host
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    try:
        async with asyncio.timeout(RESOLVE_SECONDS):
            infos = await asyncio.get_running_loop().getaddrinfo(
                host, port, type=socket.SOCK_STREAM
            )
    except (OSError, TimeoutError):
        raise InvalidRequest(field, f"{host} does not resolve") from None
    policy = AddressPolicy(settings.notify_allowed_networks)
    for info in infos:
        why = policy.refusal(str(info[4][0]))
        if why is not None:
            raise InvalidRequest(
                field,
                f"{url!r} is refused: {why}; Spindle posts only to public addresses "
                "(setting notify_allowed_networks)",
            )
    return str(url)


class NotifyService:
    def __init__(self, *, db: AsyncEngine, settings: Settings, dispatcher: Dispatcher) -> None:
        self.db = db
        self.settings = settings
        self.dispatcher = dispatcher

    async def aclose(self) -> None:
        await self.dispatcher.channels.aclose()

    # --- preferences ---------------------------------------------------------------------

    async def preferences(self, caller: Caller) -> dict[str, Any]:
        async with self.db.connect() as conn:
            stored = await self._stored_preferences(conn, caller)
        return preferences_of(stored)

    async def set_preferences(self, caller: Caller, value: Any) -> dict[str, Any]:
        checked = check_preferences(value)
        async with self.db.begin() as conn:
            stored = dict(await self._stored_preferences(conn, caller))
            stored[PREFERENCES_KEY] = checked
            await conn.execute(
                update(users).where(users.c.id == caller.user_id).values(preferences=stored)
            )
        return preferences_of(stored)

    async def _stored_preferences(self, conn: AsyncConnection, caller: Caller) -> dict[str, Any]:
        row = (
            await conn.execute(select(users.c.preferences).where(users.c.id == caller.user_id))
        ).scalar_one_or_none()
        return row if isinstance(row, dict) else {}

    # --- subscriptions -------------------------------------------------------------------

    async def checked_subscription(self, caller: Caller, body: Any, field: str) -> dict[str, Any]:
        """A subscription request (``channel``, ``url``, ``events``, ``secret``,
        ``run_id``, ``group_id``) checked, as the values of its row; InvalidRequest names
        the field (prefixed with ``field`` when it is part of a form field)."""

        def name(key: str) -> str:
            return f"{field}.{key}" if field else key

        if not isinstance(body, dict):
            raise InvalidRequest(field or "body", "must be a JSON object")
        known = {"channel", "url", "events", "secret", "run_id", "group_id"}
        unknown = sorted(set(body) - known)
        if unknown:
            raise InvalidRequest(
                name(unknown[0]), f"is not a subscription field; fields: {', '.join(sorted(known))}"
            )
        channel = body.get("channel", "webhook")
        if channel not in CHANNELS:
            raise InvalidRequest(
                name("channel"), f"{channel!r} is not a channel; channels: {', '.join(CHANNELS)}"
            )
        values: dict[str, Any] = {
            "channel": channel,
            "events": check_events(body.get("events"), name("events")),
            "url": None,
            "secret": None,
            "run_id": None,
            "group_id": None,
        }
        if channel == "webhook":
            secret = body.get("secret")
            if secret is not None and not isinstance(secret, str):
                raise InvalidRequest(name("secret"), "must be a string")
            values["secret"] = check_secret(secret) if secret else new_secret()
        elif body.get("secret") is not None:
            raise InvalidRequest(name("secret"), "is used by the webhook channel only")
        if channel in URL_CHANNELS:
            values["url"] = await check_url(body.get("url"), self.settings, name("url"))
        elif body.get("url") is not None:
            raise InvalidRequest(name("url"), f"is not used by the {channel} channel")
        if channel == "email" and not caller.email:
            async with self.db.connect() as conn:
                email = (
                    await conn.execute(select(users.c.email).where(users.c.id == caller.user_id))
                ).scalar_one_or_none()
            if not email:
                raise InvalidRequest(
                    name("channel"), "email goes to your own address, and your account has none"
                )
        if body.get("run_id") is not None and body.get("group_id") is not None:
            raise InvalidRequest(
                name("group_id"), "a subscription names a run or a group, not both"
            )
        for key, table in (("run_id", runs), ("group_id", run_groups)):
            target = body.get(key)
            if target is None:
                continue
            if not isinstance(target, str):
                raise InvalidRequest(name(key), "must be a string")
            async with self.db.connect() as conn:
                owner = (
                    await conn.execute(select(table.c.owner_id).where(table.c.id == target))
                ).scalar_one_or_none()
            if owner != caller.user_id:  # someone else's is "not found", as a missing one
                what = "run" if key == "run_id" else "run group"
                raise InvalidRequest(name(key), f"{what} {target!r} was not found")
            values[key] = target
        return values

    async def add(
        self, conn: AsyncConnection, caller: Caller, values: dict[str, Any]
    ) -> Subscription:
        """Insert a checked subscription in the caller's transaction (submission uses it
        to subscribe in the transaction that makes the run)."""
        row = {
            "id": str(uuid.uuid4()),
            "owner_id": caller.user_id,
            "status": "active",
            "failures": 0,
            "last_error": None,
            "created_at": utcnow(),
            **values,
        }
        await conn.execute(notify_subscriptions.insert().values(row))
        return Subscription.from_row(row)  # type: ignore[arg-type]

    async def subscribe(self, caller: Caller, body: Any) -> Subscription:
        values = await self.checked_subscription(caller, body, "")
        async with self.db.begin() as conn:
            return await self.add(conn, caller, values)

    async def subscriptions(
        self, caller: Caller, *, run_id: str | None = None, group_id: str | None = None
    ) -> list[Subscription]:
        s = notify_subscriptions
        stmt = select(s).where(s.c.owner_id == caller.user_id).order_by(s.c.seq)
        if run_id is not None:
            stmt = stmt.where(s.c.run_id == run_id)
        if group_id is not None:
            stmt = stmt.where(s.c.group_id == group_id)
        async with self.db.connect() as conn:
            rows = (await conn.execute(stmt.limit(MAX_PAGE))).mappings().all()
        return [Subscription.from_row(r) for r in rows]

    async def subscription(self, caller: Caller, subscription_id: str) -> Subscription:
        s = notify_subscriptions
        async with self.db.connect() as conn:
            row = (
                (
                    await conn.execute(
                        select(s).where(s.c.id == subscription_id, s.c.owner_id == caller.user_id)
                    )
                )
                .mappings()
                .first()
            )
        if row is None:
            raise SubscriptionNotFound(subscription_id)
        return Subscription.from_row(row)

    async def unsubscribe(self, caller: Caller, subscription_id: str) -> None:
        s = notify_subscriptions
        async with self.db.begin() as conn:
            result = await conn.execute(
                delete(s).where(s.c.id == subscription_id, s.c.owner_id == caller.user_id)
            )
        if result.rowcount != 1:
            raise SubscriptionNotFound(subscription_id)

    async def test(self, caller: Caller, subscription_id: str) -> Delivery:
        """Send a ``test`` message through the subscription now; answers the delivery (a
        failed one is retried like any other)."""
        sub = await self.subscription(caller, subscription_id)
        now = utcnow()
        payload = {
            "type": TEST,
            "timestamp": now.isoformat().replace("+00:00", "Z"),
            "data": {"subscription_id": sub.id},
        }
        if sub.channel == "inapp":
            raise InvalidRequest("subscription_id", "in-app notifications are not sent")
        async with self.db.begin() as conn:
            target = sub.url
            if sub.channel == "email":
                target = (
                    await conn.execute(select(users.c.email).where(users.c.id == caller.user_id))
                ).scalar_one_or_none()
            if not target:
                raise InvalidRequest("subscription_id", "your account has no email address")
            delivery_id = await add_delivery(
                conn,
                owner_id=caller.user_id,
                channel=sub.channel,
                target=target,
                subscription_id=sub.id,
                payload=payload,
                run_id=None,
                group_id=None,
                now=now,
                claimed=self.dispatcher.lease(),
            )
            delivery = await self._own_delivery(conn, caller, delivery_id)
        await self.dispatcher.deliver(delivery)
        return await self.delivery(caller, delivery_id)

    # --- deliveries ----------------------------------------------------------------------

    async def deliveries(
        self,
        caller: Caller,
        *,
        subscription_id: str | None = None,
        run_id: str | None = None,
        state: str | None = None,
        limit: int = 100,
    ) -> list[tuple[Delivery, list[Attempt]]]:
        d = notify_deliveries
        stmt = select(d).where(d.c.owner_id == caller.user_id)
        if subscription_id is not None:
            stmt = stmt.where(d.c.subscription_id == subscription_id)
        if run_id is not None:
            stmt = stmt.where(d.c.run_id == run_id)
        if state is not None:
            stmt = stmt.where(d.c.state == state)
        stmt = stmt.order_by(d.c.seq.desc()).limit(min(limit, MAX_PAGE))
        async with self.db.connect() as conn:
            rows = [Delivery.from_row(r) for r in (await conn.execute(stmt)).mappings()]
            attempts = await self._attempts(conn, [r.seq for r in rows])
        return [(r, attempts.get(r.seq, [])) for r in rows]

    async def _attempts(self, conn: AsyncConnection, seqs: list[int]) -> dict[int, list[Attempt]]:
        if not seqs:
            return {}
        a = notify_attempts
        out: dict[int, list[Attempt]] = {}
        for row in (
            await conn.execute(select(a).where(a.c.delivery_seq.in_(seqs)).order_by(a.c.id))
        ).mappings():
            out.setdefault(row["delivery_seq"], []).append(
                Attempt(row["at"], row["status_code"], row["error"], row["duration_ms"])
            )
        return out

    async def _own_delivery(
        self, conn: AsyncConnection, caller: Caller, delivery_id: str
    ) -> Delivery:
        d = notify_deliveries
        row = (
            (
                await conn.execute(
                    select(d).where(d.c.id == delivery_id, d.c.owner_id == caller.user_id)
                )
            )
            .mappings()
            .first()
        )
        if row is None:
            raise DeliveryNotFound(delivery_id)
        return Delivery.from_row(row)

    async def delivery(self, caller: Caller, delivery_id: str) -> Delivery:
        async with self.db.connect() as conn:
            return await self._own_delivery(conn, caller, delivery_id)

    async def delivery_with_attempts(
        self, caller: Caller, delivery_id: str
    ) -> tuple[Delivery, list[Attempt]]:
        async with self.db.connect() as conn:
            delivery = await self._own_delivery(conn, caller, delivery_id)
            attempts = await self._attempts(conn, [delivery.seq])
        return delivery, attempts.get(delivery.seq, [])

    async def redeliver(self, caller: Caller, delivery_id: str) -> Delivery:
        """Send it again now, with the same id, and a new retry window (409 while it is
        being sent)."""
        async with self.db.begin() as conn:
            delivery = await self._own_delivery(conn, caller, delivery_id)
            worker_id, lease = self.dispatcher.lease()
            claimed = await claim.reopen(
                conn, delivery.seq, worker_id=worker_id, now=utcnow(), lease_until=lease
            )
            if claimed is None:
                raise Conflict(f"delivery {delivery_id!r} is being sent; try again shortly")
        await self.dispatcher.deliver(claimed)
        return await self.delivery(caller, delivery_id)

    # --- in-app --------------------------------------------------------------------------

    async def inbox(
        self, caller: Caller, *, unread: bool = False, before: int | None = None, limit: int = 50
    ) -> tuple[list[Notification], int]:
        """The caller's notifications, newest first, and how many are unread."""
        n = notifications
        stmt = select(n).where(n.c.user_id == caller.user_id)
        if unread:
            stmt = stmt.where(n.c.read_at.is_(None))
        if before is not None:
            stmt = stmt.where(n.c.id < before)
        stmt = stmt.order_by(n.c.id.desc()).limit(min(limit, MAX_PAGE))
        async with self.db.connect() as conn:
            rows = (await conn.execute(stmt)).mappings().all()
            count = await self._unread(conn, caller)
        fields = Notification.__dataclass_fields__
        items = [Notification(**{k: r[k] for k in fields}) for r in rows]
        return items, count

    async def _unread(self, conn: AsyncConnection, caller: Caller) -> int:
        n = notifications
        return int(
            (
                await conn.execute(
                    select(func.count()).where(n.c.user_id == caller.user_id, n.c.read_at.is_(None))
                )
            ).scalar_one()
        )

    async def unread(self, caller: Caller) -> int:
        async with self.db.connect() as conn:
            return await self._unread(conn, caller)

    async def mark_read(self, caller: Caller, notification_id: int | None = None) -> int:
        """Mark one notification (or, with None, all) read; answers how many are unread."""
        n = notifications
        stmt = update(n).where(n.c.user_id == caller.user_id, n.c.read_at.is_(None))
        async with self.db.begin() as conn:
            if notification_id is not None:
                mine = (
                    await conn.execute(
                        select(n.c.id).where(
                            n.c.id == notification_id, n.c.user_id == caller.user_id
                        )
                    )
                ).scalar_one_or_none()
                if mine is None:
                    raise NotificationNotFound(notification_id)
                stmt = stmt.where(n.c.id == notification_id)
            await conn.execute(stmt.values(read_at=utcnow()))
            return await self._unread(conn, caller)


__all__ = ["NotifyService", "run_payload"]
