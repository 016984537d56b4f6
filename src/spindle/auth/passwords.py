"""Password hashing with argon2id (argon2-cffi, RFC 9106 parameters). Hashing and verifying
are deliberately slow (tens of milliseconds of CPU and 64 MiB each), so they run in a small
thread pool of their own (:class:`HashPool`), off the event loop and apart from the default
thread pool: a flood of password checks queues there and uses at most that many CPUs, while
token and session requests (and anything else run in a thread) go on."""

from __future__ import annotations

import asyncio
import secrets
from concurrent.futures import ThreadPoolExecutor

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

_hasher = PasswordHasher()

#: names of the pool's threads start with this
THREAD_PREFIX = "spindle-argon2"


class HashPool:
    """Hashes and verifies passwords in ``workers`` threads of its own."""

    def __init__(self, workers: int = 2) -> None:
        self.workers = max(1, workers)
        self._pool = ThreadPoolExecutor(self.workers, thread_name_prefix=THREAD_PREFIX)
        self._dummy: str | None = None

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)

    async def hash_password(self, password: str) -> str:
        """The argon2id hash (a PHC string, salt included) to store instead of the password."""
        return await asyncio.get_running_loop().run_in_executor(self._pool, _hasher.hash, password)

    async def verify_password(self, password_hash: str | None, password: str) -> bool:
        """Whether ``password`` matches. With no hash (no such user, or a user without a
        password) a throwaway hash is checked all the same, so the answer takes as long
        either way and does not tell which names exist."""
        if password_hash is None:
            if self._dummy is None:
                self._dummy = await self.hash_password(secrets.token_urlsafe(16))
            target, real = self._dummy, False
        else:
            target, real = password_hash, True
        try:
            await asyncio.get_running_loop().run_in_executor(
                self._pool, _hasher.verify, target, password
            )
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
