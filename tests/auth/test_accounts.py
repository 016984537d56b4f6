"""The account service on every database: users, passwords, tokens, identity-provider
sign-ins and stats. Secrets are looked for in every column of every row afterwards: they
must never be there in clear."""

from __future__ import annotations

import asyncio
import hashlib
import uuid
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from spindle.auth.accounts import AccountService, caller_for
from spindle.auth.session import SessionSigner
from spindle.auth.verifier import Identity
from spindle.db.tables import LOCAL_USER, metadata
from spindle.db.types import utcnow
from spindle.domain import RunRequest, State, UserStats
from spindle.errors import Conflict, Forbidden, InvalidRequest, NotFound, Unauthenticated
from spindle.runs import store
from spindle.runs import users as repo

PASSWORD = "s3cret pass phrase ✓"


async def every_value(engine: AsyncEngine) -> list[str]:
    """Every value of every row of every table, as text."""
    values: list[str] = []
    async with engine.connect() as conn:
        for table in metadata.sorted_tables:
            for row in (await conn.execute(select(table))).all():
                values.extend(str(v) for v in row)
    return values


async def test_secrets_are_never_stored_in_clear(db_engine: AsyncEngine) -> None:
    accounts = AccountService(db_engine)
    alice = await accounts.add_user("alice", password=PASSWORD, email="alice@example.org")
    token, secret = await accounts.create_token(caller_for(alice, "basic"), "laptop")

    values = await every_value(db_engine)
    assert not [v for v in values if PASSWORD in v]
    assert not [v for v in values if secret in v]
    assert not [v for v in values if secret.removeprefix("spindle_") in v]

    async with db_engine.connect() as conn:
        stored = await repo.get_user_by_name(conn, "alice")
        row = await repo.token_by_hash(conn, hashlib.sha256(secret.encode()).hexdigest())
    assert stored is not None
    assert stored.password_hash is not None
    assert stored.password_hash.startswith("$argon2id$")
    assert await accounts.hashing.verify_password(stored.password_hash, PASSWORD)
    assert row is not None
    assert row.id == token.id


async def test_users(db_engine: AsyncEngine) -> None:
    accounts = AccountService(db_engine)
    local = await accounts.local_user()  # made by the migration
    assert (local.name, local.password_hash) == (LOCAL_USER, None)

    await accounts.add_user("alice", password=PASSWORD, admin=True, display_name="Alice")
    with pytest.raises(Conflict):
        await accounts.add_user("alice", password="other")
    for bad in ("", " alice", "al\nice", "x" * 256):
        with pytest.raises(InvalidRequest):
            await accounts.add_user(bad)
    with pytest.raises(InvalidRequest, match="':'"):
        await accounts.add_user("a:b", password=PASSWORD)
    with pytest.raises(InvalidRequest, match="email"):
        await accounts.add_user("carol", email="not-an-address")
    with pytest.raises(NotFound):
        await accounts.set_disabled("nobody", True)

    listed = {u.name: u for u in await accounts.list_users()}
    assert set(listed) == {LOCAL_USER, "alice"}
    assert listed["alice"].admin
    assert listed["alice"].stats == UserStats()

    await accounts.set_admin("alice", False)
    await accounts.set_disabled("alice", True)
    alice = await accounts.user("alice")
    assert (alice.admin, alice.disabled) == (False, True)

    updated = await accounts.set_preferences(
        caller_for(alice, "basic"), {"notify": {"email": True, "on": ["COMPLETE"]}}
    )
    assert updated.preferences == {"notify": {"email": True, "on": ["COMPLETE"]}}


async def test_passwords(db_engine: AsyncEngine) -> None:
    accounts = AccountService(db_engine)
    await accounts.add_user("alice", password=PASSWORD)
    user = await accounts.check_password("alice", PASSWORD)
    assert user.name == "alice"
    assert (await accounts.user("alice")).last_login_at is not None
    for name, password in (("alice", "wrong"), ("nobody", PASSWORD), ("alice", "")):
        with pytest.raises(Unauthenticated, match="wrong user name or password"):
            await accounts.check_password(name, password)

    await accounts.set_password("alice", "second")
    with pytest.raises(Unauthenticated):
        await accounts.check_password("alice", PASSWORD)  # even though it was cached
    await accounts.check_password("alice", "second")

    await accounts.set_disabled("alice", True)
    with pytest.raises(Forbidden):
        await accounts.check_password("alice", "second")

    await accounts.set_password("alice", None)
    with pytest.raises(Unauthenticated):
        await accounts.check_password("alice", "second")


