"""basic mode end to end over HTTP: passwords (argon2), personal tokens, session cookies,
service-info without credentials, the 401 challenges, and no secret in any answer or log."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI, Response
from starlette.requests import Request

from spindle.api.auth import clear_session_cookie, set_session_cookie
from spindle.auth.accounts import AccountService
from spindle.auth.authenticator import Authenticator
from spindle.auth.session import COOKIE
from spindle.config import Settings
from spindle.db.types import utcnow
from spindle.engines.registry import Catalog
from spindle.runs import users as repo
from tests.api.conftest import WES, app_client, make_app

PASSWORD = "correct horse battery staple"
OTHER_PASSWORD = "Tr0ub4dor&3"


def basic(name: str, password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{name}:{password}".encode()).decode()}


def session(value: str, **headers: str) -> dict[str, str]:
    return {"Cookie": f"{COOKIE}={value}", **headers}


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


class Basic:
    """An app in basic mode with users alice and bob (and root, an admin)."""

    def __init__(self, app: FastAPI, api: httpx.AsyncClient) -> None:
        self.app = app
        self.api = api

    @property
    def accounts(self) -> AccountService:
        accounts: AccountService = self.app.state.accounts
        return accounts

    @property
    def authenticator(self) -> Authenticator:
        authenticator: Authenticator = self.app.state.authenticator
        return authenticator

    async def new_token(self, headers: dict[str, str], **body: Any) -> dict[str, Any]:
        r = await self.api.post(f"{WES}/tokens", json={"name": "cli", **body}, headers=headers)
        assert r.status_code == 200, r.text
        made: dict[str, Any] = r.json()
        return made


@pytest.fixture
def basic_app(
    settings: Settings, catalog: Catalog
) -> Callable[..., contextlib.AbstractAsyncContextManager[Basic]]:
    @contextlib.asynccontextmanager
    async def make(**kw: Any) -> AsyncIterator[Basic]:
        values = {**settings.model_dump(), "auth": "basic", **kw}
        app = make_app(Settings(**values), catalog, worker=False)
        async with app_client(app) as api:
            env = Basic(app, api)
            await env.accounts.add_user("alice", password=PASSWORD, email="alice@example.org")
            await env.accounts.add_user("bob", password=OTHER_PASSWORD)
            await env.accounts.add_user("root", password=OTHER_PASSWORD, admin=True)
            yield env

    return make


def assert_401(r: httpx.Response, *, error: str | None = None) -> None:
    assert r.status_code == 401, r.text
    assert r.json()["status_code"] == 401
    challenges = r.headers.get_list("www-authenticate")
    assert challenges[0] == 'Basic realm="Spindle", charset="UTF-8"'
    assert challenges[1].startswith('Bearer realm="Spindle"')
    if error:
        assert f'error="{error}"' in challenges[1]
    else:
        assert "error=" not in challenges[1]


async def test_passwords(basic_app: Any, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    async with basic_app() as env:
        api = env.api
        me = await api.get(f"{WES}/me", headers=basic("alice", PASSWORD))
        assert me.status_code == 200, me.text
        assert (me.json()["name"], me.json()["auth_method"]) == ("alice", "basic")
        assert me.json()["email"] == "alice@example.org"
        assert me.json()["last_login_at"] is not None
        # again: from the verified-password cache, same answer
        assert (await api.get(f"{WES}/me", headers=basic("alice", PASSWORD))).status_code == 200

        wrong = await api.get(f"{WES}/runs", headers=basic("alice", OTHER_PASSWORD))
        assert_401(wrong)
        unknown = await api.get(f"{WES}/runs", headers=basic("nobody", PASSWORD))
        assert_401(unknown)
        assert wrong.json()["msg"] == unknown.json()["msg"] == "wrong user name or password"
        for r in (wrong, unknown):
            assert PASSWORD not in r.text
            assert OTHER_PASSWORD not in r.text

        assert_401(await api.get(f"{WES}/runs"))

        await env.accounts.set_disabled("alice", True)
        disabled = await api.get(f"{WES}/runs", headers=basic("alice", PASSWORD))
        assert disabled.status_code == 403
        assert disabled.json() == {"msg": "user 'alice' is disabled", "status_code": 403}
        # a wrong password says nothing about the account
        assert_401(await api.get(f"{WES}/runs", headers=basic("alice", OTHER_PASSWORD)))
        await env.accounts.set_disabled("alice", False)

        # a new password: the old one (cached or not) no longer works
        await env.accounts.set_password("alice", "brand new")
        assert_401(await api.get(f"{WES}/runs", headers=basic("alice", PASSWORD)))
        assert (
            await api.get(f"{WES}/runs", headers=basic("alice", "brand new"))
        ).status_code == 200
    for secret in (PASSWORD, OTHER_PASSWORD, "brand new"):
        assert secret not in caplog.text


@pytest.mark.parametrize(
    "header",
    [
        "Basic !!!not-base64",
        "Basic " + base64.b64encode(b"no-colon").decode(),
        "Digest username=alice",
        "Bearer",
    ],
)
async def test_a_malformed_authorization_header_is_401(basic_app: Any, header: str) -> None:
    async with basic_app() as env:
        r = await env.api.get(f"{WES}/runs", headers={"Authorization": header})
        assert_401(r, error="invalid_request")


async def test_personal_tokens(basic_app: Any, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    async with basic_app() as env:
        api = env.api
        made = await env.new_token(basic("alice", PASSWORD), name="laptop", expires_in_days=30)
        secret = made["token"]
        assert secret.startswith("spindle_")
        assert made["name"] == "laptop"
        assert made["expires_at"] is not None

        me = await api.get(f"{WES}/me", headers=bearer(secret))
        assert (me.json()["name"], me.json()["auth_method"]) == ("alice", "token")
        listed = await api.get(f"{WES}/tokens", headers=bearer(secret))
        assert [t["name"] for t in listed.json()["tokens"]] == ["laptop"]
        assert listed.json()["tokens"][0]["last_used_at"] is not None
        assert secret not in listed.text

        # bob can neither see nor revoke alice's token
        bobs = await api.get(f"{WES}/tokens", headers=basic("bob", OTHER_PASSWORD))
        assert bobs.json()["tokens"] == []
        r = await api.post(
            f"{WES}/tokens/{made['id']}/revoke", headers=basic("bob", OTHER_PASSWORD)
        )
        assert r.status_code == 404
        assert (await api.get(f"{WES}/me", headers=bearer(secret))).status_code == 200

        r = await api.post(f"{WES}/tokens/{made['id']}/revoke", headers=bearer(secret))
        assert r.status_code == 200
        assert r.json()["revoked_at"] is not None
        revoked = await api.get(f"{WES}/me", headers=bearer(secret))
        assert_401(revoked, error="invalid_token")
        assert "revoked" in revoked.json()["msg"]

        # expired
        later = await env.new_token(basic("alice", PASSWORD), name="short")
        async with env.accounts.db.begin() as conn:
            await repo.update_token(conn, later["id"], expires_at=utcnow() - timedelta(seconds=1))
        expired = await api.get(f"{WES}/me", headers=bearer(later["token"]))
        assert_401(expired, error="invalid_token")
        assert "expired" in expired.json()["msg"]

        # unknown, and a bearer token that is not Spindle's
        assert_401(
            await api.get(f"{WES}/me", headers=bearer("spindle_forged")), error="invalid_token"
        )
        assert_401(
            await api.get(f"{WES}/me", headers=bearer("eyJhbGciOi.x.y")), error="invalid_token"
        )

        # a disabled user's token stops working
        bobs_token = (await env.new_token(basic("bob", OTHER_PASSWORD)))["token"]
        await env.accounts.set_disabled("bob", True)
        assert (await api.get(f"{WES}/me", headers=bearer(bobs_token))).status_code == 403

        # an admin may revoke anyone's token
        root = basic("root", OTHER_PASSWORD)
        third = await env.new_token(basic("alice", PASSWORD), name="third")
        r = await api.post(f"{WES}/tokens/{third['id']}/revoke", headers=root)
        assert r.status_code == 200
        bad = await api.post(f"{WES}/tokens", json={"name": ""}, headers=root)
        assert bad.status_code == 400
        assert "name" in bad.json()["msg"]
    for secret in (made["token"], later["token"], bobs_token, third["token"], PASSWORD):
        assert secret not in caplog.text


async def test_session_cookies(basic_app: Any, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    async with basic_app(session_max_age_seconds=2) as env:
        api = env.api
        user, cookie = await env.authenticator.sign_in("alice", PASSWORD)
        assert user.name == "alice"
        me = await api.get(f"{WES}/me", headers=session(cookie))
        assert (me.json()["name"], me.json()["auth_method"]) == ("alice", "session")

        assert_401(await api.get(f"{WES}/me", headers=session(cookie[:-2] + "xx")))
        with pytest.raises(Exception, match="wrong user name or password"):
            await env.authenticator.sign_in("alice", "guess")

        # a change needs Spindle's own Origin (or Referer) with a cookie...
        cancel = f"{WES}/runs/no-such-run/cancel"
        r = await api.post(cancel, headers=session(cookie))
        assert r.status_code == 403
        assert "Origin" in r.json()["msg"]
        r = await api.post(cancel, headers=session(cookie, Origin="https://evil.example"))
        assert r.status_code == 403
        r = await api.post(cancel, headers=session(cookie, Origin="http://spindle.test"))
        assert r.status_code == 404  # past authentication: the run does not exist
        # ... but not with a token or Basic credentials, which browsers do not send by themselves
        assert (await api.post(cancel, headers=basic("alice", PASSWORD))).status_code == 404

        # a new password ends the sessions made before
        _, second = await env.authenticator.sign_in("bob", OTHER_PASSWORD)
        await env.accounts.set_password("bob", "changed")
        assert_401(await api.get(f"{WES}/me", headers=session(second)))

        await asyncio.sleep(3.1)  # past session_max_age_seconds=2
        stale = await api.get(f"{WES}/me", headers=session(cookie))
        assert_401(stale)
        assert "expired" in stale.json()["msg"]
    assert cookie not in caplog.text


async def test_session_cookie_attributes(basic_app: Any) -> None:
    async with basic_app() as env:
        for scheme, secure in (("http", False), ("https", True)):
            request = Request(
                {
                    "type": "http",
                    "app": env.app,
                    "method": "POST",
                    "scheme": scheme,
                    "server": ("spindle.test", 443),
                    "path": "/login",
                    "root_path": "",
                    "query_string": b"",
                    "headers": [(b"host", b"spindle.test")],
                }
            )
            response = Response()
            set_session_cookie(response, request, "value")
            header = response.headers["set-cookie"]
            assert header.startswith(f"{COOKIE}=value;")
            assert "HttpOnly" in header
            assert "SameSite=lax" in header
            assert "Path=/" in header
            assert "Max-Age=43200" in header
            assert ("Secure" in header) is secure
            cleared = Response()
            clear_session_cookie(cleared, request)
            assert "Max-Age=0" in cleared.headers["set-cookie"]


async def test_service_info_without_credentials(basic_app: Any, tmp_path: Path) -> None:
    async with basic_app() as env:
        r = await env.api.get(f"{WES}/service-info")
        assert r.status_code == 200
        assert set(r.json()["system_state_counts"].values()) == {0}
        # credentials, when sent, are checked
        assert_401(await env.api.get(f"{WES}/service-info", headers=basic("alice", "nope")))
    async with basic_app(
        service_info_public=False,
        auth_instructions_url="https://wes.example.org/how",
        data_dir=tmp_path / "closed",
    ) as env:
        assert_401(await env.api.get(f"{WES}/service-info"))
        r = await env.api.get(f"{WES}/service-info", headers=basic("alice", PASSWORD))
        assert r.status_code == 200
        assert r.json()["auth_instructions_url"] == "https://wes.example.org/how"
