"""Password hashing with argon2id (argon2-cffi, RFC 9106 parameters). Hashing and verifying
are deliberately slow, so they run in a thread, off the event loop."""

from __future__ import annotations

import asyncio
import secrets

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

_hasher = PasswordHasher()
_dummy: str | None = None


async def hash_password(password: str) -> str:
    """The argon2id hash (a PHC string, salt included) to store instead of the password."""
    return await asyncio.to_thread(_hasher.hash, password)


async def verify_password(password_hash: str | None, password: str) -> bool:
    """Whether ``password`` matches. With no hash (no such user, or a user without a
    password) a throwaway hash is checked all the same, so the answer takes as long either
    way and does not tell which names exist."""
    global _dummy
    if password_hash is None:
        if _dummy is None:
            _dummy = await hash_password(secrets.token_urlsafe(16))
        target, real = _dummy, False
    else:
        target, real = password_hash, True
    try:
        await asyncio.to_thread(_hasher.verify, target, password)
    except (VerificationError, InvalidHashError):
        return False
    return real


def needs_rehash(password_hash: str) -> bool:
    """Whether the hash was made with weaker parameters than today's (then it is replaced
    at the next successful sign-in)."""
    try:
        return _hasher.check_needs_rehash(password_hash)
    except InvalidHashError:
        return True