async def test_tokens(db_engine: AsyncEngine) -> None:
    accounts = AccountService(db_engine)
    alice = caller_for(await accounts.add_user("alice"), "basic")
    bob = caller_for(await accounts.add_user("bob"), "basic")
    root = caller_for(await accounts.add_user("root", admin=True), "basic")

    token, secret = await accounts.create_token(alice, "ci", expires_in=timedelta(days=1))
    user, found = await accounts.check_token(secret)
    assert (user.name, found.id) == ("alice", token.id)
    assert (await accounts.list_tokens(alice))[0].last_used_at is not None
    assert await accounts.list_tokens(bob) == []

    with pytest.raises(NotFound):
        await accounts.revoke_token(bob, token.id)
    with pytest.raises(Unauthenticated, match="not known"):
        await accounts.check_token(secret + "x")
    revoked = await accounts.revoke_token(root, token.id)
    assert revoked.revoked_at is not None
    with pytest.raises(Unauthenticated, match="revoked"):
        await accounts.check_token(secret)

    short, short_secret = await accounts.create_token(alice, "short")
    async with db_engine.begin() as conn:
        await repo.update_token(conn, short.id, expires_at=utcnow() - timedelta(seconds=1))
    with pytest.raises(Unauthenticated, match="expired"):
        await accounts.check_token(short_secret)
    with pytest.raises(InvalidRequest):
        await accounts.create_token(alice, "never", expires_in=timedelta(0))


async def test_identity_provider_sign_ins(db_engine: AsyncEngine) -> None:
    accounts = AccountService(db_engine)
    who = Identity(name="sub-123", email="a@example.org", display_name="A", admin=None)
    # several first requests at once make one user
    users = await asyncio.gather(*(accounts.sign_in_external(who) for _ in range(5)))
    assert len({u.id for u in users}) == 1
    assert (users[0].email, users[0].display_name, users[0].admin) == ("a@example.org", "A", False)

    changed = Identity(name="sub-123", email="new@example.org", display_name="A B", admin=True)
    user = await accounts.sign_in_external(changed)
    assert (user.email, user.display_name, user.admin) == ("new@example.org", "A B", True)
    # no admin claim configured (admin=None): the database's flag stands
    user = await accounts.sign_in_external(Identity(name="sub-123"))
    assert user.admin
    await accounts.set_disabled("sub-123", True)
    with pytest.raises(Forbidden):
        await accounts.sign_in_external(who)


async def _run(engine: AsyncEngine, owner: int, state: State) -> None:
    async with engine.begin() as conn:
        run = await store.insert_run(
            conn,
            run_id=str(uuid.uuid4()),
            request=RunRequest(workflow_type="CWL", workflow_type_version="v1.2", workflow_url="x"),
            engine="cwltool",
            compute_env="local",
            owner_id=owner,
        )
        if state is not State.QUEUED:
            assert await store.transition(conn, run.id, expected=[State.QUEUED], new=state)


async def test_stats_are_counted_from_the_runs(db_engine: AsyncEngine) -> None:
    accounts = AccountService(db_engine)
    alice = await accounts.add_user("alice")
    bob = await accounts.add_user("bob")
    done, failed = [State.COMPLETE] * 2, [State.EXECUTOR_ERROR, State.SYSTEM_ERROR]
    states: dict[Any, list[State]] = {
        alice.id: [*done, *failed, State.CANCELED, State.QUEUED, State.RUNNING],
        bob.id: [State.PREEMPTED],
    }
    for owner, wanted in states.items():
        for state in wanted:
            await _run(db_engine, owner, state)
    got = {u.name: u.stats for u in await accounts.list_users()}
    assert got["alice"] == UserStats(submitted=7, succeeded=2, failed=2, canceled=1, active=2)
    assert got["bob"] == UserStats(submitted=1, succeeded=0, failed=1, canceled=0, active=0)
    assert got[LOCAL_USER] == UserStats()
    me = await accounts.user_by_id(alice.id, with_stats=True)
    assert me.stats == got["alice"]


async def test_provider_users_are_kept_apart_from_local_ones(db_engine: AsyncEngine) -> None:
    accounts = AccountService(db_engine)
    await accounts.add_user("root", admin=True)  # made with `spindle users add`: local
    with pytest.raises(Forbidden, match="local user"):
        await accounts.sign_in_external(Identity(name="root", issuer="https://idp.example"))
    # a user a provider made before issuers were recorded (the migration marks it '') is
    # taken by the first provider that signs it in, and refused to any other
    old = await accounts.add_user("sub-9")
    async with db_engine.begin() as conn:
        await repo.update_user(conn, old.id, issuer="")
    user = await accounts.sign_in_external(Identity(name="sub-9", issuer="https://idp.example"))
    assert (user.id, user.issuer) == (old.id, "https://idp.example")
    with pytest.raises(Forbidden):
        await accounts.sign_in_external(Identity(name="sub-9", issuer="https://other.example"))


async def test_ending_sessions_refuses_every_session_made_before(db_engine: AsyncEngine) -> None:
    accounts = AccountService(db_engine)
    user = await accounts.add_user("eve")
    signer = SessionSigner("k", 3600)
    before = signer.read(signer.sign(user))
    assert (await accounts.session_user(*before)).id == user.id
    await accounts.end_sessions(user.id)
    await accounts.end_sessions(user.id)  # twice: still one number, higher
    with pytest.raises(Unauthenticated, match="ended"):
        await accounts.session_user(*before)
    fresh = signer.read(signer.sign(await accounts.user("eve")))
    assert fresh[2] == 2
    assert (await accounts.session_user(*fresh)).id == user.id
