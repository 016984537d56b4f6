"""Failed sign-ins are throttled per account and per client address (429 with
Retry-After), and password hashing runs in a pool of its own, so token requests go on while
a flood of wrong passwords is being checked."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import httpx
import pytest
from argon2.exceptions import VerifyMismatchError

from spindle.auth import passwords
from spindle.auth.accounts import caller_for
from tests.api.conftest import WES
from tests.api.test_auth_basic import OTHER_PASSWORD, PASSWORD, basic, basic_app, bearer

__all__ = ["basic_app"]


def assert_429(r: httpx.Response) -> None:
    assert r.status_code == 429, r.text
    body = r.json()
    assert body["status_code"] == 429
    assert "too many failed sign-ins" in body["msg"]
    assert int(r.headers["retry-after"]) >= 1


async def test_failed_passwords_are_throttled_per_account(basic_app: Any) -> None:
    async with basic_app(signin_max_failures_per_account=3) as env:
        api = env.api
        token = (await env.new_token(basic("alice", PASSWORD)))["token"]
        for _ in range(3):
            assert (await api.get(f"{WES}/me", headers=basic("alice", "guess"))).status_code == 401
        assert_429(await api.get(f"{WES}/me", headers=basic("alice", "guess")))
        # the right password is not even checked while the account waits
        assert_429(await api.get(f"{WES}/me", headers=basic("alice", PASSWORD)))
        # a token is no password: it goes on working, and so does another account
        assert (await api.get(f"{WES}/me", headers=bearer(token))).status_code == 200
        assert (await api.get(f"{WES}/me", headers=basic("bob", OTHER_PASSWORD))).status_code == 200


async def test_failed_passwords_are_throttled_per_address(basic_app: Any) -> None:
    async with basic_app(
        signin_max_failures_per_account=0, signin_max_failures_per_address=3
    ) as env:
        for name in ("alice", "bob", "nobody"):  # a spray over accounts
            r = await env.api.get(f"{WES}/me", headers=basic(name, "guess"))
            assert r.status_code == 401
        r = await env.api.get(f"{WES}/me", headers=basic("root", OTHER_PASSWORD))
        assert r.status_code == 429
        assert "this address" in r.json()["msg"]
        # another client address is not held up
        elsewhere = httpx.ASGITransport(app=env.app, client=("192.0.2.7", 4000))
        async with httpx.AsyncClient(transport=elsewhere, base_url="http://spindle.test") as c:
            assert (
                await c.get(f"{WES}/me", headers=basic("root", OTHER_PASSWORD))
            ).status_code == 200


async def test_password_checks_run_in_their_own_bounded_pool(
    basic_app: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Wrong passwords checked in parallel wait in the argon2 pool (of one thread here),
    while a token request, and other work in threads, answer."""
    async with basic_app(password_hash_workers=1, signin_max_failures_per_address=0) as env:
        user = await env.accounts.user("alice")
        _, token = await env.accounts.create_token(caller_for(user, "basic"), "cli")
        release = threading.Event()
        started = threading.Semaphore(0)
        threads: list[str] = []
        real = passwords._hasher

        class SlowHasher:
            def __getattr__(self, name: str) -> Any:
                return getattr(real, name)

            def verify(self, stored: str, password: str) -> bool:
                threads.append(threading.current_thread().name)
                started.release()
                release.wait(30)
                raise VerifyMismatchError  # (as argon2 says of a wrong password, but at once)

        monkeypatch.setattr(passwords, "_hasher", SlowHasher())
        floods = [
            asyncio.create_task(env.api.get(f"{WES}/runs", headers=basic(f"u{i}", "guess")))
            for i in range(4)
        ]
        try:
            assert await asyncio.to_thread(started.acquire, True, 30)
            # every check is queued behind the one running: the pool holds one thread
            assert len(threads) == 1
            me = await env.api.get(f"{WES}/me", headers=bearer(token))
            assert (me.status_code, me.json()["auth_method"]) == (200, "token")
            assert await asyncio.to_thread(lambda: "the default pool is free") != ""
        finally:
            release.set()
        answers = await asyncio.gather(*floods)
        assert [r.status_code for r in answers] == [401] * 4
        assert threads
        assert all(n.startswith(passwords.THREAD_PREFIX) for n in threads)
