"""Reading and writing users and their API tokens. Repository functions, like ``store``: they
take a connection inside the caller's transaction, never commit, and return domain records.

Secrets never reach this module: passwords arrive as argon2 hashes and tokens as SHA-256
digests (``spindle.auth``).
"""

from __future__ import annotations

from collections.abc import Collection
from datetime import datetime
from typing import Any

from sqlalchemy import func, insert, select, update
from sqlalchemy.engine import RowMapping
from sqlalchemy.ext.asyncio import AsyncConnection

from spindle.db.tables import api_tokens, runs, users
from spindle.domain import ApiToken, State, User, UserStats

#: How the states of a user's runs add up to their stats.
SUCCEEDED = frozenset({State.COMPLETE.value})
FAILED = frozenset({State.EXECUTOR_ERROR.value, State.SYSTEM_ERROR.value, State.PREEMPTED.value})
CANCELED = frozenset({State.CANCELED.value})


def user_from_row(row: RowMapping, stats: UserStats | None = None) -> User:
    return User(
        id=row["id"],
        name=row["name"],
        email=row["email"],
        display_name=row["display_name"],
        created_at=row["created_at"],
        last_login_at=row["last_login_at"],
        preferences=row["preferences"],
        admin=bool(row["is_admin"]),
        disabled=bool(row["disabled"]),
        password_hash=row["password_hash"],
        stats=stats,
        session_epoch=row["session_epoch"] or 0,
        issuer=row["issuer"],
    )


def token_from_row(row: RowMapping) -> ApiToken:
    return ApiToken(
        id=row["id"],
        user_id=row["user_id"],
        name=row["name"],
        created_at=row["created_at"],
        last_used_at=row["last_used_at"],
        expires_at=row["expires_at"],
        revoked_at=row["revoked_at"],
    )


# --- users -------------------------------------------------------------------------------


async def insert_user(
    conn: AsyncConnection,
    *,
    name: str,
    now: datetime,
    email: str | None = None,
    display_name: str | None = None,
    admin: bool = False,
    password_hash: str | None = None,
    last_login_at: datetime | None = None,
    issuer: str | None = None,
) -> User:
    """A new user; the unique name makes a second insert of the same name fail with the
    database's IntegrityError (the service turns it into a Conflict)."""
    await conn.execute(
        insert(users).values(
            name=name,
            email=email,
            display_name=display_name,
            created_at=now,
            last_login_at=last_login_at,
            preferences={},
            is_admin=admin,
            disabled=False,
            password_hash=password_hash,
            session_epoch=0,
            issuer=issuer,
        )
    )
    user = await get_user_by_name(conn, name)
    assert user is not None
    return user


async def get_user(conn: AsyncConnection, user_id: int) -> User | None:
    row = (await conn.execute(select(users).where(users.c.id == user_id))).mappings().first()
    return user_from_row(row) if row else None


async def get_user_by_name(conn: AsyncConnection, name: str) -> User | None:
    row = (await conn.execute(select(users).where(users.c.name == name))).mappings().first()
    return user_from_row(row) if row else None


async def list_users(conn: AsyncConnection) -> list[User]:
    """Every user by name, with their stats."""
    rows = (await conn.execute(select(users).order_by(users.c.name))).mappings().all()
    stats = await user_stats(conn, [r["id"] for r in rows])
    return [user_from_row(r, stats.get(r["id"], UserStats())) for r in rows]


async def end_sessions(conn: AsyncConnection, user_id: int) -> None:
    """Raise the user's session epoch: every session made before is over."""
    epoch = func.coalesce(users.c.session_epoch, 0) + 1
    await conn.execute(update(users).where(users.c.id == user_id).values(session_epoch=epoch))


async def update_user(conn: AsyncConnection, user_id: int, **values: Any) -> bool:
    """Write columns of a user; False if there is no such user."""
    result = await conn.execute(update(users).where(users.c.id == user_id).values(**values))
    return result.rowcount == 1


async def user_stats(conn: AsyncConnection, user_ids: Collection[int]) -> dict[int, UserStats]:
    """Each user's runs by outcome, counted now from the runs themselves (one GROUP BY on
    the ``(owner_id, state)`` index)."""
    if not user_ids:
        return {}
    stmt = (
        select(runs.c.owner_id, runs.c.state, func.count())
        .where(runs.c.owner_id.in_(list(user_ids)))
        .group_by(runs.c.owner_id, runs.c.state)
    )
    counts: dict[int, dict[str, int]] = {}
    for owner, state, n in (await conn.execute(stmt)).all():
        counts.setdefault(owner, {})[state] = int(n)
    return {owner: _stats(by_state) for owner, by_state in counts.items()}


def _stats(by_state: dict[str, int]) -> UserStats:
    def total(states: Collection[str]) -> int:
        return sum(n for s, n in by_state.items() if s in states)

    submitted = sum(by_state.values())
    succeeded, failed, canceled = total(SUCCEEDED), total(FAILED), total(CANCELED)
    return UserStats(
        submitted=submitted,
        succeeded=succeeded,
        failed=failed,
        canceled=canceled,
        active=submitted - succeeded - failed - canceled,
    )


# --- API tokens ----------------------------------------------------------------------------


async def insert_token(
    conn: AsyncConnection,
    *,
    user_id: int,
    name: str,
    token_hash: str,
    now: datetime,
    expires_at: datetime | None,
) -> ApiToken:
    result = await conn.execute(
        insert(api_tokens).values(
            user_id=user_id,
            name=name,
            token_hash=token_hash,
            created_at=now,
            expires_at=expires_at,
        )
    )
    token_id = result.inserted_primary_key[0] if result.inserted_primary_key else None
    if token_id is None:  # pragma: no cover - every supported driver reports the key
        raise RuntimeError("the database did not report the new token's id")
    token = await get_token(conn, int(token_id))
    assert token is not None
    return token


async def get_token(conn: AsyncConnection, token_id: int) -> ApiToken | None:
    stmt = select(api_tokens).where(api_tokens.c.id == token_id)
    row = (await conn.execute(stmt)).mappings().first()
    return token_from_row(row) if row else None


async def token_by_hash(conn: AsyncConnection, token_hash: str) -> ApiToken | None:
    stmt = select(api_tokens).where(api_tokens.c.token_hash == token_hash)
    row = (await conn.execute(stmt)).mappings().first()
    return token_from_row(row) if row else None


async def list_tokens(conn: AsyncConnection, user_id: int) -> list[ApiToken]:
    stmt = select(api_tokens).where(api_tokens.c.user_id == user_id).order_by(api_tokens.c.id)
    return [token_from_row(r) for r in (await conn.execute(stmt)).mappings()]


async def update_token(conn: AsyncConnection, token_id: int, **values: Any) -> bool:
    result = await conn.execute(
        update(api_tokens).where(api_tokens.c.id == token_id).values(**values)
    )
    return result.rowcount == 1
