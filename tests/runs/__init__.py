"""Helpers shared by the run store tests."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncConnection

from spindle.db.tables import LOCAL_USER
from spindle.runs import users


async def local_user_id(conn: AsyncConnection) -> int:
    """The id of the local user the migration made (the owner of runs made in tests)."""
    user = await users.get_user_by_name(conn, LOCAL_USER)
    assert user is not None
    return user.id
