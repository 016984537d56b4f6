"""The account service: users and their personal API tokens. It owns transactions (the
repository functions in ``spindle.runs.users`` never commit) and is where secrets turn into
hashes: a password or token goes no further than this module.

Used by the authenticator (every request), the ``spindle users`` commands (on the database
directly), and the API's ``/me`` and ``/tokens`` paths.
"""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import secrets
import time
from collections import OrderedDict
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine

from spindle import audit, limits
from spindle.auth import passwords, tokens
from spindle.auth.passwords import HashPool
from spindle.auth.session import fingerprint
from spindle.auth.verifier import Identity
from spindle.db.tables import LOCAL_USER
from spindle.db.types import utcnow
from spindle.domain import ApiToken, Caller, User, UserStats
from spindle.errors import Conflict, Forbidden, InvalidRequest, NotFound, Unauthenticated
from spindle.runs import users as repo

#: last_login_at and last_used_at are written at most this often per user or token, so a
#: client polling every second does not make every request a write.
TOUCH_INTERVAL = timedelta(seconds=60)
#: Seconds a verified password is remembered (keyed by an HMAC, never the password), so a
#: client sending Basic credentials with every request does not pay argon2 every time.
PASSWORD_CACHE_SECONDS = 60.0
PASSWORD_CACHE_SIZE = 1024
MAX_PASSWORD_LENGTH = 1024
MAX_NAME_LENGTH = 255


class UserNotFound(NotFound):
    """The user was not found."""

    def __init__(self, name: str) -> None:
        super().__init__(f"user {name!r} does not exist")


def check_name(name: str, *, field: str = "name") -> str:
    if not name or len(name) > MAX_NAME_LENGTH:
        raise InvalidRequest(field, f"must be 1 to {MAX_NAME_LENGTH} characters")
    return limits.check_name(name, field=field)


def check_password(password: str) -> str:
    if not password:
        raise InvalidRequest("password", "must not be empty")
    if len(password) > MAX_PASSWORD_LENGTH:
        raise InvalidRequest("password", f"must be at most {MAX_PASSWORD_LENGTH} characters")
    return password


def check_email(email: str | None) -> str | None:
    if email is None or email == "":
        return None
    if len(email) > 320 or "@" not in email or email != email.strip():
        raise InvalidRequest("email", "is not an e-mail address")
    return email


def caller_for(user: User, method: str, *, admin: bool | None = None) -> Caller:
    return Caller(
        user_id=user.id,
        name=user.name,
        admin=user.admin if admin is None else admin,
        email=user.email,
        display_name=user.display_name,
        method=method,
    )


class AccountService:
    def __init__(self, db: AsyncEngine, *, hashing: HashPool | None = None) -> None:
        self.db = db
        #: the threads passwords are hashed and checked in (``password_hash_workers``)
        self.hashing = hashing or HashPool()
        self._cache_key = secrets.token_bytes(32)
        #: HMAC(name, password) -> (the hash it matched, when that stops counting)
        self._verified: OrderedDict[bytes, tuple[str, float]] = OrderedDict()

    # --- users ---------------------------------------------------------------------------

    async def add_user(
        self,
        name: str,
        *,
        password: str | None = None,
        email: str | None = None,
        display_name: str | None = None,
        admin: bool = False,
    ) -> User:
        check_name(name)
        if password is not None and ":" in name:
            raise InvalidRequest(
                "name", "must not hold ':' for a user who signs in with a password"
            )
        email = check_email(email)
        password_hash = (
            await self.hashing.hash_password(check_password(password)) if password else None
        )
        try:
            async with self.db.begin() as conn:
                if await repo.get_user_by_name(conn, name) is not None:
                    raise Conflict(f"user {name!r} exists already")
                user = await repo.insert_user(
                    conn,
                    name=name,
                    now=utcnow(),
                    email=email,
                    display_name=display_name,
                    admin=admin,
                    password_hash=password_hash,
                )
                await audit.record(
                    conn, "user.create", target=("user", name), detail={"admin": admin}
                )
                return user
        except IntegrityError:
            raise Conflict(f"user {name!r} exists already") from None

    async def user(self, name: str) -> User:
        async with self.db.connect() as conn:
            user = await repo.get_user_by_name(conn, name)
        if user is None:
            raise UserNotFound(name)
        return user

    async def user_by_id(self, user_id: int, *, with_stats: bool = False) -> User:
        async with self.db.connect() as conn:
            user = await repo.get_user(conn, user_id)
            if user is None:
                raise NotFound(f"user {user_id} does not exist")
            if with_stats:
                stats = (await repo.user_stats(conn, [user.id])).get(user.id, UserStats())
                user = dataclasses.replace(user, stats=stats)
        return user

    async def list_users(self) -> list[User]:
        async with self.db.connect() as conn:
            return await repo.list_users(conn)

    async def _update(
        self, name: str, action: str, *, end_sessions: bool = False, **values: Any
    ) -> None:
        """Change a user, recording ``action`` in the audit log."""
        async with self.db.begin() as conn:
            user = await repo.get_user_by_name(conn, name)
            if user is None:
                raise UserNotFound(name)
            await repo.update_user(conn, user.id, **values)
            if end_sessions:
                await repo.end_sessions(conn, user.id)
            await audit.record(conn, action, target=("user", name))

    async def set_password(self, name: str, password: str | None) -> None:
        """A new password (ending the user's sessions), or None: no password sign-in."""
        if password is not None and ":" in name:
            raise InvalidRequest("name", "holds ':', so this user cannot sign in with a password")
        value = await self.hashing.hash_password(check_password(password)) if password else None
        await self._update(name, "user.password", password_hash=value, end_sessions=True)

    async def set_disabled(self, name: str, disabled: bool) -> None:
        """Disable (ending the user's sessions) or enable a user."""
        action = "user.disable" if disabled else "user.enable"
        await self._update(name, action, disabled=disabled, end_sessions=disabled)

    async def end_sessions(self, user_id: int) -> None:
        """End every session of the user made until now (sign-out): their cookies stop
        working at the next request, wherever they are kept."""
        async with self.db.begin() as conn:
            await repo.end_sessions(conn, user_id)

    async def set_admin(self, name: str, admin: bool) -> None:
        await self._update(name, "user.admin" if admin else "user.unadmin", is_admin=admin)

    async def set_preferences(self, caller: Caller, preferences: dict[str, Any]) -> User:
        """Replace the caller's preferences (a JSON object: notification choices and such)."""
        async with self.db.begin() as conn:
            await repo.update_user(conn, caller.user_id, preferences=preferences)
        return await self.user_by_id(caller.user_id, with_stats=True)

    async def local_user(self) -> User:
        """The user ``auth = "none"`` acts as (made by the migration; made again if gone)."""
        async with self.db.connect() as conn:
            user = await repo.get_user_by_name(conn, LOCAL_USER)
        if user is not None:
            return user
        try:
            return await self.add_user(LOCAL_USER)
        except Conflict:
            return await self.user(LOCAL_USER)

    # --- signing in ------------------------------------------------------------------------

    async def check_password(self, name: str, password: str) -> User:
        """The user these Basic credentials belong to. The same refusal for an unknown name
        and a wrong password (and in the same time), so names cannot be probed; a disabled
        user learns so only with the right password."""
        async with self.db.connect() as conn:
            user = await repo.get_user_by_name(conn, name)
        stored = user.password_hash if user is not None else None
        key = hmac.new(self._cache_key, f"{name}\0{password}".encode(), hashlib.sha256).digest()
        if not (stored is not None and self._remembered(key, stored)):
            if not await self.hashing.verify_password(stored, password) or user is None:
                raise Unauthenticated("wrong user name or password")
            assert stored is not None
            self._remember(key, stored)
            if passwords.needs_rehash(stored):
                async with self.db.begin() as conn:
                    await repo.update_user(
                        conn, user.id, password_hash=await self.hashing.hash_password(password)
                    )
        assert user is not None
        if user.disabled:
            raise Forbidden(f"user {user.name!r} is disabled")
        await self._touch_login(user)
        return user

    def _remembered(self, key: bytes, stored: str) -> bool:
        hit = self._verified.get(key)
        if hit is None:
            return False
        matched, until = hit
        if matched != stored or until < time.monotonic():
            self._verified.pop(key, None)
            return False
        return True

    def _remember(self, key: bytes, stored: str) -> None:
        self._verified[key] = (stored, time.monotonic() + PASSWORD_CACHE_SECONDS)
        self._verified.move_to_end(key)
        while len(self._verified) > PASSWORD_CACHE_SIZE:
            self._verified.popitem(last=False)

    async def sign_in_external(self, identity: Identity) -> User:
        """The user a verified identity-provider token names: created at the first sign-in,
        its e-mail, display name and (with an admin claim configured) admin flag kept as the
        provider says."""
        try:
            check_name(identity.name)
        except InvalidRequest:
            raise Unauthenticated(
                "the token's user claim is not a usable user name", error="invalid_token"
            ) from None
        now = utcnow()
        async with self.db.connect() as conn:
            user = await repo.get_user_by_name(conn, identity.name)
        if user is not None and user.issuer != identity.issuer:
            user = await self._claim_for_provider(user, identity)
        if user is None:
            try:
                async with self.db.begin() as conn:
                    made = await repo.insert_user(
                        conn,
                        name=identity.name,
                        now=now,
                        email=identity.email,
                        display_name=identity.display_name,
                        admin=bool(identity.admin),
                        last_login_at=now,
                        issuer=identity.issuer,
                    )
                    await audit.record(
                        conn,
                        "user.create",
                        target=("user", made.name),
                        detail={"issuer": identity.issuer, "admin": made.admin},
                        actor=audit.Actor(made.id, made.name, audit.current_actor().address),
                    )
                    return made
            except IntegrityError:  # a concurrent first request made it
                user = await self.user(identity.name)
                if user.issuer != identity.issuer:
                    user = await self._claim_for_provider(user, identity)
        changes: dict[str, Any] = {}
        if identity.email is not None and identity.email != user.email:
            changes["email"] = identity.email
        if identity.display_name is not None and identity.display_name != user.display_name:
            changes["display_name"] = identity.display_name
        if identity.admin is not None and identity.admin != user.admin:
            changes["is_admin"] = identity.admin
        if changes:
            async with self.db.begin() as conn:
                await repo.update_user(conn, user.id, **changes)
                user = await repo.get_user(conn, user.id) or user
        if user.disabled:
            raise Forbidden(f"user {user.name!r} is disabled")
        await self._touch_login(user, now)
        return user

    async def _claim_for_provider(self, user: User, identity: Identity) -> User:
        """The user row of this name for a provider's token whose issuer it does not carry:
        a row made by a provider before issuers were recorded ('') becomes this provider's;
        a local user (made with ``spindle users``, NULL) or another provider's is refused, so
        a token whose subject is ``root`` never signs in as the local ``root``."""
        if user.issuer == "":
            async with self.db.begin() as conn:
                await repo.update_user(conn, user.id, issuer=identity.issuer)
            return dataclasses.replace(user, issuer=identity.issuer)
        raise Forbidden(
            f"the identity provider's user {identity.name!r} has the name of a local user "
            "(or another provider's), and cannot sign in as them"
        )

    async def session_user(self, user_id: int, session_fingerprint: str, epoch: int = 0) -> User:
        """The user a session cookie names, if the session still holds: the password is
        the one it was made with and the user has not signed out since (``epoch``)."""
        async with self.db.connect() as conn:
            user = await repo.get_user(conn, user_id)
        if user is None or not hmac.compare_digest(fingerprint(user), session_fingerprint):
            raise Unauthenticated("the session is no longer valid; sign in again")
        if user.disabled:  # said first: a session of a disabled user is over in any case
            raise Forbidden(f"user {user.name!r} is disabled")
        if user.session_epoch != epoch:
            raise Unauthenticated("the session has ended (signed out); sign in again")
        return user

    async def _touch_login(self, user: User, now: datetime | None = None) -> None:
        now = now or utcnow()
        if user.last_login_at is None or now - user.last_login_at >= TOUCH_INTERVAL:
            async with self.db.begin() as conn:
                await repo.update_user(conn, user.id, last_login_at=now)

    # --- personal API tokens -------------------------------------------------------------

    async def create_token(
        self, caller: Caller, name: str, *, expires_in: timedelta | None = None
    ) -> tuple[ApiToken, str]:
        """A new token for the caller: its record and the secret, which is shown once and
        never stored (only its digest is)."""
        check_name(name)
        if expires_in is not None and expires_in <= timedelta(0):
            raise InvalidRequest("expires_in_days", "must be positive")
        secret = tokens.new_token()
        now = utcnow()
        async with self.db.begin() as conn:
            token = await repo.insert_token(
                conn,
                user_id=caller.user_id,
                name=name,
                token_hash=tokens.token_digest(secret),
                now=now,
                expires_at=now + expires_in if expires_in is not None else None,
            )
            await audit.record(
                conn,
                "token.create",
                target=("token", token.id),
                detail={"name": name},
                caller=caller,
            )
        return token, secret

    async def list_tokens(self, caller: Caller) -> list[ApiToken]:
        async with self.db.connect() as conn:
            return await repo.list_tokens(conn, caller.user_id)

    async def revoke_token(self, caller: Caller, token_id: int) -> ApiToken:
        """Revoke one of the caller's tokens (an admin may revoke anyone's). Someone else's
        token is "not found", like one that does not exist."""
        async with self.db.begin() as conn:
            token = await repo.get_token(conn, token_id)
            if token is None or not (caller.admin or token.user_id == caller.user_id):
                raise NotFound(f"token {token_id} was not found")
            if token.revoked_at is None:
                await repo.update_token(conn, token_id, revoked_at=utcnow())
                await audit.record(
                    conn,
                    "token.revoke",
                    target=("token", token_id),
                    detail={"name": token.name, "user_id": token.user_id},
                    caller=caller,
                )
            revoked = await repo.get_token(conn, token_id)
        assert revoked is not None
        return revoked

    async def check_token(self, secret: str) -> tuple[User, ApiToken]:
        """The user a bearer token belongs to, if it is known, not revoked and not expired."""
        now = utcnow()
        async with self.db.connect() as conn:
            token = await repo.token_by_hash(conn, tokens.token_digest(secret))
            user = await repo.get_user(conn, token.user_id) if token is not None else None
        if token is None or user is None:
            raise Unauthenticated("the token is not known", error="invalid_token")
        if token.revoked_at is not None:
            raise Unauthenticated("the token was revoked", error="invalid_token")
        if token.expires_at is not None and token.expires_at <= now:
            raise Unauthenticated("the token has expired", error="invalid_token")
        if user.disabled:
            raise Forbidden(f"user {user.name!r} is disabled")
        if token.last_used_at is None or now - token.last_used_at >= TOUCH_INTERVAL:
            async with self.db.begin() as conn:
                await repo.update_token(conn, token.id, last_used_at=now)
        return user, token
